"""Reliability under faults: a SIGKILLed controller process, kube-apiserver restarts, and a long soak.

**Crash stream.** N ConfigMaps, each watched by its own JobTrigger (``cooldown: 0s``), plus one pod-trigger
JobTrigger (``when: [Created]``). The driver changes the ConfigMaps — one ConfigMap again only after its previous
change has its Job, since changes to one object made while the controller is down legitimately coalesce into one
run (docs/concepts.md) — and creates pods, while the controller *process* is SIGKILLed and restarted right away at
random moments (and kube-apiserver is restarted, if asked). Kill moments are of three kinds: during start-up, at a
random moment after ``/readyz``, and right after a Job appeared (aimed at the window between the Job create and the
status write). Afterwards every change must have exactly one Job, made for exactly the state that change produced
(the state digest in the occurrence key), every pod exactly one ``Created`` Job, and one more restart must add
nothing.

**Soak.** A steady rate of changes (and pod creations) for a while; the benchmark plays the Job controller (marks
Jobs complete, so the controller prunes them) and samples the controller's RSS every ``--sample`` seconds. After
the warm-up, RSS must not grow more than ``--max-growth`` (default 20 %) over its value at the end of the warm-up,
and every change must still have exactly one Job.

    .venv/bin/python -m benchmarks.reliability --kills 10 --changes 200    # long crash stream
    .venv/bin/python -m benchmarks.reliability --soak 600                  # 10-minute soak
    .venv/bin/python -m benchmarks.reliability --quick                     # tiny versions of both (~1 min)

A local control plane (etcd + kube-apiserver, no controller manager) is started unless ``--use-kubeconfig`` is
given. Prints a markdown report; exits 1 if any check failed. The integration tests
(tests/integration/test_reliability.py) run short variants with the same machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp

from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.kube.client import ApiError, KubeClient
from jobtrigger.triggers.fields import hash_value

ROOT = Path(__file__).resolve().parent.parent
LABEL_OWNER = "jobtrigger.dev/owner"
LABEL_AFFECTED_POD = "jobtrigger.dev/affected-pod"
ANNOTATION_OCCURRENCE = "jobtrigger.dev/occurrence"
POD_LABEL = {"jobtrigger-reliability": "pod"}
POD_TRIGGER = "pods"
#: transient answers while the API server restarts or is overloaded: the driver retries these
TRANSIENT = frozenset({0, 429, 500, 502, 503, 504})

T = TypeVar("T")


def jt_path(ns: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}" + (f"/{name}" if name else "")


def jobs_path(ns: str) -> str:
    return f"/apis/batch/v1/namespaces/{ns}/jobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(xs: Sequence[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


async def retry(call: Callable[[], Awaitable[T]], what: str, timeout: float = 60.0) -> T:
    """Retry ``call`` on transient API errors (connection refused during an apiserver restart, 5xx, 429)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await call()
        except ApiError as e:
            if e.status not in TRANSIENT or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {e}") from e
            await asyncio.sleep(0.2)


# --------------------------------------------------------------------------------------------- the controller


class ControllerProcess:
    """The real ``jobtrigger controller`` as a subprocess, limited to one namespace; SIGKILL and restart."""

    def __init__(self, kubeconfig: str, namespace: str, log_path: Path, *, extra_args: Sequence[str] = ()):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.started_at = 0.0
        self.starts = 0
        self.kills = 0
        self._log: IO[bytes] | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        """Spawn the process (returns at once; see :meth:`wait_ready`)."""
        assert not self.running, "already running"
        if self._log is None:
            # closed in close(); a local file, opened once
            self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.port = free_port()
        self._log.write(f"\n===== start #{self.starts + 1} on port {self.port} =====\n".encode())
        self._log.flush()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobtrigger.cli",
            "controller",
            "--kubeconfig",
            self.kubeconfig,
            "--namespace",
            self.namespace,
            "--http-addr",
            f"127.0.0.1:{self.port}",
            "--log-format",
            "json",
            *self.extra_args,
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=ROOT,
        )
        self.started_at = time.monotonic()
        self.starts += 1

    async def _get(self, path: str) -> tuple[int, str]:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with self._http.get(f"http://127.0.0.1:{self.port}{path}") as r:
            return r.status, await r.text()

    async def ready(self) -> bool:
        try:
            status, _ = await self._get("/readyz")
        except (aiohttp.ClientError, TimeoutError):
            return False
        return status == 200

    async def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait for ``/readyz`` 200; returns the seconds since the process was started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise AssertionError(f"controller exited with {self.proc and self.proc.returncode}:\n{self.log_tail()}")
            if await self.ready():
                return time.monotonic() - self.started_at
            await asyncio.sleep(0.05)
        raise AssertionError(f"controller not ready after {timeout}s:\n{self.log_tail()}")

    async def metrics(self) -> str:
        try:
            status, text = await self._get("/metrics")
        except (aiohttp.ClientError, TimeoutError):
            return ""
        return text if status == 200 else ""

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing; whatever was in flight is cut."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
            self.kills += 1

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful), SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode

    async def close(self) -> None:
        await self.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def rss_kib(self) -> int:
        if not self.running or self.pid is None:
            return 0
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------- observing Jobs


@dataclass(frozen=True)
class SeenJob:
    uid: str
    name: str
    owner: str
    occurrence: str
    pod: str
    seen: float  # time.monotonic() when this process first saw it


class JobTracker:
    """List+watch of the namespace's jobtrigger Jobs in the benchmark process. Cumulative: remembers every Job
    (by uid) it ever saw, also after it was deleted, so a Job created twice for one occurrence counts twice."""

    def __init__(self, kube: KubeClient, namespace: str):
        self.kube = kube
        self.namespace = namespace
        self.jobs: dict[str, SeenJob] = {}
        self.by_owner: dict[str, list[SeenJob]] = {}
        self.active: dict[str, float] = {}  # name -> seen, Jobs without a finished condition (for the soak)
        self.errors = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self._synced.wait(), 60)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def count(self, owner: str) -> int:
        return len(self.by_owner.get(owner, ()))

    def total(self) -> int:
        return len(self.jobs)

    def _add(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        owner = labels.get(LABEL_OWNER)
        uid = meta.get("uid")
        if not owner or not uid:
            return
        finished = any(
            c.get("status") == "True" and c.get("type") in ("Complete", "Failed")
            for c in (obj.get("status") or {}).get("conditions") or []
        )
        if finished:
            self.active.pop(meta["name"], None)
        if uid in self.jobs:
            return
        job = SeenJob(
            uid=uid,
            name=meta["name"],
            owner=owner,
            occurrence=(meta.get("annotations") or {}).get(ANNOTATION_OCCURRENCE, ""),
            pod=labels.get(LABEL_AFFECTED_POD, ""),
            seen=time.monotonic(),
        )
        self.jobs[uid] = job
        self.by_owner.setdefault(owner, []).append(job)
        if not finished:
            self.active[job.name] = job.seen
        self._changed.set()
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        path = jobs_path(self.namespace)
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    lst = await self.kube.get(path, labelSelector=LABEL_OWNER)
                    for item in lst.get("items") or []:
                        self._add(item)
                    rv = lst["metadata"]["resourceVersion"]
                    self._synced.set()
                query = {
                    "resourceVersion": rv,
                    "labelSelector": LABEL_OWNER,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": 60,
                }
                async for ev in self.kube.watch_lines(path, query, inactivity_timeout=90):
                    if ev.get("type") == "ERROR":
                        rv = None  # 410 Gone: relist
                        break
                    obj = ev.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if ev.get("type") in ("ADDED", "MODIFIED"):
                        self._add(obj)
                    elif ev.get("type") == "DELETED":
                        self.active.pop((obj.get("metadata") or {}).get("name", ""), None)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                rv = None
                await asyncio.sleep(0.2)

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))

    async def next_job(self, timeout: float) -> SeenJob | None:
        """The next Job to appear (None after ``timeout``)."""
        before = set(self.jobs)
        with contextlib.suppress(AssertionError):
            await self.wait(lambda: len(self.jobs) > len(before), timeout, "a new Job")
            return next(j for uid, j in self.jobs.items() if uid not in before)
        return None


# --------------------------------------------------------------------------------------------- the objects


def job_template() -> dict[str, Any]:
    # parallelism 0: a controller manager (if any) creates no pods for these Jobs; they stay Active
    return {
        "spec": {
            "parallelism": 0,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                }
            },
        }
    }


def cm_trigger(ns: str, name: str, cm: str, history: int = 100000) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "triggers": {
                "resources": {
                    "cooldown": "0s",
                    "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": cm, "fields": ["data"]}],
                }
            },
            "history": history,
            "jobTemplate": job_template(),
        },
    }


def pod_trigger(ns: str, history: int = 100000) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": POD_TRIGGER, "namespace": ns},
        "spec": {
            "triggers": {"pods": {"selector": {"matchLabels": dict(POD_LABEL)}, "when": ["Created"]}},
            "history": history,
            "jobTemplate": job_template(),
        },
    }


def cm_data(value: int) -> dict[str, str]:
    return {"v": str(value)}


def expected_digest(ns: str, cm: str, value: int) -> str:
    """The digest in ``resources/<run>/<digest>`` for a ConfigMap watched with ``fields: [data]`` alone: the
    observed state's hash as jobtrigger.triggers.resources.evaluate computes it. Ties each Job to one state."""
    return hash_value([[["v1", "ConfigMap", ns, cm], [["data", hash_value(cm_data(value))]]]])


def ready_condition(jt: dict[str, Any]) -> dict[str, Any] | None:
    for c in (jt.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return dict(c)
    return None


async def wait_all_ready(kube: KubeClient, ns: str, names: Sequence[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        got = await retry(lambda: kube.get(jt_path(ns)), "list JobTriggers")
        for jt in got.get("items") or []:
            c = ready_condition(jt)
            if c and c.get("status") == "True":
                pending.discard(jt["metadata"]["name"])
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"JobTriggers not Ready after {timeout}s: {sorted(pending)}")
        await asyncio.sleep(0.1)


# --------------------------------------------------------------------------------------------- crash stream


@dataclass
class StreamConfig:
    configmaps: int = 10
    changes: int = 60
    pods: int = 20
    kills: int = 3
    apiserver_restarts: int = 0
    seed: int = 20260101
    #: pause before each change of one ConfigMap (s, uniform)
    jitter: tuple[float, float] = (0.1, 0.8)
    #: pause between two pod creations (s, uniform)
    pod_gap: tuple[float, float] = (0.2, 0.8)
    change_timeout: float = 60.0
    quiet: float = 3.0
    #: one more SIGKILL + restart after the stream: must add no Job
    final_restart: bool = True


@dataclass
class StreamResult:
    config: StreamConfig
    changes: dict[str, int] = field(default_factory=dict)  # JobTrigger -> changes of its ConfigMap
    jobs: dict[str, int] = field(default_factory=dict)  # JobTrigger -> Jobs
    pods_created: int = 0
    pod_jobs: int = 0
    kills: list[str] = field(default_factory=list)  # kill modes, in order
    in_window: int = 0  # kills that left a created Job without its status write
    apiserver_restarts: int = 0
    latencies: list[float] = field(default_factory=list)  # change PATCH returned -> its Job seen (s)
    ready_after_start: list[float] = field(default_factory=list)
    #: jobs_created_total{result="exists"} per trigger, summed over the processes scraped before their kill (a lower
    #: bound). For pods most are the deliberate overlap after a restart (transitions since the watermark - 30 s).
    exists: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stream_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add_exists(self, metrics_text: str) -> None:
        for trigger, n in _exists_by_trigger(metrics_text).items():
            self.exists[trigger] = self.exists.get(trigger, 0) + n

    def summary(self) -> str:
        c = self.config
        return (
            f"{sum(self.changes.values())} changes over {c.configmaps} ConfigMaps -> {sum(self.jobs.values())} Jobs; "
            f"{self.pods_created} pods -> {self.pod_jobs} Created Jobs; {len(self.kills)} SIGKILLs "
            f"({', '.join(self.kills) or '-'}), {self.in_window} between a Job create and its status write; "
            f"{self.apiserver_restarts} apiserver restart(s); AlreadyExists (scraped) {self.exists or '-'}; "
            f"change->Job p50 {pct(self.latencies, 50) * 1000:.0f} ms, max {max(self.latencies or [0]):.2f} s; "
            f"stream {self.stream_seconds:.1f} s, total {self.seconds:.1f} s; problems: {len(self.problems)}"
        )


async def setup_stream(kube: KubeClient, ns: str, configmaps: int, history: int = 100000) -> list[str]:
    """Create the ConfigMaps and their JobTriggers plus the pod trigger; returns the JobTrigger names."""
    names = []
    for i in range(configmaps):
        await kube.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": f"cm-{i}"}, "data": cm_data(0)})
        await kube.create(jt_path(ns), cm_trigger(ns, f"t-{i}", f"cm-{i}", history))
        names.append(f"t-{i}")
    await kube.create(jt_path(ns), pod_trigger(ns, history))
    return [*names, POD_TRIGGER]


def _exists_by_trigger(metrics_text: str) -> dict[str, int]:
    """``jobtrigger_jobs_created_total{result="exists"}`` per trigger: occurrences whose Job was already there."""
    out: dict[str, int] = {}
    for line in metrics_text.splitlines():
        if line.startswith("jobtrigger_jobs_created_total{") and 'result="exists"' in line:
            trigger = line.split('trigger="', 1)[1].split('"', 1)[0]
            out[trigger] = out.get(trigger, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


async def _in_window(kube: KubeClient, ns: str) -> set[tuple[str, int]]:
    """(JobTrigger, run) for each JobTrigger whose newest Job has a run number above status.resourceRuns: a sync
    was cut between creating the Job and writing the status (the case the deterministic Job names exist for)."""
    jobs = await retry(lambda: kube.get(jobs_path(ns), labelSelector=LABEL_OWNER), "list Jobs")
    top: dict[str, int] = {}
    for j in jobs.get("items") or []:
        occ = (j["metadata"].get("annotations") or {}).get(ANNOTATION_OCCURRENCE, "")
        parts = occ.split("/")
        if len(parts) == 3 and parts[0] == "resources":
            owner = j["metadata"]["labels"][LABEL_OWNER]
            top[owner] = max(top.get(owner, 0), int(parts[1]))
    jts = await retry(lambda: kube.get(jt_path(ns)), "list JobTriggers")
    out = set()
    for jt in jts.get("items") or []:
        name = jt["metadata"]["name"]
        runs = int((jt.get("status") or {}).get("resourceRuns") or 0)
        if top.get(name, 0) > runs:
            out.add((name, top[name]))
    return out


async def run_stream(
    kube: KubeClient,
    ns: str,
    proc: ControllerProcess,
    cfg: StreamConfig,
    *,
    restart_apiserver: Callable[[], Awaitable[None]] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> StreamResult:
    """Set up, drive the stream with faults, wait until quiet, verify. ``proc`` must not be started yet."""
    t_begin = time.monotonic()
    rng = random.Random(cfg.seed)
    res = StreamResult(cfg)
    names = await setup_stream(kube, ns, cfg.configmaps)
    tracker = JobTracker(kube, ns)
    await tracker.start()
    await proc.start()
    res.ready_after_start.append(await proc.wait_ready())
    await wait_all_ready(kube, ns, names)

    # the plan, drawn up front so that the schedule does not depend on task interleaving
    per_cm = [0] * cfg.configmaps
    for _ in range(cfg.changes):
        per_cm[rng.randrange(cfg.configmaps)] += 1
    jitters = [[rng.uniform(*cfg.jitter) for _ in range(n)] for n in per_cm]
    pod_gaps = [rng.uniform(*cfg.pod_gap) for _ in range(cfg.pods)]
    modes = ["after-job", "random", "startup"]
    rng.shuffle(modes)
    kill_plan = [(modes[i % 3], rng.uniform(0.3, 2.0)) for i in range(cfg.kills)]
    for i in range(cfg.configmaps):
        res.changes[f"t-{i}"] = per_cm[i]

    done = 0
    window_seen: set[tuple[str, int]] = set()
    stream_over = asyncio.Event()
    progress = asyncio.Event()
    total = max(1, cfg.changes)

    async def until_progress(fraction: float) -> bool:
        while done < fraction * total:
            if stream_over.is_set():
                return False
            ev = progress
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ev.wait(), 1.0)
        return True

    async def change_driver(i: int) -> None:
        nonlocal done, progress
        cm, owner = f"cm-{i}", f"t-{i}"
        for k in range(1, per_cm[i] + 1):
            await asyncio.sleep(jitters[i][k - 1])
            path = f"/api/v1/namespaces/{ns}/configmaps/{cm}"
            await retry(lambda: kube.merge_patch(path, {"data": cm_data(k)}), f"patch {cm}")  # noqa: B023
            t0 = time.monotonic()
            await tracker.wait(lambda: tracker.count(owner) >= k, cfg.change_timeout, f"Job #{k} of {owner}")  # noqa: B023
            res.latencies.append(time.monotonic() - t0)
            done += 1
            progress.set()
            progress = asyncio.Event()

    async def pod_driver() -> None:
        for n in range(cfg.pods):
            await asyncio.sleep(pod_gaps[n])
            body = {
                "metadata": {"name": f"p-{n}", "labels": dict(POD_LABEL)},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            }

            async def create(body: dict[str, Any] = body) -> None:
                try:
                    await kube.create(f"/api/v1/namespaces/{ns}/pods", body)
                except ApiError as e:
                    if e.status != 409:  # a retried create that had gone through
                        raise

            await retry(create, f"create pod p-{n}")
            res.pods_created += 1

    async def killer() -> None:
        for i, (mode, delay) in enumerate(kill_plan):
            if not await until_progress((i + 1) / (len(kill_plan) + 1)):
                return
            if mode == "startup":
                # a moment after the last start, maybe before the initial lists completed
                await asyncio.sleep(max(0.0, proc.started_at + delay - time.monotonic()))
            else:
                await proc.wait_ready()
                if mode == "after-job":
                    await tracker.next_job(timeout=10)
                else:
                    await asyncio.sleep(delay)
            if mode == "random":
                res.add_exists(await proc.metrics())
            await proc.kill()
            await proc.start()  # right away; measure while the new process is still importing
            res.kills.append(mode)
            cut = await _in_window(kube, ns)
            hit = bool(cut - window_seen)  # not left over from an earlier kill or a failed status write
            window_seen.update(cut)
            res.in_window += 1 if hit else 0
            log(f"SIGKILL #{i + 1} ({mode}){', in the create->status window' if hit else ''}")

    async def apiserver_restarter() -> None:
        if restart_apiserver is None:
            return
        for j in range(cfg.apiserver_restarts):
            if not await until_progress((j + 0.6) / (cfg.apiserver_restarts + 0.5)):
                return
            t0 = time.monotonic()
            await restart_apiserver()
            res.apiserver_restarts += 1
            log(f"kube-apiserver restarted in {time.monotonic() - t0:.1f}s")

    t_stream = time.monotonic()
    background = [
        asyncio.create_task(killer(), name="killer"),
        asyncio.create_task(apiserver_restarter(), name="apiserver restarter"),
    ]
    try:
        await asyncio.gather(*(change_driver(i) for i in range(cfg.configmaps)), pod_driver())
        await tracker.wait(lambda: tracker.count(POD_TRIGGER) >= cfg.pods, cfg.change_timeout, f"{cfg.pods} pod Jobs")
        res.stream_seconds = time.monotonic() - t_stream
        stream_over.set()
        await asyncio.gather(*background)
    finally:
        stream_over.set()
        for t in background:
            t.cancel()
        await asyncio.gather(*background, return_exceptions=True)

    # quiet, then one more crash: a restart must neither lose nor repeat anything
    await proc.wait_ready()
    await asyncio.sleep(cfg.quiet)
    before = tracker.total()
    if cfg.final_restart:
        res.add_exists(await proc.metrics())
        await proc.kill()
        await proc.start()
        res.ready_after_start.append(await proc.wait_ready())
        await asyncio.sleep(cfg.quiet)
        if tracker.total() != before:
            res.problems.append(f"the final restart created {tracker.total() - before} Job(s)")
    res.add_exists(await proc.metrics())
    # statuses and conditions are written in the background: a problem counts only if it is still there after
    # 15 s (an extra or a duplicate Job never goes away, so this hides no double run)
    settle = time.monotonic() + 15
    while (problems := await verify_stream(kube, ns, tracker, res)) and time.monotonic() < settle:
        await asyncio.sleep(1.0)
    res.problems += problems
    await tracker.stop()
    res.seconds = time.monotonic() - t_begin
    return res


async def verify_stream(kube: KubeClient, ns: str, tracker: JobTracker, res: StreamResult) -> list[str]:
    problems: list[str] = []
    listed = await retry(lambda: kube.get(jobs_path(ns), labelSelector=LABEL_OWNER), "list Jobs")
    items = listed.get("items") or []
    uids = {j["metadata"]["uid"] for j in items}
    gone = [j.name for j in tracker.jobs.values() if j.uid not in uids]
    if gone:
        problems.append(f"Jobs seen but no longer listed (deleted?): {gone[:5]}")
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for j in items:
        by_owner.setdefault(j["metadata"]["labels"][LABEL_OWNER], []).append(j)

    for i in range(res.config.configmaps):
        owner, cm = f"t-{i}", f"cm-{i}"
        jobs = by_owner.get(owner, [])
        res.jobs[owner] = len(jobs)
        n = res.changes[owner]
        occ = [(j["metadata"].get("annotations") or {}).get(ANNOTATION_OCCURRENCE, "") for j in jobs]
        if len(jobs) != n:
            problems.append(f"{owner}: {len(jobs)} Jobs for {n} changes of {cm} ({sorted(occ)})")
        if len(set(occ)) != len(occ):
            problems.append(f"{owner}: duplicate occurrences {sorted(occ)}")
        digests = sorted(o.rsplit("/", 1)[-1] for o in occ)
        expected = sorted(expected_digest(ns, cm, k) for k in range(1, n + 1))
        if digests != expected:
            problems.append(f"{owner}: Jobs are not one per state 1..{n} of {cm}: {sorted(occ)}")
        jt = await retry(lambda: kube.get(jt_path(ns, owner)), f"get {owner}")  # noqa: B023
        status = jt.get("status") or {}
        hashes = [f["hash"] for rh in status.get("resourceHashes") or [] for f in rh.get("fields") or []]
        if hashes != [hash_value(cm_data(n))]:
            problems.append(f"{owner}: status baseline {hashes} is not the final state of {cm}")
        c = ready_condition(jt)
        if not c or c.get("status") != "True":
            problems.append(f"{owner}: Ready condition {c}")
        if status.get("pending"):
            problems.append(f"{owner}: still pending: {status['pending']}")

    pod_jobs = by_owner.get(POD_TRIGGER, [])
    res.pod_jobs = len(pod_jobs)
    pods = await retry(
        lambda: kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector="jobtrigger-reliability=pod"), "list pods"
    )
    want = {p["metadata"]["uid"]: p["metadata"]["name"] for p in pods.get("items") or []}
    occ = [(j["metadata"].get("annotations") or {}).get(ANNOTATION_OCCURRENCE, "") for j in pod_jobs]
    if sorted(occ) != sorted(f"pods/{uid}/Created" for uid in want):
        missing = sorted(want[u] for u in want if f"pods/{u}/Created" not in occ)
        problems.append(
            f"{POD_TRIGGER}: {len(pod_jobs)} Jobs for {len(want)} pods; missing {missing}, "
            f"duplicates {len(occ) - len(set(occ))}"
        )
    affected = sorted(j["metadata"]["labels"].get(LABEL_AFFECTED_POD, "") for j in pod_jobs)
    if affected != sorted(want.values()):
        problems.append(f"{POD_TRIGGER}: affected-pod labels {affected} != pods {sorted(want.values())}")
    return problems


# --------------------------------------------------------------------------------------------- soak


@dataclass
class SoakResult:
    seconds: float
    rate: float
    warmup: float
    max_growth: float
    changes: int = 0
    skipped_ticks: int = 0  # ticks whose ConfigMap still waited for the Job of its previous change
    jobs: int = 0
    pods: int = 0
    pod_jobs: int = 0
    completed: int = 0  # Jobs the benchmark marked complete (the controller prunes them)
    jobs_left: int = 0  # Jobs still there at the end (history 3 per JobTrigger)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (s since start, RSS KiB)
    baseline_kib: int = 0
    peak_kib: int = 0
    slope_kib_per_min: float = 0.0
    enforce: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float:
        return (self.peak_kib - self.baseline_kib) / self.baseline_kib if self.baseline_kib else float("nan")


def _slope(points: Sequence[tuple[float, int]]) -> float:
    if len(points) < 2:
        return 0.0
    xs = [p[0] for p in points]
    ys = [float(p[1]) for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den * 60 if den else 0.0


async def run_soak(
    kube: KubeClient,
    ns: str,
    proc: ControllerProcess,
    *,
    seconds: float,
    rate: float = 2.0,
    configmaps: int = 20,
    pod_every: float = 5.0,
    sample_every: float = 10.0,
    warmup: float | None = None,
    max_growth: float = 0.20,
    enforce: bool = True,
    log: Callable[[str], None] = lambda _msg: None,
) -> SoakResult:
    """A steady rate of changes for ``seconds``; RSS sampled every ``sample_every`` s (``proc`` not started)."""
    warm = warmup if warmup is not None else max(60.0, 0.2 * seconds)
    res = SoakResult(seconds, rate, warm, max_growth, enforce=enforce)
    history = 3
    names = [f"t-{i}" for i in range(configmaps)]
    for i in range(configmaps):
        await kube.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": f"cm-{i}"}, "data": cm_data(0)})
        await kube.create(jt_path(ns), cm_trigger(ns, f"t-{i}", f"cm-{i}", history))
    await kube.create(jt_path(ns), pod_trigger(ns, history))
    tracker = JobTracker(kube, ns)
    await tracker.start()
    await proc.start()
    await proc.wait_ready()
    await wait_all_ready(kube, ns, [*names, POD_TRIGGER])

    sent = [0] * configmaps
    pods_alive: list[tuple[float, str]] = []
    t0 = time.monotonic()
    next_change = next_pod = next_sample = t0
    turn = 0
    while (now := time.monotonic()) < t0 + seconds:
        if not proc.running:
            res.problems.append(f"controller exited ({proc.proc and proc.proc.returncode}):\n{proc.log_tail()}")
            break
        if now >= next_sample:
            res.samples.append((now - t0, proc.rss_kib()))
            log(f"t={now - t0:5.0f}s RSS {res.samples[-1][1] / 1024:.1f} MiB, {tracker.total()} Jobs seen")
            next_sample += sample_every
        if now >= next_change:
            next_change += 1.0 / rate
            for _ in range(configmaps):  # the next ConfigMap whose previous change has its Job
                i = turn % configmaps
                turn += 1
                if tracker.count(f"t-{i}") >= sent[i]:
                    sent[i] += 1
                    await kube.merge_patch(f"/api/v1/namespaces/{ns}/configmaps/cm-{i}", {"data": cm_data(sent[i])})
                    res.changes += 1
                    break
            else:
                res.skipped_ticks += 1
        if now >= next_pod:
            next_pod += pod_every
            name = f"p-{res.pods}"
            body = {
                "metadata": {"name": name, "labels": dict(POD_LABEL)},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            }
            await kube.create(f"/api/v1/namespaces/{ns}/pods", body)
            pods_alive.append((now, name))
            res.pods += 1
            while pods_alive and now - pods_alive[0][0] > 30:  # keep the pod count bounded
                _, old = pods_alive.pop(0)
                with contextlib.suppress(ApiError):
                    await kube.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{old}", query={"gracePeriodSeconds": 0})
        # play the Job controller: finish Jobs a second after they appeared, so the controller prunes them
        for job, seen in list(tracker.active.items()):
            if now - seen > 1.0:
                tracker.active.pop(job, None)
                if await finish_job(kube, ns, job):
                    res.completed += 1
        await asyncio.sleep(max(0.0, min(next_change, next_pod, next_sample) - time.monotonic()))

    # every change and pod must still have exactly one Job
    owners = [*names, POD_TRIGGER]
    want = {f"t-{i}": sent[i] for i in range(configmaps)} | {POD_TRIGGER: res.pods}
    try:
        await tracker.wait(lambda: all(tracker.count(o) >= want[o] for o in owners), 60, "the last Jobs")
    except AssertionError as e:
        res.problems.append(str(e))
    await asyncio.sleep(2.0)
    for o in owners:
        if tracker.count(o) != want[o]:
            res.problems.append(f"{o}: {tracker.count(o)} Jobs for {want[o]} changes/pods")
    left = await kube.get(jobs_path(ns), labelSelector=LABEL_OWNER)
    res.jobs_left = len(left.get("items") or [])
    bound = (configmaps + 1) * (history + 2)
    if res.jobs_left > bound:
        res.problems.append(f"{res.jobs_left} Jobs left, more than history {history} per JobTrigger allows (~{bound})")
    res.jobs = sum(tracker.count(f"t-{i}") for i in range(configmaps))
    res.pod_jobs = tracker.count(POD_TRIGGER)
    await tracker.stop()

    after = [(t, kib) for t, kib in res.samples if t >= warm and kib > 0]
    if after:
        res.baseline_kib = after[0][1]
        res.peak_kib = max(kib for _, kib in after)
        res.slope_kib_per_min = _slope(after)
        if enforce and res.growth > max_growth:
            res.problems.append(
                f"RSS grew {res.growth:.0%} after the warm-up ({res.baseline_kib} -> {res.peak_kib} KiB), "
                f"bound {max_growth:.0%}"
            )
    elif enforce:
        res.problems.append("no RSS samples after the warm-up")
    return res


async def finish_job(kube: KubeClient, ns: str, job: str) -> bool:
    """Mark a pod-less Job succeeded, as the Job controller would. Kubernetes 1.31+ validates Job status: `Complete`
    needs `SuccessCriteriaMet` before it and a `startTime` (kept as the Job controller set it, or set once here).
    Returns False if the Job is gone (pruned meanwhile); any other refusal is an error, not ignored."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = f"{jobs_path(ns)}/{job}"
    try:
        current = await kube.get(path)
    except ApiError as e:
        if e.status == 404:
            return False
        raise
    cond = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now}
    status = {
        "startTime": (current.get("status") or {}).get("startTime") or now,
        "completionTime": now,
        "succeeded": 1,
        "conditions": [{"type": "SuccessCriteriaMet", **cond}, {"type": "Complete", **cond}],
    }
    try:
        await kube.merge_patch(f"{path}/status", {"status": status})
    except ApiError as e:
        if e.status == 404:
            return False
        raise
    return True


# --------------------------------------------------------------------------------------------- report / CLI


def stream_markdown(res: StreamResult) -> str:
    c = res.config
    lat = res.latencies
    rows = [
        ("ConfigMaps / JobTriggers", f"{c.configmaps}"),
        ("ConfigMap changes", f"{sum(res.changes.values())}"),
        ("Jobs for them", f"{sum(res.jobs.values())}"),
        ("pods created / Created Jobs", f"{res.pods_created} / {res.pod_jobs}"),
        (
            "SIGKILLs (mode)",
            f"{len(res.kills)} ({', '.join(res.kills) or '-'})" + (" + 1 final" if c.final_restart else ""),
        ),
        ("kills between a Job create and its status write", f"{res.in_window}"),
        (
            "AlreadyExists on create (scraped, lower bound)",
            ", ".join(f"{k} {v}" for k, v in sorted(res.exists.items())) or "0",
        ),
        ("kube-apiserver restarts", f"{res.apiserver_restarts}"),
        (
            "change -> Job p50 / p90 / max",
            f"{pct(lat, 50) * 1000:.0f} ms / {pct(lat, 90) * 1000:.0f} ms / {max(lat or [0]):.2f} s",
        ),
        ("controller start -> /readyz (median)", f"{statistics.median(res.ready_after_start or [0]):.2f} s"),
        ("stream / total duration", f"{res.stream_seconds:.1f} s / {res.seconds:.1f} s"),
        ("missing or duplicate Jobs", "none" if res.ok else f"**{len(res.problems)} problem(s)**"),
    ]
    out = ["### Crash stream", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    out += [f"- {p}" for p in res.problems]
    return "\n".join(out)


def soak_markdown(res: SoakResult) -> str:
    rows = [
        ("duration / change rate", f"{res.seconds:.0f} s / {res.rate:g} per s"),
        ("changes / their Jobs", f"{res.changes} / {res.jobs}"),
        ("ticks skipped (previous Job not seen yet)", f"{res.skipped_ticks}"),
        ("pods / Created Jobs", f"{res.pods} / {res.pod_jobs}"),
        ("Jobs completed by the benchmark / left after pruning", f"{res.completed} / {res.jobs_left}"),
        ("RSS at end of warm-up", f"{res.baseline_kib / 1024:.1f} MiB (warm-up {res.warmup:.0f} s)"),
        ("RSS peak after warm-up", f"{res.peak_kib / 1024:.1f} MiB"),
        (
            "growth after warm-up (bound)",
            f"{res.growth:+.1%} ({res.max_growth:.0%}{'' if res.enforce else ', not enforced in --quick'})",
        ),
        ("RSS trend after warm-up", f"{res.slope_kib_per_min:+.0f} KiB/min"),
    ]
    out = ["### Soak", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    out.append("RSS samples (s: MiB): " + ", ".join(f"{t:.0f}: {kib / 1024:.1f}" for t, kib in res.samples))
    out += [f"- {p}" for p in res.problems]
    return "\n".join(out)


async def _namespace(kube: KubeClient, prefix: str) -> str:
    ns = f"{prefix}-{secrets.token_hex(3)}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    return ns


async def main_async(args: argparse.Namespace) -> int:
    from jobtrigger.demo import install_crd
    from jobtrigger.envtest import ControlPlane

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    cp: ControlPlane | None = None
    kubeconfig = os.environ.get("KUBECONFIG") if args.use_kubeconfig else None
    if kubeconfig is None:
        cp = ControlPlane(with_controller_manager=False)  # Jobs need not run; the benchmark finishes them
        await cp.astart()
        kubeconfig = str(cp.kubeconfig_path)
    kube = await KubeClient.from_config(kubeconfig)
    report = ["## Reliability", ""]
    ok = True
    try:
        await install_crd(kube)
        logs = Path(args.log_dir)
        log(f"controller logs in {logs}/jobtrigger-reliability-*.log")
        if args.kills or args.changes:
            ns = await _namespace(kube, "rel-stream")
            proc = ControllerProcess(kubeconfig, ns, logs / "jobtrigger-reliability-stream.log")
            cfg = StreamConfig(
                configmaps=args.configmaps,
                changes=args.changes,
                pods=args.pods,
                kills=args.kills,
                apiserver_restarts=args.apiserver_restarts if cp is not None else 0,
                seed=args.seed,
            )
            log(f"crash stream: {cfg}")
            try:
                res = await run_stream(
                    kube, ns, proc, cfg, restart_apiserver=cp.arestart_apiserver if cp else None, log=log
                )
            finally:
                await proc.close()
            log(res.summary())
            report += [stream_markdown(res), ""]
            ok = ok and res.ok
        if args.soak:
            ns = await _namespace(kube, "rel-soak")
            proc = ControllerProcess(
                kubeconfig, ns, logs / "jobtrigger-reliability-soak.log", extra_args=["--log-level", "warning"]
            )
            log(f"soak: {args.soak:.0f}s at {args.rate:g} changes/s")
            try:
                soak = await run_soak(
                    kube,
                    ns,
                    proc,
                    seconds=args.soak,
                    rate=args.rate,
                    sample_every=args.sample,
                    warmup=args.warmup,
                    max_growth=args.max_growth,
                    enforce=not args.quick,
                    log=log,
                )
            finally:
                await proc.close()
            report += [soak_markdown(soak), ""]
            ok = ok and not soak.problems
        report.append(
            f"Environment: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
            f"kube-apiserver {cp.version if cp else 'existing cluster'}, seed {args.seed}."
        )
    finally:
        await kube.close()
        if cp is not None:
            await cp.astop()
    print("\n".join(report))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs of the controller during the stream")
    p.add_argument("--changes", type=int, default=200, help="ConfigMap changes in the stream (0: no stream)")
    p.add_argument("--configmaps", type=int, default=20)
    p.add_argument("--pods", type=int, default=50, help="pods created during the stream")
    p.add_argument("--apiserver-restarts", type=int, default=2, help="kube-apiserver restarts during the stream")
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument("--soak", type=float, default=0, help="soak for this many seconds (e.g. 600)")
    p.add_argument("--rate", type=float, default=2.0, help="soak: ConfigMap changes per second")
    p.add_argument("--sample", type=float, default=10.0, help="soak: seconds between RSS samples")
    p.add_argument("--warmup", type=float, default=None, help="soak: warm-up seconds (default max(60, 20%%))")
    p.add_argument("--max-growth", type=float, default=0.20, help="soak: allowed RSS growth after the warm-up")
    p.add_argument("--quick", action="store_true", help="tiny stream + 30 s soak (growth reported, not enforced)")
    p.add_argument("--use-kubeconfig", action="store_true", help="use $KUBECONFIG instead of a local control plane")
    p.add_argument("--log-dir", default=tempfile.gettempdir(), help="where the controller logs go")
    args = p.parse_args(argv)
    if args.quick:
        args.kills, args.changes, args.configmaps, args.pods, args.apiserver_restarts = 2, 16, 4, 5, 1
        args.soak, args.sample, args.warmup, args.rate = 30.0, 3.0, 10.0, 2.0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
