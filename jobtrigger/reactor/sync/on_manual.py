"""Manual triggers: a new ``jobtrigger.dev/run-requested`` token, and the errand flow (``strategy: now``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobtrigger.api.models import GROUP, PLURAL, VERSION, JobTrigger
from jobtrigger.jobs.builder import ANNOTATION_RUN_REQUESTED, Occurrence
from jobtrigger.kube.client import ApiError
from jobtrigger.reactor.sync import gate

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync


async def run_manual(s: Sync, jt: JobTrigger) -> None:
    """Run once per new ``jobtrigger.dev/run-requested`` token (works on every JobTrigger)."""
    token = (s.meta.get("annotations") or {}).get(ANNOTATION_RUN_REQUESTED)
    if not token or token == s.status.get("lastRunRequest"):
        return
    if jt.spec.suspend:
        s.pending(f"manual run {token!r} waits: suspended")
        return
    occurrence = Occurrence(
        trigger="manual",
        key=f"manual/{token}",
        reason=f"manual run requested ({ANNOTATION_RUN_REQUESTED}={token})",
        env=(("JOBTRIGGER_RUN_REQUEST", token),),
    )
    if await gate.run(s, jt, occurrence):
        s.status["lastRunRequest"] = token


async def run_errand(s: Sync, jt: JobTrigger) -> None:
    """ExtendedJob/QuarksJob errand flow: ``strategy: now`` runs once, then is reset to ``manual``.

    The occurrence is the generation that set ``now``, so a crash between the Job and the reset repeats
    nothing: the retry finds the Job (AlreadyExists) and only resets the spec."""
    manual = jt.spec.triggers.manual
    if manual is None or manual.strategy != "now" or jt.spec.suspend:
        return
    occurrence = Occurrence(
        trigger="manual",
        key=f"errand/{s.generation}",
        reason="errand run (spec.triggers.manual.strategy: now)",
    )
    if not await gate.run(s, jt, occurrence):
        return
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{s.ns}/{PLURAL}/{s.name}"
    strategy = "/spec/triggers/manual/strategy"
    try:
        # conditional on the strategy, not on the resourceVersion: an unrelated spec edit between our read and
        # this reset must not fail it (the retry would run errand/<generation+1>, a second Job)
        written = await s.ctl.kube.json_patch(
            path,
            [
                {"op": "test", "path": strategy, "value": "now"},
                {"op": "replace", "path": strategy, "value": "manual"},
            ],
        )
    except ApiError as e:
        if e.status in (404, 409, 422):
            # gone, or no longer `now` (reset already): the next sync looks at what is there
            s.ctl.queue.add(s.key)
            return
        raise
    # continue with the object as it is now, so the status write below does not conflict
    s.meta = written.get("metadata") or s.meta
    s.ctl.remember_written(s.key, written)
    s.ctl.queue.add(s.key)  # look again at the new generation (observedGeneration)
