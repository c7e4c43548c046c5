"""Rendezvous hashing: balance, stability under joins and leaves."""

from __future__ import annotations

import random
from collections import Counter

from jobtrigger.shards.ring import owner

KEYS = [f"ns{i % 7}/jt-{i}" for i in range(3000)]


def test_every_key_has_one_owner_and_the_split_is_even() -> None:
    members = ["a", "b", "c"]
    counts = Counter(owner(k, members) for k in KEYS)
    assert set(counts) == set(members)
    assert all(abs(n - 1000) < 100 for n in counts.values()), counts


def test_a_join_moves_only_keys_to_the_new_member_about_one_in_n() -> None:
    before = {k: owner(k, ["a", "b", "c"]) for k in KEYS}
    after = {k: owner(k, ["a", "b", "c", "d"]) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "d" for k in moved)  # never between members that both stay
    assert 600 < len(moved) < 900  # ~1/4 of 3000


def test_a_leave_moves_only_the_leavers_keys() -> None:
    before = {k: owner(k, ["a", "b", "c"]) for k in KEYS}
    after = {k: owner(k, ["a", "c"]) for k in KEYS}
    assert all(before[k] == "b" for k in KEYS if before[k] != after[k])


def test_the_order_of_the_view_does_not_matter_and_an_empty_view_owns_nothing() -> None:
    assert all(owner(k, ["c", "a", "b"]) == owner(k, ["a", "b", "c"]) for k in KEYS[:200])
    assert owner("x/y", []) is None


def test_three_replicas_with_300_jobtriggers_each_own_100_plus_or_minus_25_in_nearly_every_draw() -> None:
    """The issue's balance figure, as what it is: a property of the hash over random replica identities (each
    process draws one). Per JobTrigger the owner is uniform, so a share is binomial(300, 1/3): 100 ± 8.2 (one sd);
    outside 100 ± 25 for about 0.5 % of the draws of three identities. 2,000 seeded draws, each with its own namespace
    as in the integration test."""
    rng = random.Random(10)
    outside = 0
    for _ in range(2000):
        ns = f"jt-test-{rng.getrandbits(32):08x}"
        members = [f"vm_{rng.getrandbits(32):08x}" for _ in range(3)]
        shares = Counter(owner(f"{ns}/t{i}", members) for i in range(300))
        assert len(shares) == 3
        outside += not all(75 <= n <= 125 for n in shares.values())
    assert outside <= 2000 * 0.01, outside  # expected ~10 (0.5 %)
