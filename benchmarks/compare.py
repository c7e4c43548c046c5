"""jobtrigger next to the alternatives a team would otherwise run, measured in one run on one control plane.

Peers (each started only after the previous one stopped, each in a fresh namespace of its own):

* ``jobtrigger`` — ``python -m jobtrigger.cli controller``, one JobTrigger per ConfigMap (``fields: [data]``,
  cooldown 0s);
* ``kopf`` — ``benchmarks/peers/kopf_operator.py`` under ``kopf run --standalone --namespace NS`` (kopf defaults);
* ``polling`` — ``benchmarks/peers/polling.py``, kube-changejob's approach (GET + hash per ConfigMap every P s),
  measured with P = 5 s; the P = 60 s (kube-changejob's default) figures are derived from it and labelled so.

Measured the same way for all three: the benchmark PATCHes a ConfigMap and records when the PATCH returned; a watch
on Jobs in the benchmark process records when the Job was ADDED. Changes go to distinct ConfigMaps at 1 and 10
changes/s. Per peer process: CPU seconds and RSS from /proc. API requests: ``apiserver_request_total`` of the
kube-apiserver before/after a window (only JSON requests — the apiserver's own loopback traffic is protobuf — minus
the benchmark's own requests, counted by a hook on its client, minus the background rate measured with no peer
running). Non-resource requests (discovery) are not in that metric, and a watch is counted when it ends. For
jobtrigger its own ``jobtrigger_api_requests_total`` is shown too. Idle: requests and CPU in an idle window after the
peer is ready (a poller keeps polling; a watcher should do nothing).

    .venv/bin/python -m benchmarks.compare            # full run (~10 min); prints the markdown section
    .venv/bin/python -m benchmarks.compare --quick    # a few changes, short windows: checks that it runs

kopf is installed into the running interpreter's environment (``pip install kopf``) when it is missing; it is not a
project dependency. Nothing is written into the repository; peer logs go to a temporary folder (path printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import cpu_seconds, paused_gc
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient

ROOT = Path(__file__).resolve().parent.parent
LABEL_KEY, LABEL_VALUE = "jobtrigger-bench", "watched"
KOPF_DONE = "kopf.zalando.org/last-handled-configuration"
PEERS = ("jobtrigger", "kopf", "polling")
NAN = float("nan")


# ----------------------------------------------------------------------------------------------------------------
# process and API-server measurements


def mem_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB: current and peak resident set."""
    vals = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            vals[line.split(":")[0]] = int(line.split()[1]) / 1024
    return vals.get("VmRSS", 0.0), vals.get("VmHWM", 0.0)


class OwnRequests:
    """Counts the requests this benchmark sends that ``apiserver_request_total`` counts when they return
    (resource requests; not the /metrics scrape, /version or discovery, not watches: those count when they end)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, method: str, kind: str, status: int) -> None:
        if status and method != "WATCH" and kind not in ("metrics", "version", "discovery"):
            self.n += 1


async def apiserver_requests(kube: KubeClient) -> Counter[str]:
    """apiserver_request_total of JSON requests, keyed ``VERB resource[/subresource] code``."""
    text = await kube.get_text("/metrics")
    out: Counter[str] = Counter()
    for m in re.finditer(r"^apiserver_request_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("contentType") != "application/json":
            continue
        res = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        out[f"{labels.get('verb')} {res} {labels.get('code')}"] += int(float(m.group(2)))
    return out


async def own_metric(port: int | None) -> float:
    """jobtrigger's own ``jobtrigger_api_requests_total`` (0 for peers without one)."""
    if port is None:
        return 0.0
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return sum(float(m.group(1)) for m in re.finditer(r"^jobtrigger_api_requests_total\{[^}]*\} (\S+)$", text, re.M))


@dataclass
class WindowResult:
    seconds: float = 0.0
    requests: float = 0.0  # by the peer, from the API server's metric
    own_metric: float = 0.0  # jobtrigger's own count
    cpu_s: float = 0.0
    breakdown: dict[str, int] = field(default_factory=dict)


class Window:
    """Requests (API server side) and CPU of one peer process between ``begin`` and ``end``."""

    def __init__(self, kube: KubeClient, own: OwnRequests, pid: int, port: int | None, bg_rate: float):
        self.kube, self.own, self.pid, self.port, self.bg_rate = kube, own, pid, port, bg_rate

    async def begin(self) -> None:
        self.own0 = self.own.n
        self.api0 = await apiserver_requests(self.kube)
        self.metric0 = await own_metric(self.port)
        self.cpu0, self.t0 = cpu_seconds(self.pid), time.perf_counter()

    async def end(self) -> WindowResult:
        own1 = self.own.n
        api1 = await apiserver_requests(self.kube)
        metric1 = await own_metric(self.port)
        cpu1, t1 = cpu_seconds(self.pid), time.perf_counter()
        diff = {k: v - self.api0.get(k, 0) for k, v in api1.items() if v != self.api0.get(k, 0)}
        dt = t1 - self.t0
        return WindowResult(
            seconds=dt,
            requests=sum(diff.values()) - (own1 - self.own0) - self.bg_rate * dt,
            own_metric=metric1 - self.metric0,
            cpu_s=cpu1 - self.cpu0,
            breakdown=diff,
        )


# ----------------------------------------------------------------------------------------------------------------
# latency


@dataclass
class RateRun:
    rate: float
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    duplicates: int = 0
    jobs: int = 0
    window: WindowResult = field(default_factory=WindowResult)

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        if not xs:
            return NAN
        return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))]

    def mean(self) -> float:
        return sum(self.latencies_ms) / len(self.latencies_ms) if self.latencies_ms else NAN


class JobWatch:
    """When each Job appeared, keyed by the ConfigMap it was made for, from a watch in this process."""

    def __init__(self, kube: KubeClient, ns: str, selector: str):
        self.kube, self.ns, self.selector = kube, ns, selector
        self.seen: dict[str, list[float]] = {}
        self.started = asyncio.Event()

    @staticmethod
    def configmap_of(job: dict[str, Any]) -> str:
        meta = job["metadata"]
        objects = (meta.get("annotations") or {}).get("jobtrigger.dev/objects")
        if objects:
            return str(json.loads(objects)[0]["name"])
        return str((meta.get("labels") or {}).get("bench-cm", "?"))

    async def run(self) -> None:
        path = f"/apis/batch/v1/namespaces/{self.ns}/jobs"
        rv = (await self.kube.get(path, labelSelector=self.selector))["metadata"]["resourceVersion"]
        self.started.set()
        while True:
            async for ev in self.kube.watch_lines(
                path,
                {"resourceVersion": rv, "labelSelector": self.selector, "allowWatchBookmarks": "true"},
                inactivity_timeout=600,
            ):
                t = time.perf_counter()
                rv = ev["object"]["metadata"]["resourceVersion"]
                if ev["type"] == "ADDED":
                    self.seen.setdefault(self.configmap_of(ev["object"]), []).append(t)


async def drive(kube: KubeClient, ns: str, watch: JobWatch, run: RateRun, names: list[str], settle: float) -> None:
    """PATCH the ConfigMaps in ``names`` (distinct) at ``run.rate`` per second; match each to its first new Job."""
    before = {k: len(v) for k, v in watch.seen.items()}
    sent: list[tuple[str, float]] = []
    stamp = time.time_ns()

    async def one(i: int, cm: str) -> None:
        t0 = time.perf_counter()
        await kube.merge_patch(f"/api/v1/namespaces/{ns}/configmaps/{cm}", {"data": {"v": f"{stamp}-{i}"}})
        sent.append((cm, t0))

    tasks = []
    t_next = time.perf_counter()
    for i, cm in enumerate(names):
        delay = t_next - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, cm)))
        t_next += 1.0 / run.rate
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + settle
    while time.perf_counter() < deadline:
        if all(len(watch.seen.get(cm, [])) > before.get(cm, 0) for cm, _ in sent):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # let duplicates (if any) show up
    for cm, t0 in sent:
        new = watch.seen.get(cm, [])[before.get(cm, 0) :]
        run.jobs += len(new)
        if not new:
            run.missing += 1
            continue
        run.latencies_ms.append((new[0] - t0) * 1000)
        run.duplicates += len(new) - 1


# ----------------------------------------------------------------------------------------------------------------
# peers


@dataclass
class PeerResult:
    name: str
    startup_s: float = 0.0
    idle: WindowResult = field(default_factory=WindowResult)
    runs: list[RateRun] = field(default_factory=list)
    cpu_total_s: float = 0.0
    rss_mib: float = 0.0
    hwm_mib: float = 0.0
    events: int = 0
    error: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jobtrigger_body(ns: str, i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": f"t{i}", "namespace": ns},
        "spec": {
            "triggers": {
                "resources": {
                    "cooldown": "0s",
                    "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"cm{i}", "fields": ["data"]}],
                }
            },
            "history": 1000,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
        },
    }


async def create_many(kube: KubeClient, path: str, bodies: list[dict[str, Any]]) -> None:
    sem = asyncio.Semaphore(20)

    async def one(body: dict[str, Any]) -> None:
        async with sem:
            await kube.create(path, body)

    await asyncio.gather(*(one(b) for b in bodies))


class Peer:
    def __init__(self, name: str, args: argparse.Namespace, kubeconfig: str, logdir: Path):
        self.name, self.args, self.kubeconfig = name, args, kubeconfig
        self.ns = f"cmp-{name}"
        self.log_path = logdir / f"{name}.log"
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.selector = "jobtrigger.dev/owner" if name == "jobtrigger" else f"bench-peer={name}"

    def command(self) -> list[str]:
        if self.name == "jobtrigger":
            self.port = free_port()
            return [
                sys.executable, "-m", "jobtrigger.cli", "controller", "--kubeconfig", self.kubeconfig,
                "--namespace", self.ns, "--http-addr", f"127.0.0.1:{self.port}",
                *(["--log-level", "warning"] if self.args.quiet_logs else []),
            ]  # fmt: skip
        if self.name == "kopf":
            operator = str(ROOT / "benchmarks" / "peers" / "kopf_operator.py")
            quiet = ["--quiet"] if self.args.quiet_logs else []
            return [sys.executable, "-m", "kopf", "run", "--standalone", *quiet, "--namespace", self.ns, operator]
        return [
            sys.executable, "-m", "benchmarks.peers.polling", "--namespace", self.ns,
            "--selector", f"{LABEL_KEY}={LABEL_VALUE}", "--interval", f"{self.args.interval:g}",
        ]  # fmt: skip

    async def setup(self, kube: KubeClient) -> None:
        await kube.create("/api/v1/namespaces", {"metadata": {"name": self.ns}})
        cms = [
            {"metadata": {"name": f"cm{i}", "labels": {LABEL_KEY: LABEL_VALUE}}, "data": {"v": "init"}}
            for i in range(self.args.pool)
        ]
        await create_many(kube, f"/api/v1/namespaces/{self.ns}/configmaps", cms)
        if self.name == "jobtrigger":
            bodies = [jobtrigger_body(self.ns, i) for i in range(self.args.pool)]
            await create_many(kube, f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}", bodies)

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "KUBECONFIG": self.kubeconfig}
        env["PEER_LABEL"] = f"{LABEL_KEY}={LABEL_VALUE}"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=env, cwd=ROOT)

    async def ready(self, kube: KubeClient) -> bool:
        if self.name == "jobtrigger":
            got = await kube.get(f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}")
            n = sum(
                1
                for o in got["items"]
                for c in (o.get("status") or {}).get("conditions") or []
                if c["type"] == "Ready" and c["status"] == "True"
            )
            return n == self.args.pool
        if self.name == "kopf":
            got = await kube.get(f"/api/v1/namespaces/{self.ns}/configmaps", labelSelector=f"{LABEL_KEY}={LABEL_VALUE}")
            return all(KOPF_DONE in (o["metadata"].get("annotations") or {}) for o in got["items"])
        return "READY" in self.log_path.read_text(errors="replace")

    async def wait_ready(self, kube: KubeClient, timeout: float) -> float:
        t0 = time.perf_counter()
        while not await self.ready(kube):
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited before it was ready; see {self.log_path}")
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")
            await asyncio.sleep(0.5)
        return time.perf_counter() - t0

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), 20)
        except TimeoutError:
            print(f"{self.name}: no exit 20s after SIGTERM; killing pid {self.proc.pid}", file=sys.stderr)
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)

    async def cleanup(self, kube: KubeClient) -> int:
        """Delete what the peer and the benchmark made (no namespace controller runs); returns the Events count."""
        events = len((await kube.get(f"/api/v1/namespaces/{self.ns}/events"))["items"])
        for path in (
            f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{PLURAL}",
            f"/apis/batch/v1/namespaces/{self.ns}/jobs",
            f"/api/v1/namespaces/{self.ns}/configmaps",
            f"/api/v1/namespaces/{self.ns}/events",
        ):
            with contextlib.suppress(ApiError):
                await kube.delete(path)
        return events


async def measure_peer(
    name: str, args: argparse.Namespace, kube: KubeClient, own: OwnRequests, kubeconfig: str, logdir: Path, bg: float
) -> PeerResult:
    res = PeerResult(name)
    peer = Peer(name, args, kubeconfig, logdir)
    watch = JobWatch(kube, peer.ns, peer.selector)
    watch_task: asyncio.Task[None] | None = None
    try:
        await peer.setup(kube)
        watch_task = asyncio.create_task(watch.run())
        await asyncio.wait_for(watch.started.wait(), 30)
        peer.start()
        assert peer.proc is not None
        res.startup_s = await peer.wait_ready(kube, args.ready_timeout)
        print(f"{name}: ready {res.startup_s:.1f}s after start (pid {peer.proc.pid})", file=sys.stderr)
        await asyncio.sleep(args.settle_start)  # last startup writes (status, annotations)
        w = Window(kube, own, peer.proc.pid, peer.port, bg)
        await w.begin()
        await asyncio.sleep(args.idle)
        res.idle = await w.end()
        k = 0
        for rate in args.rate_list:
            n = min(args.pool, int(rate * args.seconds)) or 1
            names = [f"cm{(k + j) % args.pool}" for j in range(n)]
            k += n
            run = RateRun(rate)
            await w.begin()
            settle = 30.0 + (args.interval if name == "polling" else 0.0)
            with paused_gc():
                await drive(kube, peer.ns, watch, run, names, settle)
            run.window = await w.end()
            res.runs.append(run)
            print(
                f"{name}: {rate:g}/s: {len(run.latencies_ms)} Jobs, p50 {run.pct(50):.0f} ms, p99 {run.pct(99):.0f} ms,"
                f" missing {run.missing}, dup {run.duplicates}",
                file=sys.stderr,
            )
        res.cpu_total_s = cpu_seconds(peer.proc.pid)
        res.rss_mib, res.hwm_mib = mem_mib(peer.proc.pid)
    except Exception as e:  # keep going with the next peer; the report says what failed
        res.error = f"{type(e).__name__}: {e}"
        print(f"{name}: FAILED: {res.error}", file=sys.stderr)
    finally:
        await peer.stop()
        if watch_task is not None:
            watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await watch_task
        with contextlib.suppress(ApiError):
            res.events = await peer.cleanup(kube)
    return res


async def main_async(args: argparse.Namespace) -> tuple[list[PeerResult], dict[str, Any]]:
    logdir = Path(tempfile.mkdtemp(prefix="jobtrigger-compare-"))
    cp = ControlPlane(with_controller_manager=False)  # Jobs need not run: only their creation is measured
    await cp.astart()
    kubeconfig = str(cp.kubeconfig_path)
    kube = await KubeClient.from_config(kubeconfig)
    own = OwnRequests()
    kube.on_request = own
    results: list[PeerResult] = []
    info: dict[str, Any] = {"logdir": str(logdir), "loadavg_start": os.getloadavg()}
    try:
        info["apiserver"] = (await kube.get("/version"))["gitVersion"]
        await install_crd(kube)
        # background: API server requests with no peer running (its own loopback client is filtered out already)
        own0, api0, t0 = own.n, await apiserver_requests(kube), time.perf_counter()
        await asyncio.sleep(args.background)
        own1, api1 = own.n, await apiserver_requests(kube)
        dt = time.perf_counter() - t0
        info["background_per_s"] = bg = max(0.0, (sum(api1.values()) - sum(api0.values()) - (own1 - own0)) / dt)
        for name in args.peer_list:
            results.append(await measure_peer(name, args, kube, own, kubeconfig, logdir, bg))
    finally:
        info["loadavg_end"] = os.getloadavg()
        await kube.close()
        await cp.astop()
    return results, info


# ----------------------------------------------------------------------------------------------------------------
# report


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def fmt(x: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.{digits}f}"


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:.3g}x"


@dataclass
class Row:
    metric: str
    values: dict[str, float]  # per peer (for the ratio)
    cells: dict[str, str]  # per peer (as shown)
    derived: str = ""  # polling at P = 60 s, derived
    ratios: bool = True


def run_at(r: PeerResult, rate: float) -> RateRun | None:
    return next((x for x in r.runs if x.rate == rate), None)


def per_job(r: PeerResult, what: str) -> float:
    jobs = sum(x.jobs for x in r.runs)
    if not jobs:
        return NAN
    if what == "cpu_ms":
        return 1000 * sum(x.window.cpu_s for x in r.runs) / jobs
    return sum(x.window.own_metric for x in r.runs) / jobs if r.name == "jobtrigger" else NAN


def report(results: list[PeerResult], info: dict[str, Any], args: argparse.Namespace) -> str:
    by = {r.name: r for r in results}
    cols = [n for n in PEERS if n in by]
    labels = {
        "jobtrigger": "jobtrigger",
        "kopf": f"kopf {version('kopf')}",
        "polling": f"polling P={args.interval:g} s",
    }
    poll = by.get("polling")
    big_p = 60.0  # kube-changejob's default poll interval
    rows: list[Row] = []

    def add(metric: str, fn: Any, digits: int = 0, derived: float = NAN, ratios: bool = True) -> None:
        values = {n: (fn(by[n]) if by[n].runs else NAN) for n in cols}
        cells = {n: fmt(v, digits) for n, v in values.items()}
        rows.append(Row(metric, values, cells, "" if math.isnan(derived) else fmt(derived, digits), ratios))

    for rate in args.rate_list:
        pr = run_at(poll, rate) if poll else None
        rest_ms = pr.mean() - args.interval * 1000 / 2 if pr and pr.latencies_ms else NAN  # path minus poll wait
        for p in (50, 95, 99):
            add(
                f"latency p{p} ms @ {rate:g}/s",
                lambda r, rate=rate, p=p: x.pct(p) if (x := run_at(r, rate)) else NAN,
                derived=p / 100 * big_p * 1000 + rest_ms,
            )
        cells = {n: (f"{x.missing} / {x.duplicates}" if (x := run_at(by[n], rate)) else "n/a") for n in cols}
        rows.append(Row(f"missing / duplicate Jobs @ {rate:g}/s", {}, cells, ratios=False))
    for rate in args.rate_list:
        add(
            f"API requests per Job @ {rate:g}/s",
            lambda r, rate=rate: x.window.requests / x.jobs if (x := run_at(r, rate)) and x.jobs else NAN,
            digits=1,
            derived=args.pool / (big_p * rate) + 1,  # one GET per ConfigMap per P, one create per Job
        )
    add("  jobtrigger's own count per Job (all rates)", lambda r: per_job(r, "own"), digits=1, ratios=False)
    add(
        f"idle API requests / {args.idle:g} s",
        lambda r: r.idle.requests * args.idle / r.idle.seconds if r.idle.seconds else NAN,
        derived=args.pool * args.idle / big_p,
    )
    add("idle CPU % of a core", lambda r: 100 * r.idle.cpu_s / r.idle.seconds if r.idle.seconds else NAN, digits=2)
    add("CPU s while changing (all rates)", lambda r: sum(x.window.cpu_s for x in r.runs), digits=2)
    add("CPU ms per Job (all rates)", lambda r: per_job(r, "cpu_ms"), digits=1)
    add("CPU s over the whole run (start → stop)", lambda r: r.cpu_total_s, digits=2)
    add("RSS MiB at end (peak)", lambda r: r.rss_mib, digits=1)
    for row in rows[-1:]:
        row.cells = {n: f"{by[n].rss_mib:.1f} ({by[n].hwm_mib:.1f})" if by[n].runs else "n/a" for n in cols}
    add("start → ready s", lambda r: r.startup_s, digits=1)
    add("k8s Events written", lambda r: float(r.events), ratios=False)

    peers = [n for n in cols if n != "jobtrigger"]
    head = ["metric", *(labels[n] for n in cols)]
    if poll:
        head.append("polling P=60 s (*derived*)")
    head += [f"jobtrigger / {labels[n]}" for n in peers]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in rows:
        cells = [row.metric, *(row.cells[n] for n in cols)]
        if poll:
            cells.append(row.derived)
        jt = row.values.get("jobtrigger", NAN)
        cells += [ratio(jt, row.values.get(n, NAN)) if row.ratios else "" for n in peers]
        lines.append("| " + " | ".join(cells) + " |")

    failed = [f"- **{r.name} failed**: {r.error}" for r in results if r.error]
    la0, la1 = info.get("loadavg_start", (0, 0, 0)), info.get("loadavg_end", (0, 0, 0))
    n_changes = ", ".join(f"{min(args.pool, int(r * args.seconds)) or 1} at {r:g}/s" for r in args.rate_list)
    logs = (
        "jobtrigger `--log-level warning`, kopf `--quiet` (which also stops kopf's Events)"
        if args.quiet_logs
        else "both at their default log level (info)"
    )
    return "\n".join(
        [
            "## jobtrigger vs. peers (same run)",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}, Python "
            f"{platform.python_version()}; load average {la0[0]:.2f} at start, {la1[0]:.2f} at end"
            + (" (**not idle**: other work ran concurrently)" if max(la0[0], la1[0]) > 0.5 else "")
            + f". API server: local kube-apiserver {info.get('apiserver', '?')} + etcd (envtest, same machine, no "
            f"kube-controller-manager). jobtrigger {version('jobtrigger')}, kopf {version('kopf')}, "
            f"kubernetes_asyncio {version('kubernetes_asyncio')}, aiohttp {version('aiohttp')}.",
            "",
            f"Each peer runs as its own process in its own namespace with {args.pool} labelled ConfigMaps, started "
            f"after the previous one stopped; changes go to distinct ConfigMaps ({n_changes}); latency = PATCH "
            "returned → Job ADDED seen by a watch in the benchmark process. jobtrigger: one JobTrigger per ConfigMap "
            "(`fields: [data]`, cooldown 0s). kopf: `benchmarks/peers/kopf_operator.py` (`@kopf.on.field('v1', "
            "'configmaps', field='data')`, Job named `<cm>-<resourceVersion>`) under `kopf run --standalone`, kopf "
            "defaults otherwise (progress + diff-base annotations on the ConfigMap; no Events for handler results). "
            "polling: "
            "`benchmarks/peers/polling.py`, kube-changejob's approach (GET + SHA-256 of `data` per ConfigMap every "
            f"P s, staggered, `generateName`). Logging: {logs}.",
            "",
            *lines,
            "",
            "Ratios are jobtrigger ÷ peer (below 1: jobtrigger lower). API requests: `apiserver_request_total` "
            "(JSON requests) over the window, minus the benchmark's own requests, minus the background measured "
            f"with no peer running ({info.get('background_per_s', 0):.2f}/s); discovery (non-resource) requests are "
            "not in that metric, and a watch counts only when it ends. *Derived* (not measured): polling at "
            "P = 60 s (kube-changejob's default): latency pX = X% of 60 s + (measured P = 5 s mean - 2.5 s); "
            "requests = one GET per ConfigMap per 60 s + one create per Job. kube-changejob itself also makes a "
            "dry-run Job create per poll, so its real request count is higher.",
            *(["", *failed] if failed else []),
            "",
            "Run: `.venv/bin/python -m benchmarks.compare` (prints this section; writes nothing).",
        ]
    )


def ensure_kopf() -> None:
    if importlib.util.find_spec("kopf") is not None:
        return
    print(
        f"kopf is not installed in {sys.prefix}; installing it for the comparison only "
        f"({sys.executable} -m pip install kopf; not a project dependency) ...",
        file=sys.stderr,
    )
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "kopf"], check=True, timeout=600)
    importlib.invalidate_caches()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    p.add_argument("--rates", default="1,10", help="changes per second, comma-separated")
    p.add_argument("--seconds", type=float, default=60, help="duration per rate (bounded by --pool)")
    p.add_argument("--pool", type=int, default=200, help="ConfigMaps per peer (max changes per rate)")
    p.add_argument("--interval", type=float, default=5.0, help="poll interval P of the polling peer")
    p.add_argument("--idle", type=float, default=20.0, help="idle window (s)")
    p.add_argument("--background", type=float, default=10.0, help="no-peer background window (s)")
    p.add_argument("--settle-start", type=float, default=3.0, help="pause after ready before measuring (s)")
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.add_argument(
        "--quiet-logs", action="store_true", help="jobtrigger --log-level warning, kopf --quiet (default: defaults)"
    )
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--quick", action="store_true", help="few changes, short windows: checks that it runs")
    args = p.parse_args()
    if args.quick:
        args.pool, args.seconds, args.idle, args.background, args.settle_start = 20, 3, 4, 2, 1
    args.rate_list = [float(r) for r in args.rates.split(",")]
    args.peer_list = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = set(args.peer_list) - set(PEERS)
    if unknown:
        p.error(f"unknown peers: {', '.join(sorted(unknown))}")
    if "kopf" in args.peer_list:
        ensure_kopf()
    results, info = asyncio.run(main_async(args))
    text = report(results, info, args)
    print(text)
    print(f"peer logs: {info['logdir']}", file=sys.stderr)
    if args.json:
        raw = {
            "info": info,
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "peers": [
                {
                    "name": r.name,
                    "error": r.error,
                    "startup_s": r.startup_s,
                    "cpu_total_s": r.cpu_total_s,
                    "rss_mib": r.rss_mib,
                    "hwm_mib": r.hwm_mib,
                    "events": r.events,
                    "idle": vars(r.idle),
                    "runs": [
                        {**{k: v for k, v in vars(x).items() if k != "window"}, "window": vars(x.window)}
                        for x in r.runs
                    ],
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    bad = [r for r in results if r.error or any(x.missing or x.duplicates for x in r.runs)]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
