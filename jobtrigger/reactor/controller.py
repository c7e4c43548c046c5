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
import contextlib
import dataclasses
import logging
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from jobtrigger import metrics
from jobtrigger.api.models import (
    API_VERSION,
    GROUP,
    PLURAL,
    VERSION,
    JobTrigger,
    LabelSelector,
    OutputSpec,
    ResourceHash,
)
from jobtrigger.api.validation import SpecError, parse_duration, parse_jobtrigger
from jobtrigger.jobs import output
from jobtrigger.jobs.builder import (
    ANNOTATION_CREATED,
    ANNOTATION_OUTPUT,
    ANNOTATION_RUN_REQUESTED,
    LABEL_AFFECTED_POD,
    LABEL_OWNER,
    Mounted,
    Occurrence,
    build_job,
    config_references,
    job_name,
)
from jobtrigger.kube.client import JSON, ApiError, KubeClient
from jobtrigger.kube.discovery import Discovery, UnknownKind
from jobtrigger.kube.events import EventRecorder
from jobtrigger.kube.watching import ObjectKey, Watcher, WatcherGroup
from jobtrigger.reactor.podwatches import PodScope, PodWatches
from jobtrigger.reactor.queue import QueueShutDown, WorkQueue
from jobtrigger.reactor.watches import Interest, ResourceWatches, ScopeKey, TriggerKey
from jobtrigger.timefmt import parse as parse_time
from jobtrigger.timefmt import rfc3339_ms
from jobtrigger.triggers import pods, resources, schedule
from jobtrigger.triggers.fields import hash_value, normalize_paths
from jobtrigger.triggers.resources import ObjectRef
from jobtrigger.triggers.selectors import to_query

log = logging.getLogger(__name__)

JOBS_PATH = "/apis/batch/v1"
DEFAULT_HISTORY = 5
UNKNOWN_KIND_RETRY = 30.0  # seconds
MAX_POD_UIDS = 5000  # pod uids kept in status to see deletions that happened while the controller was down
#: consecutive failed syncs of one JobTrigger before it shows ``Ready=False, reason SyncError``: an unexpected
#: exception (a bug) at once after a few retries, an API error (usually transient: conflicts, 5xx) only later
SYNC_ERROR_AFTER = 3
SYNC_ERROR_AFTER_API = 8
#: a versioned output target whose planned <name>-vN another writer created meanwhile is re-planned this often
VERSION_REPLANS = 3


@dataclass
class Settings:
    namespace: str | None = None  # None: all namespaces; "a,b": these namespaces (namespaced RBAC suffices)
    workers: int = 4
    allow_cross_namespace: bool = False
    max_active_jobs: int = 0  # controller-wide cap on active Jobs (0: none); over it runs wait, never dropped
    watch_timeout: int = 300  # the server ends each watch after this; we resume from the last resourceVersion
    inactivity_timeout: float | None = None  # a silent watch is re-opened after this (default watch_timeout + 60)
    identity: str = field(default_factory=socket.gethostname)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))  # injected in tests

    def namespaces(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in (self.namespace or "").split(",") if n.strip())


@dataclass(frozen=True)
class JobSummary:
    owner: str
    uid: str
    created: str
    state: str  # Active | Succeeded | Failed
    output: str = ""  # jobtrigger.dev/output annotation: "" (not handled yet), written, skipped, failed
    #: uid of the controlling JobTrigger (ownerReference): the label names the owner, the uid says which
    #: incarnation of that name; a JobTrigger deleted and re-created under the same name owns none of the old Jobs
    owner_uid: str = ""


def _controller_uid(meta: JSON) -> str:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "JobTrigger":
            return str(ref.get("uid") or "")
    return ""


def summarize_job(obj: JSON) -> JobSummary | None:
    meta = obj.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(LABEL_OWNER)
    if not owner:
        return None
    state = "Active"
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            state = "Succeeded" if c["type"] == "Complete" else "Failed"
    annotations = meta.get("annotations") or {}
    created = annotations.get(ANNOTATION_CREATED) or meta.get("creationTimestamp", "")
    return JobSummary(
        owner, meta.get("uid", ""), created, state, annotations.get(ANNOTATION_OUTPUT, ""), _controller_uid(meta)
    )


def _now() -> datetime:
    return datetime.now(UTC)


_ts = rfc3339_ms
_parse_ts = parse_time


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
        self.events = EventRecorder(kube, host=self.settings.identity)
        self.queue: WorkQueue[TriggerKey] = WorkQueue(on_depth_change=metrics.QUEUE_DEPTH.set)
        self.resource_watches = ResourceWatches(
            kube,
            self._enqueue,
            watch_timeout=self.settings.watch_timeout,
            inactivity_timeout=self.settings.inactivity_timeout,
            on_restart=lambda name, why: metrics.WATCH_RESTARTS.labels(why).inc(),
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
        self._event_arrival: dict[TriggerKey, float] = {}
        # our last status write per JobTrigger, until the watch has it
        self._written: dict[TriggerKey, JSON] = {}
        # Jobs we created that the Job watch has not shown yet (for concurrencyPolicy)
        self._created: dict[TriggerKey, dict[str, str]] = {}  # JobTrigger -> {Job name: uid ("" if unknown)}
        # a baseline taken for a new watch list that no status write has persisted yet: (JobTrigger, status field)
        # -> (spec hash, entries). A retry after a failed write compares with it instead of taking a new one, so a
        # change that arrives between the two is not swallowed
        self.pending_baselines: dict[tuple[TriggerKey, str], tuple[str, list[JSON]]] = {}
        # JobTriggers waiting for the controller-wide cap; woken when any Job finishes
        self.capped: set[TriggerKey] = set()
        self._active_jobs = 0  # active Jobs in the Job watch cache, kept incrementally
        self._states: dict[TriggerKey, str] = {}  # Ready reason per JobTrigger (metric)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        #: reads a container log (``source: Logs``); the one seam tests replace, as no kubelet serves logs there
        self.read_log: Callable[[str, str, str, int], Awaitable[str]] = self._read_log

    async def _read_log(self, namespace: str, pod: str, container: str, limit: int) -> str:
        return await self.kube.get_text(
            f"/api/v1/namespaces/{namespace}/pods/{pod}/log", container=container, limitBytes=limit
        )

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until cancelled."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.jobs.run(), name="watch jobs"),
            loop.create_task(self.triggers.run(), name="watch jobtriggers"),
        ]
        log.info("controller started", extra={"namespace": self.settings.namespace or "*"})
        try:
            # No worker before the Job list: concurrencyPolicy and --max-active-jobs decide from the Job cache, and
            # an empty cache would let a sync create a second Job next to an active one (at start and at every
            # leader hand-over). Keys queued meanwhile wait in the queue.
            await self.jobs.wait_synced()
            self._tasks += [loop.create_task(self._worker(i), name=f"worker {i}") for i in range(self.settings.workers)]
            await self.triggers.wait_synced()
            self.ready.set()
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.queue.shutdown()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, QueueShutDown):
                await t
        self._tasks = []
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.events.flush(), 5)
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
                if failures == (SYNC_ERROR_AFTER_API if isinstance(e, ApiError) else SYNC_ERROR_AFTER):
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

    async def sync(self, key: TriggerKey) -> None:
        obj = self.triggers.objects.get(key)
        if obj is None or (obj.get("metadata") or {}).get("deletionTimestamp"):
            self.resource_watches.remove(key)
            self.pod_watches.remove(key)
            self._event_arrival.pop(key, None)
            self._validated.pop(key, None)
            self._written.pop(key, None)
            self._created.pop(key, None)
            for k in [k for k in self.pending_baselines if k[0] == key]:
                del self.pending_baselines[k]
            self.note_state(key, None)
            return
        s = Sync(self, key, obj)
        # the first watch event since the last sync (if any): what jobtrigger_event_to_job_seconds measures from;
        # taken now, so a sync that creates no Job does not leave a stale start for a later one
        s.arrival = self._event_arrival.pop(key, None)
        await s.run()

    # ------------------------------------------------------------------ helpers used by Sync

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


class Sync:
    """One evaluation of one JobTrigger (a fresh instance per sync keeps the state explicit)."""

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
        self.now = ctl.settings.clock()
        self.mounts: tuple[Mounted, ...] = ()
        self.config_interests: list[list[Interest]] = []  # rerunOnConfigChange: [object, its output family]
        self.arrival: float | None = None  # monotonic time of the watch event that led to this sync

    # ---------------------------------------------------------------- main flow

    async def run(self) -> None:
        jt, errors = parse_jobtrigger(self.obj)
        if jt is None or errors:
            await self._invalid("InvalidSpec", errors)
            return
        self.status["triggers"] = _summary(jt)
        if len(self.name) > 63:
            await self._invalid(
                "InvalidSpec",
                [SpecError("metadata.name", "at most 63 characters: the name is a label value on every Job")],
            )
            return
        interests, errors, reason = await self._interests(jt)
        if errors:
            await self._invalid(reason, errors)
            return
        errors = await self._validate_job_template(jt)
        if errors:
            await self._invalid("InvalidJobTemplate", errors)
            return
        config_interests = await self._config_interests(jt)
        self.config_interests = config_interests
        self.ctl.resource_watches.set_interests(self.key, [i for lst in [*interests, *config_interests] for i in lst])
        pt = jt.spec.triggers.pods
        self.ctl.pod_watches.set_interest(
            self.key,
            PodScope(pt.namespace or self.ns, to_query(pt.selector)) if pt else None,
            pt.when if pt else (),
        )
        if not (self.ctl.resource_watches.synced(self.key) and self.ctl.pod_watches.synced(self.key)):
            failures = self.ctl.resource_watches.errors(self.key) + self.ctl.pod_watches.errors(self.key)
            if failures:
                # the watch retries with backoff and enqueues this JobTrigger once it lists successfully
                self._condition("False", "WatchFailed", "; ".join(failures))
                await self.ctl.events.emit(self.obj, "Warning", "WatchFailed", failures[0])
            else:
                self._condition("Unknown", "Syncing", "waiting for the initial list of watched objects")
            self.status["observedGeneration"] = self.generation
            await self._write_status()
            return

        self.status["pending"] = None
        self.mounts = _mounts(jt)
        await self._manual(jt)
        await self._errand(jt)
        if jt.spec.triggers.resources is not None:
            await self._resources(jt, interests)
        if config_interests:
            await self._config_change(jt, config_interests)
        if jt.spec.triggers.pods is not None:
            await self._pods(jt)
        if jt.spec.triggers.schedule is not None:
            await self._schedule(jt)
        else:
            self.status["nextScheduleTime"] = None
        await self._jobs(jt)
        self._condition("True", "Suspended" if jt.spec.suspend else "Watching", self._ready_message(jt, interests))
        self.status["observedGeneration"] = self.generation
        await self._write_status()

    # ---------------------------------------------------------------- validation

    async def _interests(self, jt: JobTrigger) -> tuple[list[list[Interest]], list[SpecError], str]:
        """Resolve each watched kind via discovery and check namespaces (K8)."""
        out: list[list[Interest]] = []
        errors: list[SpecError] = []
        reason = "InvalidSpec"
        rt = jt.spec.triggers.resources
        for i, w in enumerate(rt.watch if rt else []):
            where = f"spec.triggers.resources.watch[{i}]"
            try:
                gvr = await self.ctl.discovery.resolve(w.api_version, w.kind)
            except UnknownKind as e:
                errors.append(SpecError(where, str(e)))
                reason = "UnknownKind"
                out.append([])
                continue
            if gvr.namespaced:
                namespace = w.namespace or self.ns
                if namespace != self.ns and not self.ctl.settings.allow_cross_namespace:
                    errors.append(
                        SpecError(
                            f"{where}.namespace",
                            f"namespace {namespace!r} is not the JobTrigger's namespace {self.ns!r}; the "
                            "controller does not allow cross-namespace references (--allow-cross-namespace)",
                        )
                    )
                    reason = "Forbidden"
            else:
                if w.namespace:
                    errors.append(
                        SpecError(f"{where}.namespace", f"{w.kind} is cluster-scoped; namespace must be empty")
                    )
                namespace = None
            if w.mount is not None and namespace != self.ns:
                errors.append(
                    SpecError(f"{where}.mount", "only an object in the JobTrigger's own namespace can be mounted")
                )
            scope = ScopeKey(gvr, namespace)
            out.append([Interest(scope, w.name, w.selector, normalize_paths(w.fields))])
        pt = jt.spec.triggers.pods
        if pt is not None and pt.namespace and pt.namespace != self.ns and not self.ctl.settings.allow_cross_namespace:
            errors.append(
                SpecError(
                    "spec.triggers.pods.namespace",
                    f"namespace {pt.namespace!r} is not the JobTrigger's namespace {self.ns!r}; the controller does "
                    "not allow cross-namespace references (--allow-cross-namespace)",
                )
            )
            reason = "Forbidden"
        return out, errors, reason

    async def _config_interests(self, jt: JobTrigger) -> list[list[Interest]]:
        """One interest per ConfigMap/Secret the Job template references (their data and binaryData)."""
        if not jt.spec.rerun_on_config_change:
            return []
        out = []
        paths = normalize_paths(["data", "binaryData"])
        for kind, name in config_references(jt.spec.job_template.spec):
            gvr = await self.ctl.discovery.resolve("v1", kind)
            scope = ScopeKey(gvr, self.ns)
            # the object itself, and the versions of a versioned output of that name (a new version = a change)
            family = LabelSelector(match_labels={output.LABEL_OUTPUT_OF: output.label_value(name)})
            out.append([Interest(scope, name, None, paths), Interest(scope, None, family, paths)])
        return out

    async def _renames(self, jt: JobTrigger) -> dict[tuple[str, str], str]:
        """Template references to a versioned output ``X`` -> its newest ``X-vN`` (QuarksJob's versioned secrets).
        From the watch cache with ``rerunOnConfigChange`` (the families are watched anyway); otherwise one
        labelled LIST per kind, only when the template references ConfigMaps/Secrets."""
        out: dict[tuple[str, str], str] = {}
        if self.config_interests:
            for name_interest, family in self.config_interests:
                objs = [
                    {"metadata": {"name": key[1], "labels": labels}}
                    for key, labels in self.ctl.resource_watches.labels(family).items()
                ]
                newest = output.newest_version(objs)
                if newest and name_interest.name:
                    out[(name_interest.scope.gvr.kind, name_interest.name)] = newest
            return out
        refs = config_references(jt.spec.job_template.spec)
        for kind in sorted({k for k, _ in refs}):
            names = {output.label_value(n): n for k, n in refs if k == kind}
            resource = "secrets" if kind == "Secret" else "configmaps"
            selector = f"{output.LABEL_OUTPUT_OF} in ({','.join(sorted(names))})"
            try:
                got = await self.ctl.kube.get(f"/api/v1/namespaces/{self.ns}/{resource}", labelSelector=selector)
            except ApiError as e:
                if e.status == 403:
                    continue  # not allowed to list them: references stay as written
                raise
            families: dict[str, list[JSON]] = defaultdict(list)
            for obj in got.get("items") or []:
                value = ((obj.get("metadata") or {}).get("labels") or {}).get(output.LABEL_OUTPUT_OF)
                if value in names:
                    families[names[value]].append(obj)
            for name, objs in families.items():
                newest = output.newest_version(objs)
                if newest:
                    out[(kind, name)] = newest
        return out

    async def _validate_job_template(self, jt: JobTrigger) -> list[SpecError]:
        """Server-side dry run of a Job built from the template, once per generation."""
        cached = self.ctl._validated.get(self.key)
        if cached is not None and cached[:2] == (self.uid, self.generation):
            return cached[2]
        job = build_job(
            trigger_name=self.name,
            namespace=self.ns,
            trigger_uid=self.uid,
            spec=jt.spec,
            occurrence=Occurrence("resources", "dry-run", "validation"),
        )
        errors: list[SpecError] = []
        try:
            await self.ctl.kube.create(f"{JOBS_PATH}/namespaces/{self.ns}/jobs", job, dryRun="All")
        except ApiError as e:
            if e.status in (400, 422):
                details = (e.body.get("details") or {}).get("causes") or []
                msgs = [f"{c.get('field', '')}: {c.get('message', '')}" for c in details] or [e.message]
                errors = [SpecError("spec.jobTemplate", m.replace("spec.", "spec.jobTemplate.spec.", 1)) for m in msgs]
            elif e.status != 409:
                raise
        self.ctl._validated[self.key] = (self.uid, self.generation, errors)
        return errors

    async def _invalid(self, reason: str, errors: list[SpecError]) -> None:
        self.ctl.resource_watches.remove(self.key)
        self.ctl.pod_watches.remove(self.key)
        message = "; ".join(str(e) for e in errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
        changed = self._condition("False", reason, message)
        self.status["observedGeneration"] = self.generation
        if changed:
            metrics.INVALID.labels(reason).inc()
            await self.ctl.events.emit(self.obj, "Warning", reason, message)
            log.warning("invalid JobTrigger", extra={"jobtrigger": f"{self.ns}/{self.name}", "error": message})
        await self._write_status()
        if reason == "UnknownKind":
            # the CRD may be installed later: look again (discovery is re-fetched at most every few seconds)
            self.ctl.queue.add_after(self.key, UNKNOWN_KIND_RETRY)

    # ---------------------------------------------------------------- triggers

    async def _resources(self, jt: JobTrigger, interests: list[list[Interest]]) -> None:
        rt = jt.spec.triggers.resources
        assert rt is not None
        await self._watched(
            jt,
            RESOURCE_STATE,
            interests,
            spec_hash=_resource_spec_hash(jt),
            condition=rt.condition,
            cooldown=parse_duration(rt.cooldown),
            reason_suffix="",
        )

    async def _config_change(self, jt: JobTrigger, interests: list[list[Interest]]) -> None:
        """``rerunOnConfigChange``: the ConfigMaps/Secrets the Job template references are watched like a resource
        trigger of their own (baseline ``status.configHashes``, runs ``status.configRuns``, condition Any)."""
        await self._watched(
            jt,
            CONFIG_STATE,
            interests,
            spec_hash=hash_value([[i.scope.gvr.kind, i.name] for lst in interests for i in lst]),
            condition="Any",
            cooldown=timedelta(0),
            reason_suffix=", referenced by the Job template",
        )

    async def _watched(
        self,
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
        rw = self.ctl.resource_watches
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
        pending_key = (self.key, st.hashes)
        persisted: list[JSON] | None = None
        if self.status.get(st.spec_hash) == spec_hash and self.status.get(st.hashes) is not None:
            persisted = self.status.get(st.hashes) or []
            self.ctl.pending_baselines.pop(pending_key, None)
        elif (pending := self.ctl.pending_baselines.get(pending_key)) is not None and pending[0] == spec_hash:
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
            last_triggered=_parse_ts(self.status.get(st.last_time)) if st.last_time else None,
            now=self.now,
            suspended=jt.spec.suspend,
        )
        if decision.action == "baseline":
            self._set_baseline(st, decision.baseline, items, spec_hash)
            self.ctl.pending_baselines[pending_key] = (spec_hash, self.status[st.hashes])
        elif decision.action == "wait":
            self._pending(decision.reason)
            if decision.reason.startswith("cooldown"):
                metrics.SKIPPED.labels("cooldown").inc()
            if decision.retry_at is not None:
                delay = max(0.0, (decision.retry_at - self.now).total_seconds())
                self.ctl.queue.add_after(self.key, delay + 0.05)
        elif decision.action == "fire":
            runs = int(self.status.get(st.runs) or 0) + 1
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
            occurrence = Occurrence(
                trigger=st.trigger,
                key=f"{st.trigger}/{runs}/{decision.digest}",
                reason=reason,
                objects=changed,
            )
            if not await self._run(jt, occurrence):
                return  # Queue: the change stays unconsumed until the active Job has finished
            self.status[st.runs] = runs
            if st.last_time:
                self.status[st.last_time] = _ts(self.now)
            self._set_baseline(st, decision.baseline, items, spec_hash)

    async def _pods(self, jt: JobTrigger) -> None:
        """One Job per pod and transition. The watermark (``status.podWatermark``) advances only when everything
        that arrived before this sync has run, so a restart recovers what a crash dropped from the inbox."""
        pt = jt.spec.triggers.pods
        assert pt is not None
        pw = self.ctl.pod_watches
        when = frozenset(pt.when)
        watermark = _ts(self.now)
        if self.key not in pw.initialized:
            since = self.status.get("podWatermark")
            handled = pw.handled[self.key] = {str(o) for o in self.status.get("podHandled") or []}
            first: list[pods.Transition] = []
            current = pw.current(self.key)
            for key, summary in current.items():
                first += pods.existing(summary, key=key, when=when, since=since, include_existing=pt.include_existing)
            if "Deleted" in when and since is not None:
                for uid in sorted(pods.vanished(self.status.get("podUIDs") or [], current)):
                    first += pods.deleted(uid, when=when, key=(pt.namespace or self.ns, ""))
            # what was run or consumed before must not run again, even if its Job is gone (pruned, replaced, or
            # never created under Forbid): the Job's existence alone cannot tell
            pw.put_back(self.key, [t for t in first if t.occurrence not in handled])
            pw.initialized.add(self.key)
        if jt.spec.suspend:
            self._pending("pods: suspended")  # transitions wait in the inbox; the watermark stays
            return
        handled = pw.handled.setdefault(self.key, set())
        todo = [t for t in pw.take(self.key) if t.occurrence not in handled]
        for i, t in enumerate(todo):
            occurrence = Occurrence(
                trigger="pods",
                key=t.occurrence,
                reason=f"pod {t.namespace}/{t.name or t.uid}: {t.reason}",
                env=tuple(pods.pod_env(t)),
                labels=((LABEL_AFFECTED_POD, t.name[:63].rstrip("-.") if t.name else t.uid),),
            )
            try:
                ran = await self._run(jt, occurrence)
            except BaseException:
                pw.put_back(self.key, todo[i:])
                raise
            if not ran:
                pw.put_back(self.key, todo[i:])  # Queue / cap: the rest waits for the active Job
                self._persist_handled(pw, when, pt.include_existing)
                return
            handled.add(t.occurrence)
        if not pw.errors(self.key):  # a broken watch may be missing events: keep the old watermark
            self.status["podWatermark"] = watermark
        self._persist_handled(pw, when, pt.include_existing)
        if "Deleted" in when:
            self.status["podUIDs"] = sorted(s.uid for s in pw.current(self.key).values())[:MAX_POD_UIDS]
        else:
            self.status["podUIDs"] = None

    def _persist_handled(self, pw: PodWatches, when: frozenset[str], include_existing: bool) -> None:
        """Write the handled occurrences a first look with the watermark being written could still return.

        Kept in memory too until then (a failed status write loses nothing); trimmed to the current pods'
        replayable keys, so the list is bounded by the pods, not by time."""
        keep = pw.handled.get(self.key, set()) & pods.replayable(
            pw.current(self.key), when=when, since=self.status.get("podWatermark"), include_existing=include_existing
        )
        pw.handled[self.key] = keep
        self.status["podHandled"] = sorted(keep)[:MAX_POD_UIDS] or None

    async def _schedule(self, jt: JobTrigger) -> None:
        """Cron / ``@once``: run the due slot (Job name from the slot time), then sleep in the queue until the
        next one (a delayed re-add: an idle schedule costs no task and no API call)."""
        st = jt.spec.triggers.schedule
        assert st is not None
        sched = schedule.parse(st.cron, st.time_zone)  # validated before: cannot raise here
        created = _parse_ts(self.meta.get("creationTimestamp")) or self.now
        last = _parse_ts(self.status.get("lastScheduleTime"))
        d = schedule.decide(
            sched,
            created=created,
            last_schedule=last,
            now=self.now,
            starting_deadline=st.starting_deadline_seconds,
            suspended=jt.spec.suspend,
            once_done=False,
        )
        if d.action == "run" and d.slot is not None:
            slot = _ts(d.slot)
            occurrence = Occurrence(
                trigger="schedule",
                key=schedule.occurrence_key(d.slot),
                reason=f"scheduled run for {slot} ({st.cron}{', ' + st.time_zone if st.time_zone else ''})",
                env=(("JOBTRIGGER_SCHEDULED_TIME", slot),),
            )
            if not await self._run(jt, occurrence):
                return  # Queue / cap: the slot stays due; the latest due slot runs when there is room
            self.status["lastScheduleTime"] = slot
        elif d.action == "skip" and d.slot is not None:
            self.status["lastScheduleTime"] = _ts(d.slot)
            metrics.SKIPPED.labels("deadline").inc()
            await self.ctl.events.emit(self.obj, "Warning", "MissedSchedule", d.reason)
        if d.missed:
            self.status["missedSchedules"] = int(self.status.get("missedSchedules") or 0) + d.missed
            if d.action == "run":
                await self.ctl.events.emit(self.obj, "Warning", "MissedSchedule", d.reason)
        if d.action == "wait" and d.reason == "suspended":
            self._pending("schedule: suspended")
        self.status["nextScheduleTime"] = _ts(d.next_at) if d.next_at else None
        if d.next_at is not None:
            # wake up at the slot (a little after, so the clock has passed it when we look)
            self.ctl.queue.add_after(self.key, max(0.0, (d.next_at - self.now).total_seconds()) + 0.01)

    async def _manual(self, jt: JobTrigger) -> None:
        """Run once per new ``jobtrigger.dev/run-requested`` token (works on every JobTrigger)."""
        token = (self.meta.get("annotations") or {}).get(ANNOTATION_RUN_REQUESTED)
        if not token or token == self.status.get("lastRunRequest"):
            return
        if jt.spec.suspend:
            self._pending(f"manual run {token!r} waits: suspended")
            return
        occurrence = Occurrence(
            trigger="manual",
            key=f"manual/{token}",
            reason=f"manual run requested ({ANNOTATION_RUN_REQUESTED}={token})",
            env=(("JOBTRIGGER_RUN_REQUEST", token),),
        )
        if await self._run(jt, occurrence):
            self.status["lastRunRequest"] = token

    async def _errand(self, jt: JobTrigger) -> None:
        """ExtendedJob/QuarksJob errand flow: ``strategy: now`` runs once, then is reset to ``manual``.

        The occurrence is the generation that set ``now``, so a crash between the Job and the reset repeats
        nothing: the retry finds the Job (AlreadyExists) and only resets the spec."""
        manual = jt.spec.triggers.manual
        if manual is None or manual.strategy != "now" or jt.spec.suspend:
            return
        occurrence = Occurrence(
            trigger="manual",
            key=f"errand/{self.generation}",
            reason="errand run (spec.triggers.manual.strategy: now)",
        )
        if not await self._run(jt, occurrence):
            return
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}/{self.name}"
        strategy = "/spec/triggers/manual/strategy"
        try:
            # conditional on the strategy, not on the resourceVersion: an unrelated spec edit between our read and
            # this reset must not fail it (the retry would run errand/<generation+1>, a second Job)
            written = await self.ctl.kube.json_patch(
                path,
                [
                    {"op": "test", "path": strategy, "value": "now"},
                    {"op": "replace", "path": strategy, "value": "manual"},
                ],
            )
        except ApiError as e:
            if e.status in (404, 409, 422):
                # gone, or no longer `now` (reset already): the next sync looks at what is there
                self.ctl.queue.add(self.key)
                return
            raise
        # continue with the object as it is now, so the status write below does not conflict
        self.meta = written.get("metadata") or self.meta
        self.ctl.remember_written(self.key, written)
        self.ctl.queue.add(self.key)  # look again at the new generation (observedGeneration)

    def _pending(self, reason: str) -> None:
        current = self.status.get("pending")
        self.status["pending"] = f"{current}; {reason}" if current else reason

    def _set_baseline(
        self,
        st: WatchedState,
        baseline: dict[ObjectRef, dict[str, str]],
        items: list[resources.ItemState],
        spec_hash: str,
    ) -> None:
        owners: dict[ObjectRef, list[int]] = defaultdict(list)
        for item in items:
            for ref in item.objects:
                owners[ref].append(item.index)
        self.status[st.spec_hash] = spec_hash
        self.status[st.hashes] = [
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

    # ---------------------------------------------------------------- Jobs

    async def _run(self, jt: JobTrigger, occurrence: Occurrence) -> bool:
        """Run an occurrence under the concurrency policy. Returns False if it must wait (``Queue``): the caller
        then keeps the occurrence unconsumed, so it runs exactly once when the active Job has finished.

        - Allow: run. Forbid: consume without running (counted, Event). Replace: delete the active Jobs, run.
        - Queue: wait while a Job is active; what arrived meanwhile coalesces into one run.
        """
        name = self._job_name(occurrence)
        active = [n for n in self.ctl.active_jobs(self.key) if n != name]
        policy = jt.spec.concurrency_policy
        if active and policy == "Forbid":
            metrics.SKIPPED.labels("forbid").inc()
            msg = f"skipped ({occurrence.reason}): Job {active[0]} is still active (concurrencyPolicy Forbid)"
            await self.ctl.events.emit(self.obj, "Normal", "RunSkipped", msg)
            self.status["lastSkipped"] = {"time": _ts(self.now), "reason": msg}
            return True
        if active and policy == "Queue":
            metrics.SKIPPED.labels("queued").inc()
            self._pending(f"queued behind active Job {active[0]} (concurrencyPolicy Queue)")
            return False
        cap = self.ctl.settings.max_active_jobs
        reserved = False
        if cap and policy != "Replace":
            if self.ctl.total_active() >= cap:
                metrics.SKIPPED.labels("cap").inc()
                self._pending(f"waiting: {cap} Jobs active controller-wide (--max-active-jobs)")
                self.ctl.capped.add(self.key)
                return False
            # reserve the slot before any await, so parallel workers cannot all pass the check
            reserved = name not in self.ctl.created_pending(self.key) and name not in self.ctl.jobs_of(self.key)
            self.ctl.note_created(self.key, name)
        done = False
        try:
            if active and policy == "Replace":
                await self._replace(active)
            await self._create_job(jt, occurrence)
            done = True
        finally:
            if reserved and not done:
                # whatever failed between the reservation and the create (a LIST for renames, a delete, the
                # create itself): no Job of that name exists because of us, so release the slot; a phantom
                # reservation would count against the cap and block Queue/Forbid until the process restarts
                self.ctl.forget_active(self.key, name)
        return True

    async def _replace(self, active: list[str]) -> None:
        for job in active:
            try:
                await self.ctl.kube.delete(f"{JOBS_PATH}/namespaces/{self.ns}/jobs/{job}")
            except ApiError as e:
                if e.status != 404:
                    raise
            metrics.JOBS_DELETED.inc()
            self.ctl.forget_active(self.key, job)
            await self.ctl.events.emit(
                self.obj, "Normal", "JobReplaced", f"Deleted active Job {job} (concurrencyPolicy Replace)"
            )

    def _job_name(self, occurrence: Occurrence) -> str:
        return job_name(self.name, self.uid, occurrence.key)

    async def _create_job(self, jt: JobTrigger, occurrence: Occurrence) -> None:
        job = build_job(
            trigger_name=self.name,
            namespace=self.ns,
            trigger_uid=self.uid,
            spec=jt.spec,
            occurrence=dataclasses.replace(occurrence, mounts=self.mounts),
            created=_ts(self.now),
            renames=await self._renames(jt) if config_references(jt.spec.job_template.spec) else None,
        )
        name = job["metadata"]["name"]
        created = True
        uid = ""
        try:
            made = await self.ctl.kube.create(f"{JOBS_PATH}/namespaces/{self.ns}/jobs", job)
            uid = str((made.get("metadata") or {}).get("uid") or "")
        except ApiError as e:
            if e.status != 409:
                metrics.JOBS_CREATED.labels(occurrence.trigger, "error").inc()
                await self.ctl.events.emit(self.obj, "Warning", "JobCreateFailed", f"Job {name}: {e.message}")
                raise
            created = False  # this occurrence already has its Job (a retry after a crash or lost status write)
        self.ctl.note_created(self.key, name, uid)
        arrival, self.arrival = self.arrival, None
        if created:
            metrics.JOBS_CREATED.labels(occurrence.trigger, "created").inc()
            if arrival is not None:
                metrics.EVENT_TO_JOB.labels(occurrence.trigger).observe(time.monotonic() - arrival)
            log.info(
                "job created",
                extra={"jobtrigger": f"{self.ns}/{self.name}", "job": name, "reason": occurrence.reason},
            )
            await self.ctl.events.emit(self.obj, "Normal", "JobCreated", f"Created Job {name}: {occurrence.reason}")
        else:
            metrics.JOBS_CREATED.labels(occurrence.trigger, "exists").inc()
        self.status["lastTriggeredTime"] = _ts(self.now)
        self.status["lastTriggerReason"] = occurrence.reason
        self.status["lastJobName"] = name
        self.status["lastJobStatus"] = "Active"

    async def _jobs(self, jt: JobTrigger) -> None:
        jobs = self.ctl.jobs_of(self.key)
        last = self.status.get("lastJobName")
        if last in jobs:
            self.status["lastJobStatus"] = jobs[last].state
        if jt.spec.output is not None:
            for name, summary in sorted(jobs.items(), key=lambda kv: (kv[1].created, kv[0])):
                if summary.state != "Active" and not summary.output:
                    await self._persist_output(jt, name, summary)
            # re-read (the output marks are in the cache now); a Job that finished while we wrote the others has
            # no mark yet and is kept out of pruning below, so even successfulJobsHistoryLimit 0 never deletes a
            # Job before its output was persisted (its watch event brings it back to the next sync)
            jobs = self.ctl.jobs_of(self.key)
        prunable = {n: s for n, s in jobs.items() if jt.spec.output is None or s.output}
        active = sorted((s.created, n, s.uid) for n, s in jobs.items() if s.state == "Active")
        # Jobs just created and not yet seen by the Job watch are active too: listing them now saves the status
        # write the watch event would otherwise cause
        active += [("~", n, u) for n, u in sorted(self.ctl.created_pending(self.key).items()) if n not in jobs]
        self.status["active"] = [{"name": n, "uid": u} for _, n, u in active] or None
        spec = jt.spec
        limits = {
            "Succeeded": spec.successful_jobs_history_limit
            if spec.successful_jobs_history_limit is not None
            else (spec.history or DEFAULT_HISTORY),
            "Failed": spec.failed_jobs_history_limit
            if spec.failed_jobs_history_limit is not None
            else (spec.history or DEFAULT_HISTORY),
        }
        for state, limit in limits.items():
            finished = sorted((s.created, n) for n, s in prunable.items() if s.state == state)
            for _, name in finished[: max(0, len(finished) - limit)]:
                try:
                    await self.ctl.kube.delete(f"{JOBS_PATH}/namespaces/{self.ns}/jobs/{name}")
                    metrics.JOBS_DELETED.inc()
                    log.info("job pruned", extra={"jobtrigger": f"{self.ns}/{self.name}", "job": name})
                except ApiError as e:
                    if e.status != 404:
                        raise

    async def _persist_output(self, jt: JobTrigger, job: str, summary: JobSummary) -> None:
        """Write a finished Job's output (termination messages, files or logs) to Secrets/ConfigMaps, then mark
        the Job (annotation ``jobtrigger.dev/output``) so it is done exactly once."""
        out = jt.spec.output
        assert out is not None
        kube = self.ctl.kube
        succeeded = summary.state == "Succeeded"
        result = "skipped"
        problems: list[str] = []
        if succeeded or out.write_on_failure:
            try:
                pods = (await kube.get(f"/api/v1/namespaces/{self.ns}/pods", labelSelector=f"job-name={job}")).get(
                    "items"
                ) or []
            except ApiError as e:
                if e.status != 403:
                    raise
                pods = []
                problems.append(f"cannot list the Job's pods: {e.message}")
            logs = {}
            for pod, container in output.log_requests(out, pods):
                try:
                    logs[(pod, container)] = await self.ctl.read_log(self.ns, pod, container, out.max_bytes + 1)
                except ApiError as e:
                    problems.append(f"logs of {pod}/{container}: {e.message}")
            collected = output.collect(out, pods, logs)
            problems += collected.errors
            resource = "secrets" if out.kind == "Secret" else "configmaps"
            base = f"/api/v1/namespaces/{self.ns}/{resource}"
            owner = {
                "apiVersion": API_VERSION,
                "kind": "JobTrigger",
                "name": self.name,
                "uid": self.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
            written = 0
            for target, data in sorted(collected.targets.items()):
                for attempt in range(VERSION_REPLANS + 1):
                    try:
                        written += await self._write_target(out, base, target, data, owner, job, succeeded, problems)
                        break
                    except ApiError as e:
                        if out.versioned and e.k8s_reason == "AlreadyExists" and attempt < VERSION_REPLANS:
                            continue  # another writer took the version we planned: list again, take the next one
                        transient = e.status in (0, 429) or e.status >= 500
                        if transient or (e.status == 409 and e.k8s_reason != "AlreadyExists"):
                            raise  # transient or an update race: retry the sync
                        # e.g. 403 (the chart's output.enabled is false) or 422: report it, do not retry forever
                        problems.append(f"{target}: {e.status} {e.message}")
            result = "failed" if problems and not written else "written" if written else "skipped"
            if problems:
                await self.ctl.events.emit(self.obj, "Warning", "OutputFailed", f"Job {job}: {'; '.join(problems)}")
                self.status["lastOutputError"] = f"Job {job}: {'; '.join(problems)}"[:1024]
            else:
                self.status["lastOutputError"] = None
                if written:
                    await self.ctl.events.emit(self.obj, "Normal", "OutputWritten", f"Job {job}: output written")
        try:
            await kube.merge_patch(
                f"{JOBS_PATH}/namespaces/{self.ns}/jobs/{job}",
                {"metadata": {"annotations": {ANNOTATION_OUTPUT: result}}},
            )
        except ApiError as e:
            if e.status != 403:
                raise
            # not allowed to mark the Job (the chart's output.enabled is false): remember it in memory only
            self.status["lastOutputError"] = f"Job {job}: cannot record the output state: {e.message}"[:1024]
        self.ctl.jobs.objects[(self.ns, job)] = dataclasses.replace(summary, output=result)

    async def _write_target(
        self,
        out: OutputSpec,
        base: str,
        target: str,
        data: dict[str, str],
        owner: JSON,
        job: str,
        succeeded: bool,
        problems: list[str],
    ) -> int:
        """Plan and apply the writes of one output target; returns how many objects were written."""
        kube = self.ctl.kube
        existing = (await kube.get(base, labelSelector=output.label_selector(target))).get("items") or []
        actions = output.plan(
            out,
            target=target,
            data=data,
            existing=existing,
            owner_ref=owner,
            job_name=job,
            trigger_name=self.name,
            succeeded=succeeded,
        )
        written = 0
        for a in actions:
            if a.verb == "create" and a.body is not None:
                await kube.create(base, a.body)
                written += 1
            elif a.verb == "replace" and a.body is not None:
                await kube.request("PUT", f"{base}/{a.name}", body=a.body)
                written += 1
            elif a.verb == "delete":
                with contextlib.suppress(ApiError):
                    await kube.delete(f"{base}/{a.name}")
            elif a.error:
                problems.append(f"{a.name}: {a.reason}")
        return written

    # ---------------------------------------------------------------- status

    def _ready_message(self, jt: JobTrigger, interests: list[list[Interest]]) -> str:
        parts = []
        if jt.spec.triggers.resources is not None:
            n = sum(len(self.ctl.resource_watches.matching(i)) for lst in interests for i in lst)
            parts.append(
                f"watching {n} object(s) for {len(interests)} resource entr{'y' if len(interests) == 1 else 'ies'}"
            )
        pt = jt.spec.triggers.pods
        if pt is not None:
            n = len(self.ctl.pod_watches.current(self.key))
            parts.append(f"watching {n} pod(s) for {', '.join(pt.when)}")
        st = jt.spec.triggers.schedule
        if st is not None:
            nxt = self.status.get("nextScheduleTime")
            parts.append(f"schedule {st.cron}" + (f", next run {nxt}" if nxt else ""))
        if jt.spec.triggers.manual is not None or not parts:
            parts.append(f"manual runs via the {ANNOTATION_RUN_REQUESTED} annotation")
        return "; ".join(parts)

    def _condition(self, status: str, reason: str, message: str) -> bool:
        """Set the Ready condition; returns True if it changed."""
        self.ctl.note_state(self.key, reason)
        conds = [dict(c) for c in self.status.get("conditions") or []]
        old = next((c for c in conds if c.get("type") == "Ready"), None)
        if old and old.get("status") == status and old.get("reason") == reason and old.get("message") == message:
            old["observedGeneration"] = self.generation
            self.status["conditions"] = conds
            return False
        new = {
            "type": "Ready",
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": old["lastTransitionTime"]
            if old and old.get("status") == status and old.get("lastTransitionTime")
            else _ts(self.now),
            "observedGeneration": self.generation,
        }
        self.status["conditions"] = [c for c in conds if c.get("type") != "Ready"] + [new]
        return True

    async def _write_status(self) -> None:
        desired = {k: v for k, v in self.status.items() if v is not None}
        if desired == {k: v for k, v in self.old_status.items() if v is not None}:
            return
        patch: JSON = {k: None for k in self.old_status if k not in desired}
        patch.update(desired)
        body = {"metadata": {"resourceVersion": self.meta.get("resourceVersion")}, "status": patch}
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}/{self.name}/status"
        try:
            written = await self.ctl.kube.merge_patch(path, body)
        except ApiError as e:
            if e.status == 404:
                return  # deleted meanwhile: the watch's DELETED ends it; retrying would fail forever
            raise
        self.ctl.remember_written(self.key, written)


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


def _mounts(jt: JobTrigger) -> tuple[Mounted, ...]:
    """Watched Secrets/ConfigMaps to mount into every Job of this JobTrigger (whatever triggered it)."""
    rt = jt.spec.triggers.resources
    return tuple(
        Mounted(w.kind, w.name or "", w.mount.volume_name, w.mount.mount_path, w.mount.read_only)
        for w in (rt.watch if rt else [])
        if w.mount is not None and w.name
    )


def _summary(jt: JobTrigger) -> str:
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


def _resource_spec_hash(jt: JobTrigger) -> str:
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


__all__ = ["API_VERSION", "Controller", "Settings"]
