"""Rendezvous hashing: balance, stability under joins and leaves."""

from __future__ import annotations

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
