"""Documentation links: every relative link points at a file that exists, every #anchor at a heading (GitHub
slugs) or an explicit <a id>; mkdocs cannot check links that leave docs/ (examples/, charts/, code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`|\*|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    found = {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}
    found |= set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no such anchor")
    assert not broken, broken


def _manifests() -> list[tuple[str, dict[str, object]]]:
    """Every YAML document of examples/ and of the ```yaml blocks of the docs that has a ``kind``."""
    out: list[tuple[str, dict[str, object]]] = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    for doc in DOCS:
        for block in re.findall(r"^```ya?ml\n(.*?)^```", doc.read_text(), re.S | re.M):
            out += [(doc.name, d) for d in yaml.safe_load_all(block) if isinstance(d, dict) and "kind" in d]
    return out


def test_commands_are_lists_of_strings() -> None:
    """A plain YAML scalar with ': ' in a command is a mapping (examples/pod-ready.yaml once had one); the API
    server refuses the Job. tests/integration/test_docs_examples.py applies them all; this is the fast check."""
    bad = []
    for where, obj in _manifests():
        stack: list[object] = [obj]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in ("command", "args") and isinstance(value, list):
                        bad += [f"{where}: {key} item {item!r}" for item in value if not isinstance(item, str)]
                    stack.append(value)
            elif isinstance(node, list):
                stack += node
    assert not bad, bad
