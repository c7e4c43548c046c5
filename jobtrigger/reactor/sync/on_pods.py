"""Pod triggers: what a pod transition turns into.

Live transitions come from the shared pod watches' inbox; a JobTrigger's first look (after a restart, a new
selector) comes from the listed pods and the persisted watermark, minus what ``status.podHandled`` says was
already run or consumed. Each transition is one occurrence for the run gate (see docs/concepts.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobtrigger.api.models import JobTrigger
from jobtrigger.jobs.builder import LABEL_AFFECTED_POD, Occurrence
from jobtrigger.reactor.podwatches import PodWatches
from jobtrigger.reactor.sync import gate
from jobtrigger.timefmt import rfc3339_ms
from jobtrigger.triggers import pods

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync


MAX_POD_UIDS = 5000  # pod uids (and handled occurrences) kept in status


async def run_pods(s: Sync, jt: JobTrigger) -> None:
    """One Job per pod and transition. The watermark (``status.podWatermark``) advances only when everything
    that arrived before this sync has run, so a restart recovers what a crash dropped from the inbox."""
    pt = jt.spec.triggers.pods
    assert pt is not None
    pw = s.ctl.pod_watches
    when = frozenset(pt.when)
    watermark = rfc3339_ms(s.now)
    if s.key not in pw.initialized:
        since = s.status.get("podWatermark")
        handled = pw.handled[s.key] = {str(o) for o in s.status.get("podHandled") or []}
        first: list[pods.Transition] = []
        current = pw.current(s.key)
        for key, summary in current.items():
            first += pods.existing(summary, key=key, when=when, since=since, include_existing=pt.include_existing)
        if "Deleted" in when and since is not None:
            for uid in sorted(pods.vanished(s.status.get("podUIDs") or [], current)):
                first += pods.deleted(uid, when=when, key=(pt.namespace or s.ns, ""))
        # what was run or consumed before must not run again, even if its Job is gone (pruned, replaced, or
        # never created under Forbid): the Job's existence alone cannot tell
        pw.put_back(s.key, [t for t in first if t.occurrence not in handled])
        pw.initialized.add(s.key)
    if jt.spec.suspend:
        s.pending("pods: suspended")  # transitions wait in the inbox; the watermark stays
        return
    handled = pw.handled.setdefault(s.key, set())
    todo = [t for t in pw.take(s.key) if t.occurrence not in handled]
    for i, t in enumerate(todo):
        occurrence = Occurrence(
            trigger="pods",
            key=t.occurrence,
            reason=f"pod {t.namespace}/{t.name or t.uid}: {t.reason}",
            env=tuple(pods.pod_env(t)),
            labels=((LABEL_AFFECTED_POD, t.name[:63].rstrip("-.") if t.name else t.uid),),
        )
        try:
            ran = await gate.run(s, jt, occurrence)
        except BaseException:
            pw.put_back(s.key, todo[i:])
            raise
        if not ran:
            pw.put_back(s.key, todo[i:])  # Queue / cap: the rest waits for the active Job
            persist_handled(s, pw, when, pt.include_existing)
            return
        handled.add(t.occurrence)
    if not pw.errors(s.key):  # a broken watch may be missing events: keep the old watermark
        s.status["podWatermark"] = watermark
    persist_handled(s, pw, when, pt.include_existing)
    if "Deleted" in when:
        s.status["podUIDs"] = sorted(p.uid for p in pw.current(s.key).values())[:MAX_POD_UIDS]
    else:
        s.status["podUIDs"] = None


def persist_handled(s: Sync, pw: PodWatches, when: frozenset[str], include_existing: bool) -> None:
    """Write the handled occurrences a first look with the watermark being written could still return.

    Kept in memory too until then (a failed status write loses nothing); trimmed to the current pods'
    replayable keys, so the list is bounded by the pods, not by time."""
    handled = pw.handled.get(s.key, set())
    # only the pods a handled key names can replay it (keys are pods/<uid>/...): a sync costs O(handled), not
    # O(watched pods)
    uids = {key.split("/", 2)[1] for key in handled}
    named = {k: p for k, p in pw.current(s.key).items() if p.uid in uids}
    keep = handled & pods.replayable(
        named, when=when, since=s.status.get("podWatermark"), include_existing=include_existing
    )
    pw.handled[s.key] = keep
    s.status["podHandled"] = sorted(keep)[:MAX_POD_UIDS] or None
