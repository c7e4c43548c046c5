"""Who owns a JobTrigger: rendezvous (highest random weight) hashing over the members of a view.

Pure functions. Each (member, key) pair gets a score; the member with the highest score owns the key. Adding a
member moves to it only the keys it now scores highest on (~1/N of them); removing one moves only its own keys.
That property is what makes a hand-over local: a key never moves between two members that both stay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(member: str, key: str) -> int:
    """A stable pseudo-random weight of ``member`` for ``key`` (the same in every process and Python version)."""
    digest = hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, members: Iterable[str]) -> str | None:
    """The member that owns ``key`` in a view (None for an empty view); ties go to the smaller name."""
    best: tuple[int, str] | None = None
    for m in members:
        s = score(m, key)
        if best is None or s > best[0] or (s == best[0] and m < best[1]):
            best = (s, m)
    return best[1] if best else None
