"""Tests for jobtrigger.triggers.resources.evaluate: the pure resource-change decision."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrigger.triggers.fields import hash_paths, significant
from jobtrigger.triggers.resources import Change, Decision, ItemState, ObjectRef, evaluate, snapshot

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
CM_A = ObjectRef("v1", "ConfigMap", "default", "a")
CM_B = ObjectRef("v1", "ConfigMap", "default", "b")
SECRET = ObjectRef("v1", "Secret", "default", "tls")
NODE = ObjectRef("v1", "Node", None, "node-1")

Baseline = dict[ObjectRef, dict[str, str]]


def item(index: int, objects: Mapping[ObjectRef, Mapping[str, str]], paths: tuple[str, ...] = ("*",)) -> ItemState:
    return ItemState(index=index, paths=paths, objects={r: dict(h) for r, h in objects.items()})


def run(
    items: Sequence[ItemState],
    baseline: Mapping[ObjectRef, Mapping[str, str]] | None,
    *,
    item_refs: Sequence[Sequence[ObjectRef]] | None = None,
    condition: Literal["Any", "All"] = "Any",
    cooldown: timedelta = timedelta(0),
    last_triggered: datetime | None = None,
    now: datetime = T0,
    suspended: bool = False,
) -> Decision:
    if item_refs is None:
        # by default: each item owned the baseline objects it currently matches or that share its kind
        item_refs = [
            [r for r in (baseline or {}) if r in it.objects or any(r.kind == o.kind for o in it.objects)]
            for it in items
        ]
    return evaluate(
        items=items,
        item_refs=item_refs,
        baseline=baseline,
        condition=condition,
        cooldown=cooldown,
        last_triggered=last_triggered,
        now=now,
        suspended=suspended,
    )


# ---------------------------------------------------------------------- baseline / none


def test_no_baseline_takes_one_without_running() -> None:
    items = [item(0, {CM_A: {"*": "h1"}}), item(1, {SECRET: {"data": "s1"}}, ("data",))]
    d = run(items, None, item_refs=[[], []])
    assert d.action == "baseline"
    assert d.baseline == {CM_A: {"*": "h1"}, SECRET: {"data": "s1"}}
    assert d.changes == ()
    assert d.digest == ""


def test_baseline_even_when_suspended_or_in_cooldown() -> None:
    items = [item(0, {CM_A: {"*": "h1"}})]
    d = run(items, None, item_refs=[[]], suspended=True, cooldown=timedelta(hours=1), last_triggered=T0)
    assert d.action == "baseline"


def test_empty_baseline_is_not_no_baseline() -> None:
    # {} is a real baseline (nothing matched when it was taken): a new object is a change
    d = run([item(0, {CM_A: {"*": "h1"}})], {}, item_refs=[[]])
    assert d.action == "fire"
    assert d.changes == (Change(CM_A, "created", ("*",)),)


def test_unchanged_is_none() -> None:
    items = [item(0, {CM_A: {"*": "h1"}, CM_B: {"*": "h2"}})]
    d = run(items, {CM_A: {"*": "h1"}, CM_B: {"*": "h2"}})
    assert d == Decision("none")


def test_nothing_watched_and_nothing_before_is_none() -> None:
    assert run([item(0, {})], {}, item_refs=[[]]).action == "none"


def test_baseline_extra_paths_are_ignored() -> None:
    # baseline taken with more paths (e.g. union with another item): only this item's paths are compared
    d = run([item(0, {CM_A: {"data": "d1"}}, ("data",))], {CM_A: {"data": "d1", "*": "old"}})
    assert d.action == "none"


# ---------------------------------------------------------------------- changes


def test_updated_names_only_the_changed_paths() -> None:
    paths = ("data", "metadata.labels")
    items = [item(0, {CM_A: {"data": "d2", "metadata.labels": "l1"}}, paths)]
    d = run(items, {CM_A: {"data": "d1", "metadata.labels": "l1"}})
    assert d.action == "fire"
    assert d.changes == (Change(CM_A, "updated", ("data",)),)
    assert d.baseline == {CM_A: {"data": "d2", "metadata.labels": "l1"}}


def test_created_object() -> None:
    items = [item(0, {CM_A: {"*": "h1"}, CM_B: {"*": "h2"}})]
    d = run(items, {CM_A: {"*": "h1"}})
    assert d.action == "fire"
    assert d.changes == (Change(CM_B, "created", ("*",)),)


def test_object_missing_a_path_in_baseline_counts_as_created() -> None:
    d = run([item(0, {CM_A: {"data": "d1"}}, ("data",))], {CM_A: {"*": "h1"}})
    assert d.action == "fire"
    assert d.changes == (Change(CM_A, "created", ("data",)),)


def test_deleted_object_is_attributed_via_item_refs() -> None:
    items = [item(0, {CM_A: {"*": "h1"}}), item(1, {}, ("data",))]
    baseline = {CM_A: {"*": "h1"}, CM_B: {"*": "h2"}, SECRET: {"data": "s1"}}
    d = run(items, baseline, item_refs=[[CM_A, CM_B], [SECRET]])
    assert d.action == "fire"
    assert d.changes == (Change(CM_B, "deleted", ("*",)), Change(SECRET, "deleted", ("data",)))
    assert d.baseline == {CM_A: {"*": "h1"}}


def test_deleted_object_not_in_item_refs_is_not_seen() -> None:
    # a baseline object that belonged to no item (item_refs) is not a change of any item
    items = [item(0, {CM_A: {"*": "h1"}})]
    d = run(items, {CM_A: {"*": "h1"}, CM_B: {"*": "h2"}}, item_refs=[[CM_A]])
    assert d.action == "none"


def test_changes_of_several_items_in_item_order_and_sorted_refs() -> None:
    items = [
        item(0, {CM_B: {"*": "b2"}, CM_A: {"*": "a2"}}),
        item(1, {NODE: {"metadata.labels": "n2"}}, ("metadata.labels",)),
    ]
    baseline = {CM_A: {"*": "a1"}, CM_B: {"*": "b1"}, NODE: {"metadata.labels": "n1"}}
    d = run(items, baseline, item_refs=[[CM_A, CM_B], [NODE]])
    assert d.action == "fire"
    assert d.changes == (
        Change(CM_A, "updated", ("*",)),
        Change(CM_B, "updated", ("*",)),
        Change(NODE, "updated", ("metadata.labels",)),
    )


def test_revert_to_baseline_is_none() -> None:
    baseline = {CM_A: {"*": "h1"}}
    assert run([item(0, {CM_A: {"*": "h2"}})], baseline).action == "fire"
    # ... but the Job did not run (e.g. cooldown) and the object went back: nothing to do
    assert run([item(0, {CM_A: {"*": "h1"}})], baseline).action == "none"


def test_delete_and_recreate_identically_is_none() -> None:
    baseline = {CM_A: {"*": "h1"}}
    assert run([item(0, {})], baseline, item_refs=[[CM_A]]).action == "fire"
    assert run([item(0, {CM_A: {"*": "h1"}})], baseline, item_refs=[[CM_A]]).action == "none"


def test_same_object_in_two_items_merges_paths_in_baseline() -> None:
    items = [item(0, {CM_A: {"data": "d1"}}, ("data",)), item(1, {CM_A: {"*": "h1"}})]
    d = run(items, None, item_refs=[[], []])
    assert d.baseline == {CM_A: {"data": "d1", "*": "h1"}}
    assert run(items, d.baseline, item_refs=[[CM_A], [CM_A]]).action == "none"


# ---------------------------------------------------------------------- Any / All


def test_all_waits_for_unchanged_items_and_names_them() -> None:
    items = [
        item(0, {CM_A: {"*": "a2"}}),
        item(1, {CM_B: {"*": "b1"}}),
        item(2, {SECRET: {"*": "s1"}}),
    ]
    baseline = {CM_A: {"*": "a1"}, CM_B: {"*": "b1"}, SECRET: {"*": "s1"}}
    refs = [[CM_A], [CM_B], [SECRET]]
    d = run(items, baseline, item_refs=refs, condition="All")
    assert d.action == "wait"
    assert d.retry_at is None
    assert d.reason == "condition All: waiting for watch[1, 2] to change"
    assert d.baseline == {}

    # Any fires on the same input
    assert run(items, baseline, item_refs=refs, condition="Any").action == "fire"


def test_all_fires_when_every_item_changed() -> None:
    items = [item(0, {CM_A: {"*": "a2"}}), item(1, {CM_B: {"*": "b2"}})]
    baseline = {CM_A: {"*": "a1"}, CM_B: {"*": "b1"}}
    d = run(items, baseline, item_refs=[[CM_A], [CM_B]], condition="All")
    assert d.action == "fire"
    assert {c.ref for c in d.changes} == {CM_A, CM_B}


def test_all_with_one_change_outstanding_names_the_one() -> None:
    items = [item(0, {CM_A: {"*": "a1"}}), item(1, {CM_B: {"*": "b2"}})]
    baseline = {CM_A: {"*": "a1"}, CM_B: {"*": "b1"}}
    d = run(items, baseline, item_refs=[[CM_A], [CM_B]], condition="All")
    assert d.action == "wait"
    assert "watch[0]" in d.reason
    assert "watch[1]" not in d.reason


def test_all_with_nothing_changed_is_none() -> None:
    items = [item(0, {CM_A: {"*": "a1"}}), item(1, {CM_B: {"*": "b1"}})]
    d = run(items, {CM_A: {"*": "a1"}, CM_B: {"*": "b1"}}, item_refs=[[CM_A], [CM_B]], condition="All")
    assert d.action == "none"


# ---------------------------------------------------------------------- suspend / cooldown


def test_suspended_waits_without_retry_time() -> None:
    d = run([item(0, {CM_A: {"*": "h2"}})], {CM_A: {"*": "h1"}}, suspended=True)
    assert d.action == "wait"
    assert d.reason == "suspended"
    assert d.retry_at is None
    assert d.baseline == {}


def test_suspended_without_change_is_none() -> None:
    assert run([item(0, {CM_A: {"*": "h1"}})], {CM_A: {"*": "h1"}}, suspended=True).action == "none"


def test_cooldown_waits_until_window_end_then_fires_the_same_change() -> None:
    items = [item(0, {CM_A: {"*": "h2"}})]
    baseline = {CM_A: {"*": "h1"}}
    cooldown = timedelta(seconds=60)
    last = T0

    inside = run(items, baseline, cooldown=cooldown, last_triggered=last, now=last + timedelta(seconds=10))
    assert inside.action == "wait"
    assert inside.retry_at == last + cooldown
    assert inside.reason == f"cooldown until {(last + cooldown).isoformat()}"
    assert inside.baseline == {}  # nothing to persist: the change is kept

    just_before = run(items, baseline, cooldown=cooldown, last_triggered=last, now=last + cooldown - timedelta(0, 0, 1))
    assert just_before.action == "wait"

    # window over; the very same inputs (baseline untouched) now fire
    at_end = run(items, baseline, cooldown=cooldown, last_triggered=last, now=last + cooldown)
    assert at_end.action == "fire"
    assert at_end.changes == (Change(CM_A, "updated", ("*",)),)
    assert at_end.baseline == {CM_A: {"*": "h2"}}
    later = run(items, baseline, cooldown=cooldown, last_triggered=last, now=last + timedelta(hours=1))
    assert later.action == "fire"
    assert later.digest == at_end.digest


def test_no_cooldown_without_last_trigger_or_zero_cooldown() -> None:
    items = [item(0, {CM_A: {"*": "h2"}})]
    baseline = {CM_A: {"*": "h1"}}
    assert run(items, baseline, cooldown=timedelta(hours=1), last_triggered=None).action == "fire"
    assert run(items, baseline, cooldown=timedelta(0), last_triggered=T0, now=T0).action == "fire"


def test_cooldown_does_not_apply_without_a_change() -> None:
    d = run([item(0, {CM_A: {"*": "h1"}})], {CM_A: {"*": "h1"}}, cooldown=timedelta(hours=1), last_triggered=T0)
    assert d.action == "none"


# ---------------------------------------------------------------------- digest


def test_digest_is_stable_for_the_same_state() -> None:
    baseline = {CM_A: {"*": "h1"}}
    d1 = run([item(0, {CM_A: {"*": "h2"}, CM_B: {"*": "b"}})], baseline)
    d2 = run([item(0, {CM_B: {"*": "b"}, CM_A: {"*": "h2"}})], baseline, now=T0 + timedelta(days=1))
    assert d1.action == d2.action == "fire"
    assert d1.digest and d1.digest == d2.digest
    # the digest is about the observed state, not about the baseline it is compared with
    d3 = run([item(0, {CM_A: {"*": "h2"}, CM_B: {"*": "b"}})], {CM_A: {"*": "h0"}})
    assert d3.digest == d1.digest


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({CM_A: {"*": "h3"}}, id="other-hash"),
        pytest.param({CM_B: {"*": "h2"}}, id="other-object"),
        pytest.param({CM_A: {"*": "h2"}, CM_B: {"*": "h2"}}, id="extra-object"),
        pytest.param({CM_A: {"data": "h2"}}, id="other-path"),
        pytest.param({ObjectRef("v1", "ConfigMap", "other", "a"): {"*": "h2"}}, id="other-namespace"),
    ],
)
def test_digest_differs_for_different_states(other: dict[ObjectRef, dict[str, str]]) -> None:
    baseline = {CM_A: {"*": "h1"}}
    d1 = run([item(0, {CM_A: {"*": "h2"}})], baseline, item_refs=[[CM_A]])
    paths = tuple(sorted({p for h in other.values() for p in h}))
    d2 = run([item(0, other, paths)], baseline, item_refs=[[CM_A]])
    assert d1.action == d2.action == "fire"
    assert d1.digest != d2.digest


def test_digest_differs_when_only_the_api_version_differs() -> None:
    # regression: the digest used to hash str(ObjectRef), which omits api_version
    ref_a = ObjectRef("example.com/v1", "Certificate", "default", "web")
    ref_b = ObjectRef("other.io/v1", "Certificate", "default", "web")
    d1 = run([item(0, {ref_a: {"*": "h"}})], {}, item_refs=[[]])
    d2 = run([item(0, {ref_b: {"*": "h"}})], {}, item_refs=[[]])
    assert d1.action == d2.action == "fire"
    assert d1.digest != d2.digest


# ---------------------------------------------------------------------- property: baseline follows every fire

REFS = [CM_A, CM_B, SECRET]
# which item watches which ref, and with which paths
ITEM_REFS = [[CM_A, CM_B], [SECRET]]
ITEM_PATHS: list[tuple[str, ...]] = [("*",), ("data", "metadata.labels")]

small_text = st.sampled_from(["", "a", "b", "c"])
object_state = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {
                # noise: must never cause a Job
                "resourceVersion": st.integers(1, 10**6).map(str),
                "generation": st.integers(1, 5),
                "labels": st.dictionaries(st.sampled_from(["app", "tier"]), small_text, max_size=2),
                "annotations": st.dictionaries(
                    st.sampled_from(["team", "kubectl.kubernetes.io/last-applied-configuration"]),
                    small_text,
                    max_size=2,
                ),
            }
        ),
        "data": st.dictionaries(st.sampled_from(["k1", "k2"]), small_text, max_size=2),
        "status": st.fixed_dictionaries({"phase": small_text}),
    }
)
world_state = st.fixed_dictionaries({r: st.none() | object_state for r in REFS})


def observe(world: Mapping[ObjectRef, dict[str, Any] | None]) -> list[ItemState]:
    return [
        ItemState(
            index=i,
            paths=paths,
            objects={r: hash_paths(world[r] or {}, paths) for r in refs if world[r] is not None},
        )
        for i, (refs, paths) in enumerate(zip(ITEM_REFS, ITEM_PATHS, strict=True))
    ]


def meaning(world: Mapping[ObjectRef, dict[str, Any] | None]) -> str:
    """Reference model of what counts, computed without hashes: the watched projections, JSON-normalized."""
    out: dict[str, Any] = {}
    for refs, paths in zip(ITEM_REFS, ITEM_PATHS, strict=True):
        for r in refs:
            obj = world[r]
            if obj is None:
                continue
            proj: dict[str, Any] = {}
            for p in paths:
                if p == "*":
                    proj[p] = significant(obj)
                elif p == "data":
                    proj[p] = obj.get("data")
                else:
                    proj[p] = obj["metadata"].get("labels")
            out[str(r)] = proj
    return json.dumps(out, sort_keys=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(world_state, min_size=1, max_size=8))
def test_fires_exactly_when_the_observed_state_differs_from_the_last_run(
    worlds: list[dict[ObjectRef, dict[str, Any] | None]],
) -> None:
    first = evaluate(
        items=observe(worlds[0]),
        item_refs=[[], []],
        baseline=None,
        condition="Any",
        cooldown=timedelta(0),
        last_triggered=None,
        now=T0,
    )
    assert first.action == "baseline"
    baseline: Baseline = first.baseline
    baseline_world = worlds[0]
    last: datetime | None = None
    for step, world in enumerate(worlds[1:], start=1):
        now = T0 + timedelta(seconds=step)
        items = observe(world)
        d = evaluate(
            items=items,
            item_refs=[[r for r in baseline if r in refs] for refs in ITEM_REFS],
            baseline=baseline,
            condition="Any",
            cooldown=timedelta(0),
            last_triggered=last,
            now=now,
        )
        observed = snapshot(items)
        if observed == baseline:
            assert d.action == "none"
        else:
            assert d.action == "fire"
            assert d.changes
            assert d.baseline == observed
        # the hash-based decision agrees with the hash-free reference model
        assert (d.action == "fire") == (meaning(world) != meaning(baseline_world))
        if d.action == "fire":
            baseline, baseline_world, last = d.baseline, world, now


# ---------------------------------------------------------------------- overlapping entries (issue 18.1)


def test_object_newly_matching_an_entry_is_created_for_it_even_if_another_entry_had_it() -> None:
    """Entry 0 watches ``a`` by name, entry 1 a selector ``a`` just gained: entry 1 changed (``a`` created for it),
    although the whole baseline already knew ``a`` through entry 0."""
    h = {"data": "h1"}
    baseline: Baseline = {CM_A: dict(h)}
    d = run(
        [item(0, {CM_A: h}, ("data",)), item(1, {CM_A: h}, ("data",))],
        baseline,
        item_refs=[[CM_A], []],
    )
    assert d.action == "fire"
    assert d.changes == (Change(CM_A, "created", ("data",)),)


def test_all_condition_counts_an_object_newly_matching_a_second_entry() -> None:
    h = {"data": "h1"}
    d = run(
        [item(0, {CM_A: {"data": "h2"}}, ("data",)), item(1, {CM_A: {"data": "h2"}}, ("data",))],
        {CM_A: dict(h)},
        item_refs=[[CM_A], []],
        condition="All",
    )
    assert d.action == "fire"
    assert {c.what for c in d.changes} == {"updated", "created"}
