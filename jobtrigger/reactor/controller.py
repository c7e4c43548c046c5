"""The reactor: watches feed one work queue of JobTrigger keys; workers sync one JobTrigger at a time.

Shape (client-go style): watch events only say "look at this JobTrigger again"; ``sync`` reads the current state
(JobTrigger from the cache, watched objects' hashes, the JobTrigger's Jobs) and converges, idempotently.

- JobTriggers, their Jobs (label ``jobtrigger.dev/owner``) and every watched kind/namespace scope each have one
  watch task; the JobTrigger and Job watches keep small summaries, scopes keep hashes only.
- The queue guarantees one worker per key, coalesces bursts and retries failures with capped backoff; timers
  (cooldowns) are delayed re-adds.
- Exactly once: a Job's name is derived from its occurrence (JobTrigger uid + run number + observed state), and
  the baseline it ran for is persisted in status with a resourceVersion precondition. A crash between creating the
  Job and writing status leads to the same name on the next sync, whose ``AlreadyExists`` counts as done.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from jobtrigger import metrics
from jobtrigger.api.models import (
    API_VERSION,
    GROUP,
    PLURAL,
    VERSION,
    JobTrigger,
)
from jobtrigger.api.validation import SpecError, parse_jobtrigger
from jobtrigger.jobs.builder import (
    LABEL_OWNER,
)
from jobtrigger.kube.client import JSON, ApiError, KubeClient, is_namespace_terminating, is_not_found
from jobtrigger.kube.discovery import Discovery
from jobtrigger.kube.events import EventRecorder
from jobtrigger.kube.watching import ObjectKey, Watcher, WatcherGroup
from jobtrigger.reactor.jobcache import JOBS_PATH, JobSummary, summarize_job
from jobtrigger.reactor.podwatches import PodWatches
from jobtrigger.reactor.queue import QueueShutDown, WorkQueue
from jobtrigger.reactor.sync.core import Sync
from jobtrigger.reactor.watches import ResourceWatches, TriggerKey
from jobtrigger.reactor.writebehind import WriteBehind, flush_deferred
from jobtrigger.timefmt import rfc3339_ms
from jobtrigger.triggers.fields import HashKey

log = logging.getLogger(__name__)

#: consecutive failed syncs of one JobTrigger before it shows ``Ready=False, reason SyncError``: an unexpected
#: exception (a bug) at once after a few retries, an API error (usually transient: conflicts, 5xx) only later
SYNC_ERROR_AFTER = 3
SYNC_ERROR_AFTER_API = 8


@dataclass
class Settings:
    namespace: str | None = None  # None: all namespaces; "a,b": these namespaces (namespaced RBAC suffices)
    workers: int = 16  # a sync mostly waits for the API server (Job create, status write): not CPU-bound
    allow_cross_namespace: bool = False
    max_active_jobs: int = 0  # controller-wide cap on active Jobs (0: none); over it runs wait, never dropped
    watch_timeout: int = 300  # the server ends each watch after this; we resume from the last resourceVersion
    inactivity_timeout: float | None = None  # a silent watch is re-opened after this (default watch_timeout + 60)
    identity: str = field(default_factory=socket.gethostname)
    #: JobTriggers this controller handles, by label (static sharding, Flux style); None: all
    selector: str | None = None
    #: one FIFO per namespace in the work queue, served in turn (off: a single FIFO, for comparison only)
    fair_namespaces: bool = True
    #: Event writes per second and burst (creates and count updates; over it, Events fold into their series)
    event_qps: float = 5.0
    event_burst: int = 25
    #: status writes per second and burst that may record resource runs at once; over it they are merged into a
    #: later write of the same JobTrigger (write-behind, see reactor/writebehind.py); 0: always write at once
    status_qps: float = 20.0
    status_burst: int = 1
    #: key of the field hashes persisted in status (None: unkeyed, as before 0.2), and the one before a rotation
    hash_key: HashKey | None = None
    previous_hash_key: HashKey | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # injected in tests

    def namespaces(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in (self.namespace or "").split(",") if n.strip())


def _now() -> datetime:
    return datetime.now(UTC)


_ts = rfc3339_ms


def _needs_sync(old: JSON, new: JSON) -> bool:
    om, nm = old.get("metadata") or {}, new.get("metadata") or {}
    return bool(
        om.get("generation") != nm.get("generation")
        or om.get("annotations") != nm.get("annotations")
        or nm.get("deletionTimestamp")
    )


def _rv(obj: JSON) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Controller:
    def __init__(self, kube: KubeClient, settings: Settings | None = None):
        self.kube = kube
        self.settings = settings or Settings()
        self.discovery = Discovery(kube)
        self.events = EventRecorder(
            kube, host=self.settings.identity, qps=self.settings.event_qps, burst=self.settings.event_burst
        )
        # one FIFO per namespace, served in turn: a namespace flooding the queue cannot starve the others
        self.queue: WorkQueue[TriggerKey] = WorkQueue(
            on_depth_change=metrics.QUEUE_DEPTH.set,
            partition=(lambda k: k[0]) if self.settings.fair_namespaces else None,
        )
        self.resource_watches = ResourceWatches(
            kube,
            self._enqueue,
            watch_timeout=self.settings.watch_timeout,
            inactivity_timeout=self.settings.inactivity_timeout,
            on_restart=lambda name, why: metrics.WATCH_RESTARTS.labels(why).inc(),
            hash_key=self.settings.hash_key,
        )
        self.pod_watches = PodWatches(
            kube,
            self._enqueue,
            watch_timeout=self.settings.watch_timeout,
            inactivity_timeout=self.settings.inactivity_timeout,
            on_restart=lambda why: metrics.WATCH_RESTARTS.labels(why).inc(),
        )
        namespaces: list[str | None] = list(self.settings.namespaces()) or [None]

        def ns_path(base: str, resource: str, ns: str | None) -> str:
            return base + (f"/namespaces/{ns}" if ns else "") + f"/{resource}"

        self.triggers: WatcherGroup[JSON] = WatcherGroup(
            namespaces,
            lambda ns: Watcher(
                kube,
                ns_path(f"/apis/{GROUP}/{VERSION}", PLURAL, ns),
                summarize=lambda o: o,
                on_change=self._on_trigger_change,
                label_selector=self.settings.selector,
                watch_timeout=self.settings.watch_timeout,
                inactivity_timeout=self.settings.inactivity_timeout,
                name=f"jobtriggers/{ns or '*'}",
                on_restart=lambda why: metrics.WATCH_RESTARTS.labels(why).inc(),
            ),
        )
        self.jobs: WatcherGroup[JobSummary] = WatcherGroup(
            namespaces,
            lambda ns: Watcher(
                kube,
                ns_path(JOBS_PATH, "jobs", ns),
                summarize=summarize_job,
                on_change=self._on_job_change,
                label_selector=LABEL_OWNER,
                watch_timeout=self.settings.watch_timeout,
                inactivity_timeout=self.settings.inactivity_timeout,
                name=f"jobs/{ns or '*'}",
                on_restart=lambda why: metrics.WATCH_RESTARTS.labels(why).inc(),
            ),
        )
        self._jobs_by_owner: dict[TriggerKey, set[str]] = defaultdict(set)
        # JobTrigger -> (uid, generation, errors of the Job template dry run)
        self._validated: dict[TriggerKey, tuple[str, int, list[SpecError]]] = {}
        # JobTrigger -> (uid, generation, the parsed and validated object): the spec changes only with a new
        # generation, so a sync for a watch event does not parse and validate it again (pydantic ~0.3 ms each)
        self._parsed: dict[TriggerKey, tuple[str, int, tuple[JobTrigger | None, list[SpecError]]]] = {}
        self._event_arrival: dict[TriggerKey, float] = {}
        # our last status write per JobTrigger, until the watch has it
        self._written: dict[TriggerKey, JSON] = {}
        # Jobs we created that the Job watch has not shown yet (for concurrencyPolicy)
        self._created: dict[TriggerKey, dict[str, str]] = {}  # JobTrigger -> {Job name: uid ("" if unknown)}
        # a baseline taken for a new watch list that no status write has persisted yet: (JobTrigger, status field)
        # -> (spec hash, entries). A retry after a failed write compares with it instead of taking a new one, so a
        # change that arrives between the two is not swallowed
        self.pending_baselines: dict[tuple[TriggerKey, str], tuple[str, list[JSON]]] = {}
        # status fields only the sync that did the work can know (the last run, the schedule slot taken, the output
        # result) that no status write has persisted yet: JobTrigger -> (uid, fields) (Sync.record). A write that
        # fails (409: the object changed meanwhile, e.g. a new token) would otherwise lose them for good when the
        # retry creates no Job (Forbid skips, nothing new to run)
        self.unwritten_run: dict[TriggerKey, tuple[str, JSON]] = {}
        # the status write budget and the JobTriggers whose run records wait in unwritten_run (write-behind)
        self.write_behind = WriteBehind(self.settings.status_qps, self.settings.status_burst)
        # JobTriggers waiting for the controller-wide cap; woken when any Job finishes
        self.capped: set[TriggerKey] = set()
        self._active_jobs = 0  # active Jobs in the Job watch cache, kept incrementally
        self._states: dict[TriggerKey, str] = {}  # Ready reason per JobTrigger (metric)
        self._scope: anyio.CancelScope | None = None  # the task group of run(), while it runs
        self.ready = asyncio.Event()
        #: with --shards: may this replica work on a JobTrigger now (the Membership gate); None: all of them
        self.owns: Callable[[TriggerKey], bool] | None = None
        self.shard_identity: str | None = None  # written to status.shard while sharding
        #: reads a container log (``source: Logs``); the one seam tests replace, as no kubelet serves logs there
        self.read_log: Callable[[str, str, str, int], Awaitable[str]] = self._read_log

    async def _read_log(self, namespace: str, pod: str, container: str, limit: int) -> str:
        return await self.kube.get_text(
            f"/api/v1/namespaces/{namespace}/pods/{pod}/log", container=container, limitBytes=limit
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until cancelled (or :meth:`stop`).

        One anyio task group holds the JobTrigger and Job watches and the workers: cancelling ``run`` cancels all of
        them and waits until each has ended, and if one of them crashes the others are cancelled and the error
        propagates (the process exits and is restarted) instead of a half-working controller staying up."""
        log.info("controller started", extra={"namespace": self.settings.namespace or "*"})
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self.jobs.run, name="watch jobs")
                tg.start_soon(self.triggers.run, name="watch jobtriggers")
                # No worker before the Job list: concurrencyPolicy and --max-active-jobs decide from the Job cache,
                # and an empty cache would let a sync create a second Job next to an active one (at start and at
                # every leader hand-over). Keys queued meanwhile wait in the queue.
                await self.jobs.wait_synced()
                for i in range(self.settings.workers):
                    tg.start_soon(self._worker, i, name=f"worker {i}")
                tg.start_soon(self.write_behind.run, self.queue.add, name="status flusher")
                await self.triggers.wait_synced()
                self.ready.set()
        finally:
            self._scope = None
            await self._cleanup()

    async def stop(self) -> None:
        """Stop taking work and end :meth:`run` (its task group cancels the watches and any worker still busy)."""
        self.queue.shutdown()
        if self._scope is not None:
            self._scope.cancel()

    async def _cleanup(self) -> None:
        # shielded: it must finish even though it runs while run() is being cancelled; bounded: a stuck Event write
        # must not hold up a shutdown (the deadline is the cancel scope's, not a timeout around one call)
        with anyio.CancelScope(shield=True):
            self.queue.shutdown()
            with anyio.move_on_after(5):
                await self.events.close()
            await self.resource_watches.close()
            await self.pod_watches.close()

    # ------------------------------------------------------------------ watch callbacks

    def _enqueue(self, key: TriggerKey) -> None:
        self._event_arrival.setdefault(key, time.monotonic())
        self.queue.add(key)

    def _on_trigger_change(self, key: ObjectKey, old: JSON | None, new: JSON | None) -> None:
        written = self._written.get(key)
        if written is not None and new is not None:
            if _rv(new) < _rv(written):
                # an event older than our own status write: keep what we wrote (the watch will catch up)
                self.triggers.objects[key] = written
                return
            del self._written[key]
        # our own status writes need no new sync; spec, annotations and deletion do
        if old is None or new is None or _needs_sync(old, new):
            self.queue.add(key)

    def _on_job_change(self, key: ObjectKey, old: JobSummary | None, new: JobSummary | None) -> None:
        just_created = (
            old is None
            and new is not None
            and new.state == "Active"
            and key[1] in self._created.get((key[0], new.owner), {})
        )
        if old is not None:
            self._jobs_by_owner[(key[0], old.owner)].discard(key[1])
            self.queue.add((key[0], old.owner))
        if new is not None:
            self._jobs_by_owner[(key[0], new.owner)].add(key[1])
            self._created.get((key[0], new.owner), {}).pop(key[1], None)  # the watch has it now
            if not just_created:
                # a Job we created and already listed as active needs no second look; anything else does
                self.queue.add((key[0], new.owner))
        self._active_jobs += (new is not None and new.state == "Active") - (old is not None and old.state == "Active")
        if self.capped and (new is None or new.state != "Active"):
            waiting, self.capped = self.capped, set()
            for k in waiting:
                self.queue.add(k)
        metrics.ACTIVE_JOBS.set(self._active_jobs)

    # ------------------------------------------------------------------ workers

    async def _worker(self, n: int) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            t0 = time.monotonic()
            try:
                await self.sync(key)
                self.queue.forget(key)
                metrics.SYNCS.labels("ok").inc()
            except Exception as e:
                delay = self.queue.add_rate_limited(key)
                metrics.SYNCS.labels("error").inc()
                level = logging.WARNING if isinstance(e, ApiError) else logging.ERROR
                log.log(
                    level,
                    "sync failed, retrying",
                    exc_info=not isinstance(e, ApiError),
                    extra={"jobtrigger": "/".join(key), "error": str(e), "retry_in": round(delay, 3)},
                )
                failures = self.queue.num_requeues(key)
                if is_namespace_terminating(e) or is_not_found(e):
                    pass  # the JobTrigger goes with its namespace (the watch's DELETED ends the retries): no report
                elif failures == (SYNC_ERROR_AFTER_API if isinstance(e, ApiError) else SYNC_ERROR_AFTER):
                    await self._report_sync_error(key, e, failures)
            finally:
                metrics.SYNC_SECONDS.observe(time.monotonic() - t0)
                self.queue.done(key)

    async def _report_sync_error(self, key: TriggerKey, error: Exception, failures: int) -> None:
        """Make a sync that keeps failing visible on the JobTrigger (``kubectl get jt``, ``describe``): Ready=False
        with reason SyncError, an Event, the ``jobtrigger_jobtriggers{reason="SyncError"}`` gauge. Retrying goes
        on with backoff; the next good sync sets Ready from what it finds. Best effort: never raises."""
        obj = self.triggers.objects.get(key)
        if obj is None:
            return
        what = error.message if isinstance(error, ApiError) else f"{type(error).__name__}: {error}"
        message = f"sync failed {failures} times in a row, retrying with backoff: {what}"[:1024]
        meta = obj.get("metadata") or {}
        conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") != "Ready"]
        conds.append(
            {
                "type": "Ready",
                "status": "False",
                "reason": "SyncError",
                "message": message,
                "lastTransitionTime": _ts(self.settings.clock()),
                "observedGeneration": int(meta.get("generation") or 0),
            }
        )
        self.note_state(key, "SyncError")
        try:
            await self.events.emit(obj, "Warning", "SyncError", message)
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{key[0]}/{PLURAL}/{key[1]}/status"
            written = await self.kube.merge_patch(path, {"status": {"conditions": conds}})
            self.remember_written(key, written)
        except Exception as e:  # the API may be what fails: the log and the metric still tell
            log.warning("could not report the sync error", extra={"jobtrigger": "/".join(key), "error": str(e)})

    # ------------------------------------------------------------------ sync

    def release(self, key: TriggerKey) -> None:
        """Forget a JobTrigger's watches and in-memory progress (deleted, or given to another shard replica): whoever
        works on it next starts from its persisted status, as after a restart."""
        self.resource_watches.remove(key)
        self.pod_watches.remove(key)
        self._event_arrival.pop(key, None)
        self._written.pop(key, None)
        self._created.pop(key, None)
        for k in [k for k in self.pending_baselines if k[0] == key]:
            del self.pending_baselines[k]
        self.unwritten_run.pop(key, None)
        self.write_behind.written(key)
        self.note_state(key, None)

    async def drain(self, give_up: Callable[[str], bool]) -> None:
        """Return once no sync of a JobTrigger matching ``give_up`` (``namespace/name``) runs, with their watches
        closed. The ownership gate already refuses them, so no new sync of them starts meanwhile."""
        while any(give_up(f"{k[0]}/{k[1]}") for k in self.queue.processing()):  # noqa: ASYNC110 (a short poll)
            await asyncio.sleep(0.02)
        await flush_deferred(self, lambda k: give_up(f"{k[0]}/{k[1]}"))
        for key in list(self.triggers.objects):
            if give_up(f"{key[0]}/{key[1]}"):
                self.release(key)

    async def sync(self, key: TriggerKey) -> None:
        if self.owns is not None and not self.owns(key):
            await flush_deferred(self, lambda k: k == key)  # given away: its deferred status goes first
            self.release(key)
            return
        obj = self.triggers.objects.get(key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            self.release(key)
            self._validated.pop(key, None)
            self._parsed.pop(key, None)
            return
        s = Sync(self, key, obj)
        # the first watch event since the last sync (if any): what jobtrigger_event_to_job_seconds measures from;
        # taken now, so a sync that creates no Job does not leave a stale start for a later one
        s.arrival = self._event_arrival.pop(key, None)
        error: BaseException | None = None
        try:
            await s.run()
        except BaseException as e:
            error = e
            raise
        finally:
            for trace in s.traces:
                trace.end(error)

    # ------------------------------------------------------------------ helpers used by Sync

    def parsed(self, key: TriggerKey, obj: JSON) -> tuple[JobTrigger | None, list[SpecError]]:
        """The JobTrigger parsed and validated (:func:`parse_jobtrigger`), once per uid and generation. Syncs only
        read the parsed spec (never the parsed metadata or status) and never change it."""
        meta = obj.get("metadata") or {}
        uid, generation = str(meta.get("uid") or ""), int(meta.get("generation") or 0)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == uid and cached[1] == generation and uid and generation:
            return cached[2]
        result = parse_jobtrigger(obj)
        self._parsed[key] = (uid, generation, result)
        return result

    def jobs_of(self, key: TriggerKey) -> dict[str, JobSummary]:
        """The Jobs this JobTrigger controls: owner label for the index, controller ownerReference uid to decide."""
        uid = str(((self.triggers.objects.get(key) or {}).get("metadata") or {}).get("uid") or "")
        out = {}
        for name in self._jobs_by_owner.get(key, set()):
            s = self.jobs.objects.get((key[0], name))
            if s is not None and s.owner == key[1] and uid and s.owner_uid == uid:
                out[name] = s
        return out

    def active_jobs(self, key: TriggerKey) -> list[str]:
        """Active Jobs of a JobTrigger: from the Job watch, plus Jobs created by us that it has not shown yet."""
        jobs = self.jobs_of(key)
        return sorted({n for n, s in jobs.items() if s.state == "Active"} | set(self._created.get(key, {})))

    def total_active(self) -> int:
        """Active Jobs of all JobTriggers (for the controller-wide cap)."""
        return self._active_jobs + sum(len(v) for v in self._created.values())

    def note_state(self, key: TriggerKey, reason: str | None) -> None:
        """Keep jobtrigger_jobtriggers{reason} (JobTriggers by Ready reason) current."""
        old = self._states.pop(key, None)
        if old is not None:
            metrics.JOBTRIGGERS.labels(old).dec()
        if reason is not None:
            self._states[key] = reason
            metrics.JOBTRIGGERS.labels(reason).inc()

    def watch_count(self) -> int:
        """Watch streams open: JobTriggers and Jobs (one per namespace scope), each watched kind/namespace scope
        and each pod scope (shared by every JobTrigger that needs it)."""
        return (
            len(self.triggers.watchers)
            + len(self.jobs.watchers)
            + len(self.resource_watches.scopes)
            + len(self.pod_watches.scopes)
        )

    def watch_problems(self) -> list[str]:
        """Failing JobTrigger/Job watches (for /readyz): a controller that cannot see its objects is not ready."""
        out = []
        for group in (self.triggers, self.jobs):
            for w in group.watchers.values():
                if w.last_error is not None:
                    out.append(f"{w.name}: {w.last_error.status} {w.last_error.message}")
        return out

    def note_created(self, key: TriggerKey, name: str, uid: str = "") -> None:
        if name not in self.jobs_of(key):
            self._created.setdefault(key, {})[name] = uid or self._created.get(key, {}).get(name, "")

    def created_pending(self, key: TriggerKey) -> dict[str, str]:
        """Jobs this process created that the Job watch has not shown yet (name -> uid)."""
        return dict(self._created.get(key, {}))

    def forget_active(self, key: TriggerKey, name: str) -> None:
        self._created.get(key, {}).pop(name, None)

    def remember_written(self, key: TriggerKey, obj: JSON) -> None:
        """Replace the cached object with the one our own write returned, unless the watch already has a newer one.

        Never inserts: a missing entry means the watch saw the JobTrigger deleted after our write, and putting the
        stale copy back would resurrect it (syncs, Jobs owned by a dead uid) until the next relist."""
        cached = self.triggers.objects.get(key)
        if cached is not None and _rv(obj) >= _rv(cached):
            self.triggers.objects[key] = obj
            self._written[key] = obj


__all__ = ["API_VERSION", "Controller", "JobSummary", "Settings", "Sync", "summarize_job"]
