"""The status a sync writes: the Ready condition, its message, the trigger summary, and the write itself
(one merge patch of the changed fields with a resourceVersion precondition, skipped when nothing changed)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from jobtrigger import metrics
from jobtrigger.api.models import GROUP, PLURAL, VERSION, JobTrigger
from jobtrigger.jobs.builder import ANNOTATION_RUN_REQUESTED
from jobtrigger.kube.client import JSON, ApiError
from jobtrigger.reactor.watches import Interest
from jobtrigger.reactor.writebehind import DEFERRABLE
from jobtrigger.timefmt import rfc3339_ms

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync


def ready_message(s: Sync, jt: JobTrigger, interests: list[list[Interest]]) -> str:
    parts = []
    if jt.spec.triggers.resources is not None:
        n = sum(len(s.ctl.resource_watches.matching(i)) for lst in interests for i in lst)
        parts.append(
            f"watching {n} object(s) for {len(interests)} resource entr{'y' if len(interests) == 1 else 'ies'}"
        )
    pt = jt.spec.triggers.pods
    if pt is not None:
        n = len(s.ctl.pod_watches.current(s.key))
        parts.append(f"watching {n} pod(s) for {', '.join(pt.when)}")
    st = jt.spec.triggers.schedule
    if st is not None:
        nxt = s.status.get("nextScheduleTime")
        parts.append(f"schedule {st.cron}" + (f", next run {nxt}" if nxt else ""))
    if jt.spec.triggers.manual is not None or not parts:
        parts.append(f"manual runs via the {ANNOTATION_RUN_REQUESTED} annotation")
    return "; ".join(parts)


def condition(s: Sync, status: str, reason: str, message: str) -> bool:
    """Set the Ready condition; returns True if it changed."""
    s.ctl.note_state(s.key, reason)
    conds = [dict(c) for c in s.status.get("conditions") or []]
    old = next((c for c in conds if c.get("type") == "Ready"), None)
    if old and old.get("status") == status and old.get("reason") == reason and old.get("message") == message:
        old["observedGeneration"] = s.generation
        s.status["conditions"] = conds
        return False
    new = {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": old["lastTransitionTime"]
        if old and old.get("status") == status and old.get("lastTransitionTime")
        else rfc3339_ms(s.now),
        "observedGeneration": s.generation,
    }
    s.status["conditions"] = [c for c in conds if c.get("type") != "Ready"] + [new]
    return True


async def write_status(s: Sync) -> None:
    desired = {k: v for k, v in s.status.items() if v is not None}
    if desired == {k: v for k, v in s.old_status.items() if v is not None}:
        _persisted(s)
        return
    changed = {k for k in desired.keys() | s.old_status.keys() if desired.get(k) != s.old_status.get(k)}
    if s.deferrable and changed <= DEFERRABLE and s.ctl.write_behind.defer(s.key):
        # write-behind: only run records changed, each backed by its Job's baseline annotation; kept in memory
        # (every later sync starts from them) until the flusher hands this JobTrigger to a sync that writes
        carried = s.ctl.unwritten_run.get(s.key)
        fields = dict(carried[1]) if carried is not None and carried[0] == s.uid else {}
        fields.update({k: s.status.get(k) for k in changed})
        s.ctl.unwritten_run[s.key] = (s.uid, fields)
        metrics.STATUS_DEFERRED.inc()
        return
    # only the fields that changed (each replaced whole, as before): a smaller body for the server to decode,
    # merge and validate; the resourceVersion precondition still makes it a write of the whole status we saw
    patch: JSON = {k: None for k in s.old_status if k not in desired}
    patch.update({k: v for k, v in desired.items() if s.old_status.get(k) != v})
    body = {"metadata": {"resourceVersion": s.meta.get("resourceVersion")}, "status": patch}
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{s.ns}/{PLURAL}/{s.name}/status"
    t0 = time.monotonic()
    try:
        written = await s.ctl.kube.merge_patch(path, body)
    except ApiError as e:
        if e.status == 404:
            return  # deleted meanwhile: the watch's DELETED ends it; retrying would fail forever
        carried = s.ctl.unwritten_run.get(s.key)
        if carried is not None and carried[0] == s.uid:
            # what this sync made of them (e.g. lastJobStatus Succeeded for a Job it then pruned) is newest
            s.ctl.unwritten_run[s.key] = (s.uid, {k: s.status.get(k) for k in carried[1]})
        raise
    s.ctl.remember_written(s.key, written)
    _persisted(s)
    for trace in s.traces:  # the occurrence is recorded (baseline, token, slot...): its trace can end
        trace.child("status.write", t0, time.monotonic())


def _persisted(s: Sync) -> None:
    """The status on the server now carries the fields this sync started from or recorded (or what it made of them,
    e.g. lastJobStatus): stop carrying them. One worker per key, so no other sync set them meanwhile."""
    s.ctl.unwritten_run.pop(s.key, None)
    s.ctl.write_behind.written(s.key)
    if s.requeue:
        s.ctl.queue.add(s.key)  # work held back until the status caught up (pruning): now it may run


def summary(jt: JobTrigger) -> str:
    t = jt.spec.triggers
    parts = []
    if t.resources:
        parts.append(f"resources({len(t.resources.watch)},{t.resources.condition})")
    if t.pods:
        parts.append("pods(" + ",".join(t.pods.when) + ")")
    if t.schedule:
        parts.append(f"schedule({t.schedule.cron})")
    if t.manual:
        parts.append("manual")
    return " ".join(parts)
