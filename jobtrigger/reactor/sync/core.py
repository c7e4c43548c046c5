"""One sync of one JobTrigger, as a short script over the steps in this package.

Validate (:mod:`.validate`) → watch what the triggers need → each trigger turns what the watches, the clock and
the annotations show into occurrences (:mod:`.on_manual`, :mod:`.on_resources`, :mod:`.on_pods`,
:mod:`.on_schedule`), each occurrence passing the run gate (:mod:`.gate`) → the JobTrigger's Jobs: output and
history (:mod:`.history`) → the Ready condition and one status write (:mod:`.conditions`). Like the CronJob
controller's sync: small helpers around one pass, every decision from the cache, the status and an injected clock.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from jobtrigger import tracing
from jobtrigger.api.models import JobTrigger
from jobtrigger.api.validation import SpecError
from jobtrigger.jobs.builder import Mounted
from jobtrigger.kube.client import JSON
from jobtrigger.reactor.podwatches import PodScope
from jobtrigger.reactor.sync import (
    conditions,
    gate,
    history,
    on_manual,
    on_pods,
    on_resources,
    on_schedule,
    rekey,
    validate,
)
from jobtrigger.reactor.watches import Interest, TriggerKey
from jobtrigger.triggers.selectors import to_query

if TYPE_CHECKING:
    from jobtrigger.reactor.controller import Controller


class Sync:
    """One evaluation of one JobTrigger (a fresh instance per sync keeps the state explicit): the object as read,
    the status being built, the clock reading, and what the steps hand each other."""

    def __init__(self, ctl: Controller, key: TriggerKey, obj: JSON):
        self.ctl = ctl
        self.key = key
        self.obj = obj
        self.meta: JSON = obj.get("metadata") or {}
        self.ns, self.name = key
        self.uid: str = self.meta.get("uid", "")
        self.generation: int = int(self.meta.get("generation") or 0)
        self.old_status: JSON = dict(obj.get("status") or {})
        self.status: JSON = dict(self.old_status)
        unwritten = ctl.unwritten_run.get(key)
        if unwritten is not None and unwritten[0] == self.uid:
            self.status.update(unwritten[1])  # a run whose status write failed: this sync's write records it
        self.now = ctl.settings.clock()
        self.mounts: tuple[Mounted, ...] = ()
        self.config_interests: list[list[Interest]] = []  # rerunOnConfigChange: [object, its output family]
        self.arrival: float | None = None  # monotonic time of the watch event that led to this sync
        self.started = time.monotonic()
        self.traces: list[tracing.OccurrenceTrace] = []  # open traces of the occurrences run (tracing on)
        #: may the status write wait (write-behind)? Off once this sync deletes a Job or records a run that its Job
        #: cannot carry, and for JobTriggers whose Jobs may vanish on their own (see :func:`deferrable`)
        self.deferrable = True
        self.requeue = False  # sync again once the status is written (pruning held back while it was behind)

    async def run(self) -> None:
        jt, errors = self.ctl.parsed(self.key, self.obj)
        if jt is None or errors:
            await validate.invalid(self, "InvalidSpec", errors)
            return
        self.status["triggers"] = conditions.summary(jt)
        self.deferrable = deferrable(jt)
        self.status["shard"] = self.ctl.shard_identity  # None (removed) without sharding
        if len(self.name) > 63:
            await validate.invalid(
                self,
                "InvalidSpec",
                [SpecError("metadata.name", "at most 63 characters: the name is a label value on every Job")],
            )
            return
        interests, errors, reason = await validate.interests(self, jt)
        if errors:
            await validate.invalid(self, reason, errors)
            return
        errors = await validate.job_template(self, jt)
        if errors:
            await validate.invalid(self, "InvalidJobTemplate", errors)
            return
        self.config_interests = config_interests = await validate.config_interests(self, jt)
        self.ctl.resource_watches.set_interests(self.key, [i for lst in [*interests, *config_interests] for i in lst])
        pt = jt.spec.triggers.pods
        self.ctl.pod_watches.set_interest(
            self.key,
            PodScope(pt.namespace or self.ns, to_query(pt.selector)) if pt else None,
            pt.when if pt else (),
        )
        if not (self.ctl.resource_watches.synced(self.key) and self.ctl.pod_watches.synced(self.key)):
            await self._waiting_for_watches()
            return

        self.status["pending"] = None
        self.mounts = gate.mounts(jt)
        await on_manual.run_manual(self, jt)
        await on_manual.run_errand(self, jt)
        if jt.spec.triggers.resources is not None:
            await on_resources.run_resources(self, jt, interests)
        if config_interests:
            await on_resources.run_config_change(self, jt, config_interests)
        if jt.spec.triggers.pods is not None:
            await on_pods.run_pods(self, jt)
        if jt.spec.triggers.schedule is not None:
            await on_schedule.run_schedule(self, jt)
        else:
            self.status["nextScheduleTime"] = None
        await history.run_jobs(self, jt)
        # the baselines above are under the current hash key now (translated by rekey if they were not)
        self.status["hashKeyID"] = rekey.key_id(self.ctl.settings.hash_key)
        ready = conditions.ready_message(self, jt, interests)
        conditions.condition(self, "True", "Suspended" if jt.spec.suspend else "Watching", ready)
        self.status["observedGeneration"] = self.generation
        await conditions.write_status(self)

    async def _waiting_for_watches(self) -> None:
        failures = self.ctl.resource_watches.errors(self.key) + self.ctl.pod_watches.errors(self.key)
        if failures:
            # the watch retries with backoff and enqueues this JobTrigger once it lists successfully
            conditions.condition(self, "False", "WatchFailed", "; ".join(failures))
            await self.ctl.events.emit(self.obj, "Warning", "WatchFailed", failures[0])
        else:
            conditions.condition(self, "Unknown", "Syncing", "waiting for the initial list of watched objects")
        self.status["observedGeneration"] = self.generation
        await conditions.write_status(self)

    def record(self, fields: JSON) -> None:
        """Set status fields only this sync can know — the run it made, the slot it took, the output result of a Job
        it marked — and keep them in memory until a status write succeeds (see :func:`.conditions.write_status`):
        a retry after a failed write (409: the object changed) may see new input and could not recompute them."""
        self.status.update(fields)
        uid, carried = self.ctl.unwritten_run.get(self.key, (self.uid, {}))
        self.ctl.unwritten_run[self.key] = (self.uid, {**(carried if uid == self.uid else {}), **fields})

    def pending(self, reason: str) -> None:
        """Add to ``status.pending`` (why something waits), joined by ``; ``."""
        current = self.status.get("pending")
        self.status["pending"] = f"{current}; {reason}" if current else reason


def deferrable(jt: JobTrigger) -> bool:
    """May this JobTrigger's run records wait for a later status write? Not when its Jobs may be gone before then
    without us deleting them: a ``ttlSecondsAfterFinished`` in the template, or a history limit of 0 (the Job is
    pruned as soon as it finishes). A restart reads a deferred run back from the newest Job's baseline annotation,
    so that Job must still exist."""
    spec = jt.spec
    if (spec.job_template.spec or {}).get("ttlSecondsAfterFinished") is not None:
        return False
    limits = (spec.successful_jobs_history_limit, spec.failed_jobs_history_limit)  # `history` is at least 1
    return all(limit is None or limit > 0 for limit in limits)
