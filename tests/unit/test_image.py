"""The container image definition: checked statically (no registry is reachable to pull a base image here) and
its entrypoint command run for real."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    out = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and not line.startswith(("&&", "\\")):
            word, _, rest = line.partition(" ")
            if word.isupper():
                out.append((word, rest))
    return out


def test_dockerfile_is_multi_stage_non_root_with_the_controller_entrypoint() -> None:
    ins = instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build wheels, then a runtime stage without build tools"
    runtime = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    user = [rest for w, rest in runtime if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root"), "the runtime stage runs as non-root"
    assert ("ENTRYPOINT", '["jobtrigger"]') in runtime
    assert ("CMD", '["controller"]') in runtime
    assert any(w == "COPY" and "--from=" in rest for w, rest in runtime), "runtime gets only the built wheels"


def test_entrypoint_command_runs() -> None:
    for args in (["--help"], ["controller", "--help"], ["crd"]):
        proc = subprocess.run(
            [sys.executable, "-m", "jobtrigger.cli", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
    crd = subprocess.run(
        [sys.executable, "-m", "jobtrigger.cli", "crd"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert crd == (ROOT / "crds" / "jobtrigger.dev_jobtriggers.yaml").read_text()
