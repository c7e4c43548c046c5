"""Helpers shared by the benchmarks: a free port, and writing one section of docs/benchmarks.md."""

from __future__ import annotations

import re
import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "docs" / "benchmarks.md"


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
