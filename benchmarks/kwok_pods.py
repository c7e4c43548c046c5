"""End to end with a node's pod lifecycle: N pods made Ready by KWOK, one Job per pod, Jobs run and pruned.

Only KWOK makes this possible on one machine: kube-scheduler places N pods on the fake KWOK node, KWOK reports them
Running and Ready as a kubelet would, a JobTrigger with a pod trigger (``when: [Ready]``) selecting them creates one
Job per pod transition, the real Job controller (kube-controller-manager) creates each Job's pod, KWOK runs it to
``Succeeded``, the Job controller marks the Job ``Complete``, and the controller prunes it by
``successfulJobsHistoryLimit`` (its pod goes with it, through the garbage collector).

Measured (all in the benchmark process unless said otherwise):

- **latency**: the benchmark's own pod watch sees the pod Ready (the first event with ``Ready=True``) → its Job
  watch sees the Job ADDED (the Job carries ``jobtrigger.dev/affected-pod=<pod>``). The Ready condition's
  ``lastTransitionTime`` has 1 s resolution, so it is not used for the latency; both ends are observed by this
  process with ``perf_counter``. p50 / p95 / p99 / max.
- **Jobs/s**: Jobs created ÷ (first pod Ready seen → last Job seen), and the best 10 s window.
- **exactly once**: every Ready transition gets exactly one Job. A transition is (pod, Ready ``lastTransitionTime``),
  which the Job carries in its ``jobtrigger.dev/occurrence`` annotation; normally N, but under load KWOK sometimes
  applies its pod-ready stage to a pod twice, and the pod is then Ready again with a new ``lastTransitionTime``
  (no not-ready in between): a new transition, reported apart. Missing / duplicate per transition, and the
  controller's ``jobtrigger_jobs_created_total{trigger="pods",result="created"}`` grew by exactly the transitions.
- **run and prune**: every Job reached ``Complete`` (seen on the Job watch), at most the history limit of Jobs is
  left at the end, and the controller's ``jobtrigger_jobs_deleted_total`` and the Job pods left.

Pods are created at a fixed offered rate (``--rate`` pods/s, open loop, ``--concurrency`` requests in flight) so the
latency is the controller's reaction and not a queue built by a burst; the controller runs as a separate process
(``jobtrigger controller``), as in production and in ``benchmarks.latency``.

The control plane is ``jobtrigger.envtest``'s (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK)
for ``$JOBTRIGGER_K8S_VERSION`` (1.37.2 by default, 1.20.2 the floor), with one change made here: kube-controller-
manager and kube-scheduler get ``--kube-api-qps=5000 --kube-api-burst=10000`` (what ``kwokctl
--disable-qps-limits`` passes), because their default client limits (20 and 50 requests/s) would make the Job
controller, not jobtrigger, the bottleneck for 10,000 Jobs. ``--default-qps`` keeps the envtest defaults.

    .venv/bin/python -m benchmarks.kwok_pods              # 10,000 pods at 20/s; writes docs/benchmarks.md
    .venv/bin/python -m benchmarks.kwok_pods --quick      # 300 pods: checks it runs (< 60 s); writes nothing
    JOBTRIGGER_K8S_VERSION=1.20.2 .venv/bin/python -m benchmarks.kwok_pods --no-write   # the floor, print only
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import controller_argv, free_port, write_section
from benchmarks.latency import metric, scrape_controller
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import KWOK_NODE, KWOK_TOLERATION, ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient

ROOT = Path(__file__).resolve().parent.parent
NS = "kwok-bench"
JT = "on-ready"
LABEL = ("kwok-bench", "pod")
AFFECTED = "jobtrigger.dev/affected-pod"
HEADING = "End to end on KWOK: pods Ready → one Job each → run → pruned"
NAN = float("nan")
UNLIMITED_QPS = ["--kube-api-qps=5000", "--kube-api-burst=10000"]  # kwokctl --disable-qps-limits


class KwokControlPlane(ControlPlane):
    """The envtest control plane with the client rate limits of kube-controller-manager and kube-scheduler lifted
    (``kwokctl --disable-qps-limits``); everything else as in ``jobtrigger.envtest``."""

    def _kcm_cmd(self, kcm: Path) -> list[str]:
        return [*super()._kcm_cmd(kcm), *UNLIMITED_QPS]

    def _scheduler_cmd(self, scheduler: Path) -> list[str]:
        return [*super()._scheduler_cmd(scheduler), *UNLIMITED_QPS]


# ------------------------------------------------------------------------------------------------ observation


@dataclass
class Seen:
    """What the benchmark's own watches saw (times are perf_counter)."""

    created: dict[str, float] = field(default_factory=dict)  # pod -> its POST sent
    ready: dict[str, float] = field(default_factory=dict)  # pod -> first event with Ready=True
    jobs: dict[str, list[str]] = field(default_factory=dict)  # pod -> Job names (ADDED)
    job_added: dict[str, float] = field(default_factory=dict)  # Job -> ADDED seen
    job_pod: dict[str, str] = field(default_factory=dict)  # Job -> pod
    job_complete: dict[str, float] = field(default_factory=dict)  # Job -> Complete=True seen
    job_failed: set[str] = field(default_factory=set)
    job_deleted: dict[str, float] = field(default_factory=dict)  # Job -> DELETED seen
    job_occurrence: dict[str, str] = field(default_factory=dict)  # Job -> jobtrigger.dev/occurrence
    ready_times: dict[str, list[str]] = field(default_factory=dict)  # pod -> distinct Ready lastTransitionTimes
    not_ready: dict[str, int] = field(default_factory=dict)  # pod -> Ready True -> not True seen
    watch_restarts: int = 0


def _ready_time(pod: dict[str, Any]) -> str | None:
    """lastTransitionTime of a Ready=True condition, else None."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return str(c.get("lastTransitionTime"))
    return None


def _cond(obj: dict[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or []
    )


async def _watch(kube: KubeClient, path: str, selector: str, on: Any, seen: Seen, started: asyncio.Event) -> None:
    """List, then watch from the list's resourceVersion; reconnect (relist after 410) until cancelled."""
    rv = ""
    while True:
        if not rv:
            lst = await kube.get(path, labelSelector=selector)
            now = time.perf_counter()
            for item in lst.get("items") or []:
                on("ADDED", item, now)
            rv = lst["metadata"]["resourceVersion"]
            started.set()
        try:
            query = {"resourceVersion": rv, "labelSelector": selector, "allowWatchBookmarks": "true"}
            async for ev in kube.watch_lines(path, query, inactivity_timeout=600):
                t = time.perf_counter()
                obj = ev.get("object") or {}
                if ev.get("type") == "ERROR":
                    rv = "" if obj.get("code") == 410 else rv
                    break
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if ev["type"] != "BOOKMARK":
                    on(ev["type"], obj, t)
        except ApiError as e:
            if e.status == 410:
                rv = ""
            await asyncio.sleep(0.2)
        seen.watch_restarts += 1


def pod_handler(seen: Seen) -> Any:
    def on(kind: str, pod: dict[str, Any], t: float) -> None:
        name = pod["metadata"]["name"]
        if kind == "DELETED":
            return
        ltt = _ready_time(pod)
        if ltt is None:
            if name in seen.ready:
                seen.not_ready[name] = seen.not_ready.get(name, 0) + 1
            return
        seen.ready.setdefault(name, t)
        times = seen.ready_times.setdefault(name, [])
        if ltt not in times:
            times.append(ltt)

    return on


def job_handler(seen: Seen) -> Any:
    def on(kind: str, job: dict[str, Any], t: float) -> None:
        meta = job["metadata"]
        name = meta["name"]
        if name not in seen.job_added:
            seen.job_added[name] = t
            pod = (meta.get("labels") or {}).get(AFFECTED, "?")
            seen.job_pod[name] = pod
            seen.job_occurrence[name] = (meta.get("annotations") or {}).get("jobtrigger.dev/occurrence", "?")
            seen.jobs.setdefault(pod, []).append(name)
        if kind == "DELETED":
            seen.job_deleted.setdefault(name, t)
        elif name not in seen.job_complete and _cond(job, "Complete"):
            seen.job_complete[name] = t
        elif _cond(job, "Failed"):
            seen.job_failed.add(name)

    return on


# ------------------------------------------------------------------------------------------------ objects


def jt_body(history: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": JT, "namespace": NS},
        "spec": {
            "triggers": {"pods": {"selector": {"matchLabels": {LABEL[0]: LABEL[1]}}, "when": ["Ready"]}},
            "concurrencyPolicy": "Allow",
            "successfulJobsHistoryLimit": history,
            "failedJobsHistoryLimit": history,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "tolerations": [dict(KWOK_TOLERATION)],
                            "containers": [{"name": "c", "image": "busybox:1.36", "command": ["true"]}],
                        }
                    },
                }
            },
        },
    }


def pod_body(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p{i:05d}", "labels": {LABEL[0]: LABEL[1]}},
        "spec": {
            "tolerations": [dict(KWOK_TOLERATION)],
            "nodeSelector": {"kubernetes.io/hostname": KWOK_NODE},
            "containers": [{"name": "c", "image": "busybox:1.36"}],
        },
    }


# ------------------------------------------------------------------------------------------------ run


@dataclass
class Result:
    n: int
    rate: float
    history: int
    version: str = "?"
    latencies_ms: list[float] = field(default_factory=list)
    create_s: float = NAN  # first POST → last POST returned
    ready_s: float = NAN  # first POST → last pod seen Ready
    jobs_s: float = NAN  # first Ready seen → last Job seen
    jobs_per_s: float = NAN
    best_window_jobs_per_s: float = NAN
    all_complete_s: float = NAN  # first POST → last Job seen Complete
    settled_s: float = NAN  # first POST → at most `history` Jobs left, none active
    missing: int = 0
    duplicates: int = 0
    metric_created: float = NAN
    metric_deleted: float = NAN
    metric_errors: float = NAN
    completed: int = 0
    failed: int = 0
    jobs_left: int = -1
    job_pods_left: int = -1
    ready_pods: int = 0
    create_errors: int = 0
    watch_restarts: int = 0
    jobs_seen: int = 0
    controller_cpu_s: float = NAN
    controller_rss_mib: float = NAN
    controller_requests: float = NAN
    loadavg: tuple[float, float] = (NAN, NAN)
    problems: list[str] = field(default_factory=list)
    duplicate_detail: list[str] = field(default_factory=list)  # pod: Jobs (occurrences); its Ready history
    blocks: list[tuple[int, int, float, float, float]] = field(default_factory=list)  # first, last, p50, p99, Jobs/s
    ready_retransitions: int = 0  # pods whose Ready lastTransitionTime changed while Ready (without a False)
    occurrences: int = 0  # distinct (pod, Ready lastTransitionTime) seen

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        if not xs:
            return NAN
        return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]

    @property
    def ok(self) -> bool:
        return not self.problems


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        rss = next(
            int(line.split()[1]) / 1024
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
        return cpu, rss
    except (OSError, StopIteration):
        return NAN, NAN


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def count(kube: KubeClient, path: str, selector: str) -> int:
    return len((await kube.get(path, labelSelector=selector)).get("items") or [])


async def run(args: argparse.Namespace) -> Result:
    res = Result(n=args.pods, rate=args.rate, history=args.history)
    cp = (ControlPlane if args.default_qps else KwokControlPlane)()
    await cp.astart()
    if not cp.has_kwok:
        await cp.astop()
        raise SystemExit("this benchmark needs kube-scheduler and kwok next to kube-apiserver (see docs/testing.md)")
    res.version = cp.version
    kubeconfig = str(cp.kubeconfig_path)
    kube = await KubeClient.from_config(kubeconfig)
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    proc: subprocess.Popen[bytes] | None = None
    tasks: list[asyncio.Task[None]] = []
    seen = Seen()
    la0 = os.getloadavg()[0]
    try:
        await install_crd(kube)
        await kube.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        await kube.create(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", jt_body(args.history))
        port = free_port()
        log_path = Path(args.log_dir) / "jobtrigger-kwok-pods.log"
        log(f"control plane {cp.version} up; controller log in {log_path}")
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                controller_argv(kubeconfig, NS, port, "--workers", str(args.workers), "--log-level", "warning"),
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                cwd=ROOT,
            )
        jt_path = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{JT}"
        deadline = time.perf_counter() + 60
        while not _cond(await kube.get(jt_path), "Ready"):
            if proc.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"JobTrigger not Ready (controller exit code {proc.poll()}); see {log_path}")
            await asyncio.sleep(0.1)

        pods_path, jobs_path = f"/api/v1/namespaces/{NS}/pods", f"/apis/batch/v1/namespaces/{NS}/jobs"
        started = [asyncio.Event(), asyncio.Event()]
        tasks.append(asyncio.create_task(_watch(kube, pods_path, "=".join(LABEL), pod_handler(seen), seen, started[0])))
        owner = f"jobtrigger.dev/owner={JT}"
        tasks.append(asyncio.create_task(_watch(kube, jobs_path, owner, job_handler(seen), seen, started[1])))
        await asyncio.gather(*(e.wait() for e in started))
        c0 = await scrape_controller(http, port)
        cpu0, _ = _proc_cpu_rss(proc.pid)

        # pods at a fixed offered rate
        sem = asyncio.Semaphore(args.concurrency)

        async def create(i: int) -> None:
            async with sem:
                name = f"p{i:05d}"
                seen.created[name] = time.perf_counter()
                try:
                    await kube.create(pods_path, pod_body(i))
                except ApiError as e:
                    res.create_errors += 1
                    log(f"pod {name}: {e}")

        log(f"creating {args.pods} pods at {args.rate:g}/s")
        t0 = time.perf_counter()
        pending: list[asyncio.Task[None]] = []
        for i in range(args.pods):
            delay = t0 + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(create(i)))
            if i and i % max(1, int(args.rate * 30)) == 0:
                log(
                    f"{i} pods sent, {len(seen.ready)} Ready, {len(seen.job_added)} Jobs, "
                    f"{len(seen.job_complete)} Complete, {len(seen.job_deleted)} pruned"
                )
        await asyncio.gather(*pending)
        res.create_s = time.perf_counter() - t0

        # wait for: every pod Ready, every Job, every Job Complete, pruning down to the history limit
        expect = args.pods - res.create_errors
        t_end = time.perf_counter() + args.timeout
        last_log = 0.0
        while time.perf_counter() < t_end:
            live = set(seen.job_added) - set(seen.job_deleted)
            done = (
                len(seen.ready) >= expect
                and len(seen.jobs) >= len(seen.ready)
                and len(seen.job_complete) + len(seen.job_failed) >= len(seen.job_added)
                and len(live) <= args.history
            )
            if done:
                break
            if proc.poll() is not None:
                res.problems.append(f"controller exited with code {proc.poll()} (see {log_path})")
                break
            if time.perf_counter() - last_log > 15:
                last_log = time.perf_counter()
                log(
                    f"{len(seen.ready)}/{expect} Ready, {len(seen.job_added)} Jobs, {len(seen.job_complete)} "
                    f"Complete, {len(seen.job_deleted)} pruned, {len(live)} left"
                )
            await asyncio.sleep(0.2)
        else:
            res.problems.append(f"not settled within {args.timeout:g} s after the last pod was created")
        res.settled_s = time.perf_counter() - t0
        await asyncio.sleep(args.linger)  # late duplicates, late prunes
        c1 = await scrape_controller(http, port)
        cpu1, rss1 = _proc_cpu_rss(proc.pid)
        res.controller_cpu_s, res.controller_rss_mib = cpu1 - cpu0, rss1

        # figures
        res.ready_pods = len(seen.ready)
        if seen.ready:
            res.ready_s = max(seen.ready.values()) - t0
        # exactly once per occurrence: a pod transition is (pod, Ready lastTransitionTime), the Job's occurrence key
        # ends with that time; a pod whose Ready condition got a new time is a new transition and gets a new Job
        for pod, t_ready in seen.ready.items():
            names = seen.jobs.get(pod) or []
            expected = seen.ready_times.get(pod) or []
            res.occurrences += len(expected)
            got: dict[str, int] = {}
            for n in names:
                ltt = seen.job_occurrence.get(n, "").rsplit("/", 1)[-1]
                got[ltt] = got.get(ltt, 0) + 1
            res.missing += sum(1 for ltt in expected if ltt not in got)
            res.duplicates += sum(c - 1 for c in got.values()) + sum(1 for ltt in got if ltt not in expected)
            if len(expected) > 1:
                jobs = ", ".join(f"{n} ({seen.job_occurrence.get(n)})" for n in names)
                res.duplicate_detail.append(
                    f"{pod}: Ready lastTransitionTimes {expected}, Ready→not ready seen "
                    f"{seen.not_ready.get(pod, 0)}x; Jobs {jobs}"
                )
            if names:
                res.latencies_ms.append((seen.job_added[names[0]] - t_ready) * 1000)
        res.duplicates += sum(len(v) for k, v in seen.jobs.items() if k not in seen.ready)  # Jobs of unseen pods
        res.blocks = blocks(seen, args.pods)
        added = sorted(seen.job_added.values())
        if added and seen.ready:
            first_ready = min(seen.ready.values())
            res.jobs_s = added[-1] - first_ready
            res.jobs_per_s = len(added) / res.jobs_s if res.jobs_s > 0 else NAN
            j, best = 0, 0
            for i, t in enumerate(added):  # best 10 s window
                while added[j] < t - 10:
                    j += 1
                best = max(best, i - j + 1)
            res.best_window_jobs_per_s = best / 10 if res.jobs_s >= 10 else NAN
        if seen.job_complete:
            res.all_complete_s = max(seen.job_complete.values()) - t0
        res.completed, res.failed = len(seen.job_complete), len(seen.job_failed)
        res.jobs_seen = len(seen.job_added)
        res.metric_created = metric(c1, "jobtrigger_jobs_created_total", trigger="pods", result="created") - metric(
            c0, "jobtrigger_jobs_created_total", trigger="pods", result="created"
        )
        res.metric_errors = metric(c1, "jobtrigger_jobs_created_total", result="error") - metric(
            c0, "jobtrigger_jobs_created_total", result="error"
        )
        res.metric_deleted = metric(c1, "jobtrigger_jobs_deleted_total") - metric(c0, "jobtrigger_jobs_deleted_total")
        res.controller_requests = metric(c1, "jobtrigger_api_requests_total") - metric(
            c0, "jobtrigger_api_requests_total"
        )
        res.jobs_left = await count(kube, jobs_path, owner)
        res.job_pods_left = await count(kube, pods_path, "job-name")
        res.watch_restarts = seen.watch_restarts
        res.ready_retransitions = sum(
            1 for pod, times in seen.ready_times.items() if len(times) > 1 and not seen.not_ready.get(pod)
        )
        check(res, expect)
    finally:
        res.loadavg = (la0, os.getloadavg()[0])
        for task in tasks:
            task.cancel()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await http.close()
        await kube.close()
        await cp.astop()
    return res


def blocks(seen: Seen, n: int, parts: int = 10) -> list[tuple[int, int, float, float, float]]:
    """Per block of pods (in creation order): p50 and p99 latency, and the Jobs/s while its Jobs appeared."""
    out = []
    size = max(1, math.ceil(n / parts))
    for a in range(0, n, size):
        names = [f"p{i:05d}" for i in range(a, min(n, a + size))]
        lat, added = [], []
        for pod in names:
            jobs = seen.jobs.get(pod)
            if jobs and pod in seen.ready:
                lat.append((seen.job_added[jobs[0]] - seen.ready[pod]) * 1000)
                added.append(seen.job_added[jobs[0]])
        lat.sort()
        if not lat:
            continue
        span = max(added) - min(added)
        rate = (len(added) - 1) / span if span > 0 else NAN
        out.append(
            (a, a + len(names) - 1, lat[len(lat) // 2], lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))], rate)
        )
    return out


def check(res: Result, expect: int) -> None:
    p = res.problems
    if res.create_errors:
        p.append(f"{res.create_errors} pod creates failed")
    if res.ready_pods < expect:
        p.append(f"only {res.ready_pods} of {expect} pods seen Ready")
    if res.missing:
        p.append(f"{res.missing} Ready pods without a Job")
    if res.duplicates:
        p.append(f"{res.duplicates} duplicate Jobs")
    if res.metric_created != res.occurrences:
        p.append(f"jobtrigger_jobs_created_total grew by {res.metric_created:g}, expected {res.occurrences}")
    if res.failed:
        p.append(f"{res.failed} Jobs failed")
    if res.completed < res.jobs_seen:
        p.append(f"only {res.completed} of {res.jobs_seen} Jobs seen Complete")
    if res.jobs_left > res.history:
        p.append(f"{res.jobs_left} Jobs left, more than the history limit {res.history}")


# ------------------------------------------------------------------------------------------------ report


def f(x: float, fmt: str = ".1f") -> str:
    return "n/a" if isinstance(x, float) and math.isnan(x) else format(x, fmt)


def summary(res: Result) -> str:
    return (
        f"{res.version}: {res.n} pods at {res.rate:g}/s; latency p50 {f(res.pct(50))} / p95 {f(res.pct(95))} / "
        f"p99 {f(res.pct(99))} / max {f(res.pct(100))} ms; {f(res.jobs_per_s)} Jobs/s (best 10 s: "
        f"{f(res.best_window_jobs_per_s)}); created {f(res.metric_created, '.0f')} for {res.occurrences} transitions, "
        f"missing {res.missing}, "
        f"dup {res.duplicates}; complete {res.completed}, pruned {f(res.metric_deleted, '.0f')}, left "
        f"{res.jobs_left} Jobs / {res.job_pods_left} Job pods; settled {f(res.settled_s)} s; "
        f"{'OK' if res.ok else 'PROBLEMS: ' + '; '.join(res.problems)}"
    )


def report(res: Result, args: argparse.Namespace) -> str:
    busy = " (**not idle**: other work ran concurrently)" if max(res.loadavg) > 1.5 else ""
    qps = "envtest defaults" if args.default_qps else "`--kube-api-qps=5000 --kube-api-burst=10000`"
    rows = [
        ("pods created (offered rate, requests in flight)", f"{res.n} ({res.rate:g}/s, ≤ {args.concurrency})"),
        ("first POST → last pod created / last pod seen Ready", f"{f(res.create_s)} s / {f(res.ready_s)} s"),
        (
            "pod Ready seen → Job seen, p50 / p95 / p99 / max",
            f"{f(res.pct(50))} / {f(res.pct(95))} / {f(res.pct(99))} / {f(res.pct(100))} ms",
        ),
        ("Jobs/s (first Ready → last Job; best 10 s window)", f"{f(res.jobs_per_s)} ({f(res.best_window_jobs_per_s)})"),
        (
            "Jobs: `jobtrigger_jobs_created_total` / seen / transitions without a Job / duplicate (> 1 per transition)",
            f"{f(res.metric_created, '.0f')} / {res.jobs_seen} / {res.missing} / {res.duplicates}",
        ),
        (
            "Ready transitions (pod + Ready `lastTransitionTime`) / pods Ready again with a new time, no not-ready "
            "between (KWOK re-applied its pod-ready stage)",
            f"{res.occurrences} / {res.ready_retransitions}",
        ),
        ("Jobs Complete (real Job controller, pods run by KWOK) / Failed", f"{res.completed} / {res.failed}"),
        (
            "pruned (`jobtrigger_jobs_deleted_total`) / Jobs left / Job pods left",
            f"{f(res.metric_deleted, '.0f')} / {res.jobs_left} (limit {res.history}) / {res.job_pods_left}",
        ),
        (
            "first POST → last Job Complete / → settled (≤ limit left)",
            f"{f(res.all_complete_s)} s / {f(res.settled_s)} s",
        ),
        (
            "controller CPU s (per Job ms) / RSS at end / API requests per Job",
            f"{f(res.controller_cpu_s)} ({f(1000 * res.controller_cpu_s / max(1, res.n))}) / "
            f"{f(res.controller_rss_mib)} MiB / {f(res.controller_requests / max(1, res.n), '.2f')}",
        ),
    ]
    return "\n".join(
        [
            f"### {res.version}",
            "",
            "| | |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in rows),
            "",
            "Per block of pods, in creation order (the controller watches more pods in later blocks):",
            "",
            "| pods | Ready → Job p50 ms | p99 ms | Jobs/s while the block's Jobs appeared |",
            "|---|---|---|---|",
            *(f"| {a} to {b} | {f(p50, '.0f')} | {f(p99, '.0f')} | {f(r)} |" for a, b, p50, p99, r in res.blocks),
            "",
            f"Load average {res.loadavg[0]:.2f} at start, {res.loadavg[1]:.2f} at end{busy}; kube-controller-manager "
            f"and kube-scheduler client limits: {qps}; controller {args.workers} workers, history limit "
            f"{res.history}."
            + (" Problems: " + "; ".join(res.problems) + "." if res.problems else " Exactly once: yes."),
        ]
    )


def section(body: str) -> str:
    return "\n".join(
        [
            f"## {HEADING}",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}. "
            "Control plane from `jobtrigger.envtest` on the same machine (etcd, kube-apiserver, "
            "kube-controller-manager, kube-scheduler, KWOK 0.8.0 with one fake node); controller as a separate "
            "process. One JobTrigger: `pods: {selector: {matchLabels: …}, when: [Ready]}`, `concurrencyPolicy: "
            "Allow`, `successfulJobsHistoryLimit` = the limit below; its Job template tolerates the KWOK node.",
            "",
            body,
            "",
            "Run: `.venv/bin/python -m benchmarks.kwok_pods` (writes this section; "
            "`JOBTRIGGER_K8S_VERSION=1.20.2` for the floor).",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=20.0, help="pods created per second (offered, open loop)")
    p.add_argument("--concurrency", type=int, default=20, help="pod creates in flight at most")
    p.add_argument("--history", type=int, default=10, help="successfulJobsHistoryLimit of the JobTrigger")
    p.add_argument("--workers", type=int, default=4, help="controller --workers")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait after the last pod for the rest")
    p.add_argument("--linger", type=float, default=3.0, help="seconds to wait for late duplicates at the end")
    p.add_argument("--default-qps", action="store_true", help="keep the envtest's KCM/scheduler client limits")
    p.add_argument("--log-dir", default="/tmp", help="where the controller log goes")
    p.add_argument("--no-write", action="store_true", help="print the section, do not write docs/benchmarks.md")
    p.add_argument("--quick", action="store_true", help="300 pods at 20/s: checks it runs; writes nothing")
    args = p.parse_args()
    if args.quick:
        args.pods, args.rate, args.history, args.timeout, args.linger = 300, 20.0, 5, 60.0, 1.0
    res = asyncio.run(run(args))
    log(summary(res))
    for line in res.duplicate_detail[:5]:
        log(f"Ready again: {line}")
    if len(res.duplicate_detail) > 5:
        log(f"... {len(res.duplicate_detail) - 5} more pods Ready again with a new lastTransitionTime")
    text = section(report(res, args))
    print(text)
    if not (args.quick or args.no_write):
        write_section(HEADING, text)
    return 0 if res.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
