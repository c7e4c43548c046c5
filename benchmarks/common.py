"""Helpers shared by the benchmarks: a free port, and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    """A free loopback port (for a controller's --http-addr)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_section(heading: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the ``## <heading>`` section of docs/benchmarks.md with ``text`` (which starts with that heading),
    or append it; other sections are kept."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    current = re.sub(rf"\n## {re.escape(heading)}.*?(?=\n## |\Z)", "", current, flags=re.S)
    path.write_text(current.rstrip() + "\n\n" + text + "\n")


def configmap_jobtrigger(
    name: str, configmap: str, *, history: int, template: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JobTrigger that runs a Job whenever the ``data`` of one ConfigMap changes (no cooldown): the unit of work
    of the benchmarks and of the process tests."""
    from jobtrigger.api.models import GROUP, VERSION

    watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": configmap, "fields": ["data"]}]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": name},
        "spec": {
            "triggers": {"resources": {"cooldown": "0s", "watch": watch}},
            "history": history,
            "jobTemplate": template or {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "b"}]}}}},
        },
    }


def controller_argv(kubeconfig: str, namespace: str, port: int, *extra: str) -> list[str]:
    """The command line of a real ``jobtrigger controller`` process for ``namespace``, serving on ``port``
    (benchmarks and integration tests start it the same way)."""
    return [
        sys.executable,
        "-m",
        "jobtrigger.cli",
        "controller",
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        namespace,
        "--http-addr",
        f"127.0.0.1:{port}",
        *extra,
    ]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause this (measuring) process's garbage collector while a step is measured: its full collections took up
    to 84 ms here (a gc.callbacks probe), and a pause while a Job's ADDED event waits to be read lands in the
    latency of whatever system is being measured. Collected before and after, so memory stays bounded."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
