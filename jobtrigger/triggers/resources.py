"""Resource-change trigger logic: ``(baseline, observed objects, now) -> decision``. No I/O.

The *baseline* is what the watched objects looked like when the last Job ran (persisted as
``status.resourceHashes``); the *observed* state is what the watch cache holds now. A watched item has changed
when the set of objects it matches or any of their field hashes differs from the baseline. ``Any`` fires when one
item changed, ``All`` when every item did. Because the comparison is against persisted state, the outcome does not
depend on how many watch events arrived or were lost: a restart, a broken watch or a relist converge to the same
decision, and changes made while the controller was down are seen on the first evaluation.

Cooldown never drops a change: inside the window the decision is ``wait`` until its end, with the baseline left
as it was, so the change (or the last of several) runs exactly once when the window closes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from jobtrigger.triggers.fields import hash_value


@dataclass(frozen=True, order=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


#: path -> hash, for one object
Hashes = Mapping[str, str]


@dataclass(frozen=True)
class ItemState:
    """What one ``spec.triggers.resources.watch[i]`` entry matches right now."""

    index: int
    paths: tuple[str, ...]
    objects: Mapping[ObjectRef, Hashes]


@dataclass(frozen=True)
class Change:
    ref: ObjectRef
    what: Literal["created", "updated", "deleted"]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    action: Literal["baseline", "none", "wait", "fire"]
    #: baseline to persist (for ``baseline`` and ``fire``)
    baseline: dict[ObjectRef, dict[str, str]] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()
    #: ``wait``: when to look again (None: until another change arrives) and why
    retry_at: datetime | None = None
    reason: str = ""
    #: identifies the observed state that fires; part of the Job name
    digest: str = ""


def snapshot(items: Sequence[ItemState]) -> dict[ObjectRef, dict[str, str]]:
    """The observed state in baseline form (union of paths per object)."""
    out: dict[ObjectRef, dict[str, str]] = {}
    for item in items:
        for ref, hashes in item.objects.items():
            out.setdefault(ref, {}).update({p: hashes[p] for p in item.paths if p in hashes})
    return out


def evaluate(
    *,
    items: Sequence[ItemState],
    item_refs: Sequence[Sequence[ObjectRef]],
    baseline: Mapping[ObjectRef, Hashes] | None,
    condition: Literal["Any", "All"],
    cooldown: timedelta,
    last_triggered: datetime | None,
    now: datetime,
    suspended: bool = False,
) -> Decision:
    """Decide what the resource trigger does now.

    ``item_refs[i]`` lists the baseline objects that belonged to item ``i`` (so a deleted object is attributed to
    the item that watched it); ``baseline`` None means no baseline was taken yet (new JobTrigger or a changed
    watch list): take one without running.
    """
    current = snapshot(items)
    if baseline is None:
        return Decision("baseline", baseline=current, reason="baseline taken")

    per_item: list[list[Change]] = []
    for item, refs in zip(items, item_refs, strict=True):
        changes = _changes(item, refs, baseline)
        per_item.append(changes)
    changed_items = [i for i, c in enumerate(per_item) if c]
    if not changed_items:
        return Decision("none")
    if condition == "All" and len(changed_items) < len(items):
        waiting = [i for i in range(len(items)) if not per_item[i]]
        return Decision(
            "wait", reason=f"condition All: waiting for watch[{', '.join(str(i) for i in waiting)}] to change"
        )
    if suspended:
        return Decision("wait", reason="suspended")
    if last_triggered is not None and cooldown > timedelta(0) and now < last_triggered + cooldown:
        until = last_triggered + cooldown
        return Decision("wait", retry_at=until, reason=f"cooldown until {until.isoformat()}")
    all_changes = tuple(c for cs in per_item for c in cs)
    digest = hash_value(
        sorted([[r.api_version, r.kind, r.namespace or "", r.name], sorted(h.items())] for r, h in current.items())
    )
    return Decision("fire", baseline=current, changes=all_changes, digest=digest)


def _changes(item: ItemState, refs: Sequence[ObjectRef], baseline: Mapping[ObjectRef, Hashes]) -> list[Change]:
    """One entry's changes against its *own* baseline objects: an object another entry already watched is still
    "created" for this one when it newly matches it (e.g. gained the selector's labels)."""
    changes: list[Change] = []
    own = set(refs)
    for ref, hashes in sorted(item.objects.items()):
        before = baseline.get(ref) if ref in own else None
        if before is None or not all(p in before for p in item.paths):
            changes.append(Change(ref, "created", item.paths))
            continue
        diff = tuple(p for p in item.paths if before.get(p) != hashes.get(p))
        if diff:
            changes.append(Change(ref, "updated", diff))
    for ref in sorted(set(refs) - set(item.objects)):
        changes.append(Change(ref, "deleted", item.paths))
    return changes
