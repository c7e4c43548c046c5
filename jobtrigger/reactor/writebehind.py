"""Status write-behind: under load, a JobTrigger's status write waits and merges with its later ones.

A sync whose status change is only the record of resource/config runs it made (the baseline, the run number, the
last Job) may leave it unwritten when the status write budget (``--status-qps``/``--status-burst``) is spent. The
fields stay in memory (``Controller.unwritten_run``) and every later sync of that JobTrigger starts from them; one
flusher task, paced by the same budget, re-queues the oldest deferred JobTrigger, whose next sync writes them all.
Under a steady stream of changes this turns one status write per Job into one per JobTrigger per flush round.

Why this keeps exactly-once (docs/concepts.md "Status write-behind"): the Job created for each deferred run carries
the baseline it ran for (``jobtrigger.dev/baseline``), so a controller that starts without the in-memory fields
(crash, hand-over) takes the baseline from the newest such Job instead of the older one in the status; and no Job
of a JobTrigger is deleted while its status is behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobtrigger import metrics
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.kube.events import TokenBucket
from jobtrigger.reactor.watches import TriggerKey

if TYPE_CHECKING:
    from jobtrigger.reactor.controller import Controller

log = logging.getLogger(__name__)

#: status fields that only record runs the Jobs themselves also record (the baseline annotation, the Job's name and
#: state): a write that changes nothing else may be deferred. Everything else (conditions, pending, skips, manual
#: tokens, schedule slots, pod watermarks, output results, a first baseline) is written at once
DEFERRABLE = frozenset(
    {
        "resourceHashes",
        "resourceRuns",
        "lastResourceTriggerTime",
        "configHashes",
        "configRuns",
        "lastJobName",
        "lastJobStatus",
        "lastTriggeredTime",
        "lastTriggerReason",
        "active",
    }
)


class WriteBehind:
    """The status write budget, the JobTriggers whose status is behind (oldest first), and their flusher."""

    def __init__(self, qps: float, burst: int):
        self.enabled = qps > 0
        self.bucket = TokenBucket(qps, burst)
        self._behind: OrderedDict[TriggerKey, None] = OrderedDict()
        self._due: set[TriggerKey] = set()  # handed to a sync that must write now
        self._wake = asyncio.Event()

    def behind(self, key: TriggerKey) -> bool:
        """Is this JobTrigger's status behind (deferred fields not yet written)?"""
        return key in self._behind or key in self._due

    def defer(self, key: TriggerKey) -> bool:
        """May the status write of this sync wait? True when the JobTrigger is behind already (merge with the
        waiting fields) or the budget is spent; False (write now) takes a token."""
        if not self.enabled or key in self._due:
            return False
        if key in self._behind:
            return True
        if self.bucket.take() == 0.0:
            return False
        self._behind[key] = None
        self._wake.set()
        metrics.STATUS_BEHIND.set(len(self._behind) + len(self._due))
        return True

    def written(self, key: TriggerKey) -> None:
        """The status on the server has everything (written, or nothing to write): no longer behind."""
        self._behind.pop(key, None)
        self._due.discard(key)
        metrics.STATUS_BEHIND.set(len(self._behind) + len(self._due))

    def pending(self) -> list[TriggerKey]:
        return [*self._behind, *self._due]

    async def run(self, enqueue: Callable[[TriggerKey], None]) -> None:
        """Hand the oldest deferred JobTrigger to a sync that writes, one per token."""
        while True:
            if not self._behind:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self.bucket.take()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            key, _ = self._behind.popitem(last=False)
            self._due.add(key)
            metrics.STATUS_FLUSHES.inc()
            enqueue(key)


async def flush_deferred(ctl: Controller, which: Callable[[TriggerKey], bool] = lambda _: True) -> int:
    """Write the deferred status fields of these JobTriggers now, straight from memory (on SIGTERM after the drain,
    and before a shard hand-over): no sync of them runs any more, so nothing else writes their status. Best effort:
    a write that fails leaves the fields to whoever syncs next, who reads them back from the Jobs' baseline
    annotations. Returns how many were written."""
    done = 0
    for key in [k for k in ctl.write_behind.pending() if which(k)]:
        obj = ctl.triggers.objects.get(key)
        carried = ctl.unwritten_run.get(key)
        uid = ((obj or {}).get("metadata") or {}).get("uid")
        if obj is not None and carried is not None and carried[0] == uid:
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{key[0]}/{PLURAL}/{key[1]}/status"
            try:
                # no resourceVersion precondition: while this replica owns the JobTrigger it is the only writer of
                # these fields, and no sync of it runs; the uid keeps a re-created namesake out
                await ctl.kube.merge_patch(path, {"metadata": {"uid": uid}, "status": carried[1]})
                done += 1
            except Exception as e:  # best effort (see above): the API may be what fails
                log.warning("could not write a deferred status", extra={"jobtrigger": "/".join(key), "error": str(e)})
        ctl.unwritten_run.pop(key, None)
        ctl.write_behind.written(key)
    return done
