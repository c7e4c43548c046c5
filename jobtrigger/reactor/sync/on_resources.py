"""Resource and config-change triggers: watched objects vs. the persisted baseline -> at most one occurrence.

The decision itself is pure (:mod:`jobtrigger.triggers.resources`); this module reads the watch cache and the
status, hands a due occurrence to the run gate and writes the new baseline into the status being built."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from jobtrigger import metrics
from jobtrigger.api.models import JobTrigger, ResourceHash
from jobtrigger.api.validation import parse_duration
from jobtrigger.jobs.builder import ANNOTATION_BASELINE, Occurrence
from jobtrigger.kube.client import JSON
from jobtrigger.reactor.sync import gate, rekey
from jobtrigger.reactor.watches import Interest
from jobtrigger.timefmt import parse as parse_time
from jobtrigger.timefmt import rfc3339_ms
from jobtrigger.triggers import resources
from jobtrigger.triggers.fields import hash_value, normalize_paths
from jobtrigger.triggers.resources import ObjectRef

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync

#: a baseline larger than this is not put on the Job (annotations share 256 KiB): such a run's status is written
#: at once instead of behind
MAX_BASELINE_ANNOTATION = 32 * 1024


async def run_resources(s: Sync, jt: JobTrigger, interests: list[list[Interest]]) -> None:
    rt = jt.spec.triggers.resources
    assert rt is not None
    await watched(
        s,
        jt,
        RESOURCE_STATE,
        interests,
        spec_hash=resource_spec_hash(jt),
        condition=rt.condition,
        cooldown=parse_duration(rt.cooldown),
        reason_suffix="",
    )


async def run_config_change(s: Sync, jt: JobTrigger, interests: list[list[Interest]]) -> None:
    """``rerunOnConfigChange``: the ConfigMaps/Secrets the Job template references are watched like a resource
    trigger of their own (baseline ``status.configHashes``, runs ``status.configRuns``, condition Any)."""
    await watched(
        s,
        jt,
        CONFIG_STATE,
        interests,
        spec_hash=hash_value([[i.scope.gvr.kind, i.name] for lst in interests for i in lst]),
        condition="Any",
        cooldown=timedelta(0),
        reason_suffix=", referenced by the Job template",
    )


async def watched(
    s: Sync,
    jt: JobTrigger,
    st: WatchedState,
    interests: list[list[Interest]],
    *,
    spec_hash: str,
    condition: Literal["Any", "All"],
    cooldown: timedelta,
    reason_suffix: str,
) -> None:
    """Watched objects vs. the persisted baseline -> at most one run (see jobtrigger.triggers.resources)."""
    rw = s.ctl.resource_watches
    items: list[resources.ItemState] = []
    for idx, lst in enumerate(interests):
        objects: dict[ObjectRef, dict[str, str]] = {}
        paths: tuple[str, ...] = ()
        for interest in lst:
            paths = interest.paths
            gvr = interest.scope.gvr
            for (ns, name), hashes in rw.matching(interest).items():
                objects[ObjectRef(gvr.api_version, gvr.kind, ns or None, name)] = hashes
        items.append(resources.ItemState(idx, paths, objects))

    baseline: dict[ObjectRef, dict[str, str]] | None = None
    item_refs: list[list[ObjectRef]] = [[] for _ in items]
    pending_key = (s.key, st.hashes)
    persisted: list[JSON] | None = None
    if s.status.get(st.spec_hash) == spec_hash and s.status.get(st.hashes) is not None:
        read_back(s, st, spec_hash)
        persisted = s.status.get(st.hashes) or []
        s.ctl.pending_baselines.pop(pending_key, None)
        if persisted and rekey.needed(s):
            # written with another hash key (or none): translate it once; written back with this sync's status
            translated = await rekey.translate(s, interests, persisted)
            if translated is None:
                await s.ctl.events.emit(
                    s.obj,
                    "Warning",
                    "HashKeyUnknown",
                    f"status.{st.hashes} was written with hash key {s.old_status.get('hashKeyID')}, which this "
                    "controller does not have: a new baseline is taken without a run (changes since the last run "
                    "are not run)",
                )
                persisted = None  # as after a watch-list edit: a new baseline, no run
            else:
                persisted = s.status[st.hashes] = translated
    elif (pending := s.ctl.pending_baselines.get(pending_key)) is not None and pending[0] == spec_hash:
        persisted = pending[1]
    if persisted is not None:
        baseline = {}
        for entry in persisted:
            rh = ResourceHash.model_validate(entry)
            ref = ObjectRef(rh.api_version, rh.kind, rh.namespace, rh.name)
            baseline[ref] = {f.path: f.hash for f in rh.fields}
            for w in rh.watch:
                if 0 <= w < len(items):
                    item_refs[w].append(ref)

    decision = resources.evaluate(
        items=items,
        item_refs=item_refs,
        baseline=baseline,
        condition=condition,
        cooldown=cooldown,
        last_triggered=parse_time(s.status.get(st.last_time)) if st.last_time else None,
        now=s.now,
        suspended=jt.spec.suspend,
    )
    if decision.action == "baseline":
        set_baseline(s, st, decision.baseline, items, spec_hash)
        s.ctl.pending_baselines[pending_key] = (spec_hash, s.status[st.hashes])
    elif decision.action == "wait":
        s.pending(decision.reason)
        if decision.reason.startswith("cooldown"):
            metrics.SKIPPED.labels("cooldown").inc()
        if decision.retry_at is not None:
            delay = max(0.0, (decision.retry_at - s.now).total_seconds())
            s.ctl.queue.add_after(s.key, delay + 0.05)
    elif decision.action == "fire":
        runs = int(s.status.get(st.runs) or 0) + 1
        changed = tuple(
            {
                "apiVersion": c.ref.api_version,
                "kind": c.ref.kind,
                "namespace": c.ref.namespace,
                "name": c.ref.name,
                "change": c.what,
                "paths": list(c.paths),
            }
            for c in decision.changes
        )
        first = decision.changes[0]
        more = f" and {len(decision.changes) - 1} more" if len(decision.changes) > 1 else ""
        reason = f"{first.ref} {first.what} ({', '.join(first.paths)}){more}{reason_suffix}"
        entries = baseline_entries(decision.baseline, items)
        carried = json.dumps(
            {"specHash": spec_hash, "hashKeyID": rekey.key_id(s.ctl.settings.hash_key), "hashes": entries},
            separators=(",", ":"),
            sort_keys=True,
        )
        if len(carried) > MAX_BASELINE_ANNOTATION:
            carried = ""
            s.deferrable = False  # the Job cannot carry this run's baseline: the status must, at once
        occurrence = Occurrence(
            trigger=st.trigger,
            key=f"{st.trigger}/{runs}/{decision.digest}",
            reason=reason,
            objects=changed,
            annotations=((ANNOTATION_BASELINE, carried),) if carried else (),
        )
        if not await gate.run(s, jt, occurrence):
            return  # Queue: the change stays unconsumed until the active Job has finished
        s.status[st.runs] = runs
        if st.last_time:
            s.status[st.last_time] = rfc3339_ms(s.now)
        s.status[st.spec_hash] = spec_hash
        s.status[st.hashes] = entries


def read_back(s: Sync, st: WatchedState, spec_hash: str) -> None:
    """Take the baseline from the newest Job of this trigger when it is newer than the status's: its status write
    was deferred (write-behind) and the fields kept in memory are gone (a restart, a hand-over), or it was lost
    (a crash right after the create). Without this, a change reverted meanwhile (A→B, Job for B, back to A)
    would compare equal to the older baseline A and never run. Only a Job written for the same watch list and
    hash key counts; one without the annotation (older controllers, an oversized baseline) is skipped."""
    runs = int(s.status.get(st.runs) or 0)
    newest: tuple[int, str, str] | None = None
    for job in s.ctl.jobs_of(s.key).values():
        if not job.baseline:
            continue
        trigger, _, rest = job.occurrence.partition("/")
        number = rest.partition("/")[0]
        if trigger == st.trigger and number.isdigit() and int(number) > max(runs, newest[0] if newest else 0):
            newest = (int(number), job.baseline, job.created)
    if newest is None:
        return
    try:
        carried = json.loads(newest[1])
    except ValueError:
        return
    key = rekey.key_id(s.ctl.settings.hash_key)
    if carried.get("specHash") != spec_hash or carried.get("hashKeyID") != key or rekey.needed(s):
        return  # another watch list, or hashes under another key than the status's (a rotation in between)
    s.status[st.runs] = newest[0]
    s.status[st.hashes] = carried.get("hashes") or []
    if st.last_time:
        s.status[st.last_time] = newest[2]


def set_baseline(
    s: Sync,
    st: WatchedState,
    baseline: dict[ObjectRef, dict[str, str]],
    items: list[resources.ItemState],
    spec_hash: str,
) -> None:
    s.status[st.spec_hash] = spec_hash
    s.status[st.hashes] = baseline_entries(baseline, items)


def baseline_entries(baseline: dict[ObjectRef, dict[str, str]], items: list[resources.ItemState]) -> list[JSON]:
    """The baseline as ``status.resourceHashes`` (and the Job's baseline annotation) hold it."""
    owners: dict[ObjectRef, list[int]] = defaultdict(list)
    for item in items:
        for ref in item.objects:
            owners[ref].append(item.index)
    return [
        {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            **({"namespace": ref.namespace} if ref.namespace else {}),
            "name": ref.name,
            "watch": owners[ref],
            "fields": [{"path": p, "hash": h} for p, h in sorted(hashes.items())],
        }
        for ref, hashes in sorted(baseline.items())
    ]


@dataclass(frozen=True)
class WatchedState:
    """Where a watched-objects trigger keeps its baseline in status."""

    trigger: str
    spec_hash: str
    hashes: str
    runs: str
    last_time: str | None


RESOURCE_STATE = WatchedState(
    "resources", "resourceSpecHash", "resourceHashes", "resourceRuns", "lastResourceTriggerTime"
)


CONFIG_STATE = WatchedState("config", "configSpecHash", "configHashes", "configRuns", None)


def resource_spec_hash(jt: JobTrigger) -> str:
    rt = jt.spec.triggers.resources
    if rt is None:
        return ""
    return hash_value(
        [
            [
                w.api_version,
                w.kind,
                w.name,
                w.namespace,
                w.selector.model_dump() if w.selector else None,
                list(normalize_paths(w.fields)),
            ]
            for w in rt.watch
        ]
    )
