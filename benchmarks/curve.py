"""Saturation curve: latency vs rate for jobtrigger, the bare floor loop and kopf, in one run on one control plane.

Each system gets its own namespace with ``--pool`` ConfigMaps (jobtrigger: one JobTrigger per ConfigMap) and is
driven at rising rates (changes/s, each change to a ConfigMap not changed before in that step) for ``--seconds``
per rate, until it breaks. Latency = PATCH sent → Job ADDED seen by a watch in this process (as in
``benchmarks.latency``). A rate *holds* when the p99 stays under 100 ms and there is no growing backlog (the median
of the last fifth of the step's changes is not more than 50 ms above the first fifth's); the *knee* is the highest
rate that holds. Then a *burst*: ``--burst`` ConfigMaps changed at once (PATCHes 50 at a time), Jobs/s = changes /
(first PATCH sent → last Job seen).

Systems: ``floor`` — the cheapest reaction, in this process (a ConfigMap watch creating one Job per change: no queue,
no status, no checks); ``jobtrigger`` — ``jobtrigger controller`` as a process with its defaults; ``kopf`` —
``benchmarks/peers/kopf_operator.py`` under ``kopf run --standalone`` (see ``benchmarks.compare``). CPU per Job of
the peer process (not for the floor: it runs in this process) and of kube-apiserver + etcd, from /proc.

    .venv/bin/python -m benchmarks.curve              # 3 runs; writes its section and docs/img/curve.png
    .venv/bin/python -m benchmarks.curve --quick      # two low rates, few changes: checks it runs; writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import ROOT, cpu_seconds, paused_gc, write_section
from benchmarks.compare import JobWatch, Peer, ensure_kopf
from benchmarks.latency import metric, scrape_controller, server_cpu
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient

NAN = float("nan")
SYSTEMS = ("floor", "jobtrigger", "kopf")
P99_LIMIT_MS = 100.0
BACKLOG_MS = 50.0
PNG = ROOT / "docs" / "img" / "curve.png"


@dataclass
class Step:
    rate: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # in the order the changes were sent
    missing: int = 0
    duplicates: int = 0
    cpu_ms_per_job: float = NAN
    server_cpu_ms_per_job: float = NAN
    requests_per_job: float = NAN  # jobtrigger: its API requests in the step (jobtrigger_api_requests_total) / Jobs

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))] if xs else NAN

    def backlog_ms(self) -> float:
        """Median of the last fifth minus median of the first fifth (a queue that keeps growing shows here)."""
        xs = self.latencies_ms
        k = max(1, len(xs) // 5)
        return statistics.median(xs[-k:]) - statistics.median(xs[:k]) if len(xs) >= 5 else 0.0

    def holds(self) -> bool:
        return not self.missing and self.pct(99) < P99_LIMIT_MS and self.backlog_ms() <= BACKLOG_MS


@dataclass
class Curve:
    system: str
    steps: list[Step] = field(default_factory=list)
    burst_jobs_per_s: float = NAN
    #: jobtrigger: last Job of the burst seen -> no status write deferred any more (write-behind caught up), s
    status_lag_s: float = NAN
    error: str = ""

    def knee(self) -> float:
        held = [s.rate for s in self.steps if s.holds()]
        return max(held) if held else 0.0


async def drive(kube: KubeClient, ns: str, watch: JobWatch, step: Step, names: list[str], settle: float) -> None:
    """PATCH ``names`` at ``step.rate``/s (or all at once, 50 in flight, when the rate is 0); match each to its
    first new Job."""
    before = {k: len(v) for k, v in watch.seen.items()}
    sent: dict[str, float] = {}
    stamp = time.time_ns()
    sem = asyncio.Semaphore(50)

    async def one(i: int, cm: str) -> None:
        async with sem:
            sent[cm] = time.perf_counter()
            await kube.merge_patch(f"/api/v1/namespaces/{ns}/configmaps/{cm}", {"data": {"v": f"{stamp}-{i}"}})

    tasks = []
    t_next = time.perf_counter()
    for i, cm in enumerate(names):
        if step.rate > 0:
            delay = t_next - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t_next += 1.0 / step.rate
        tasks.append(asyncio.create_task(one(i, cm)))
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + settle
    while time.perf_counter() < deadline:
        if all(len(watch.seen.get(cm, [])) > before.get(cm, 0) for cm in sent):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # duplicates, if any
    step.sent = len(sent)
    for cm in names:
        new = watch.seen.get(cm, [])[before.get(cm, 0) :]
        if not new:
            step.missing += 1
            continue
        step.latencies_ms.append((new[0] - sent[cm]) * 1000)
        step.duplicates += len(new) - 1


async def floor_loop(kube: KubeClient, ns: str, ready: asyncio.Event) -> None:
    """The floor: watch the namespace's ConfigMaps, create a Job per MODIFIED event, nothing else."""
    path = f"/api/v1/namespaces/{ns}/configmaps"
    rv = (await kube.get(path))["metadata"]["resourceVersion"]
    ready.set()
    n = 0
    creates: set[asyncio.Task[Any]] = set()
    async for ev in kube.watch_lines(path, {"resourceVersion": rv}, inactivity_timeout=3600):
        if ev["type"] != "MODIFIED":
            continue
        n += 1
        cm = ev["object"]["metadata"]["name"]
        job = {
            "metadata": {"name": f"floor-{cm}-{n}", "labels": {"bench-peer": "floor", "bench-cm": cm}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "b"}]}}},
        }
        task = asyncio.create_task(kube.create(f"/apis/batch/v1/namespaces/{ns}/jobs", job))
        creates.add(task)
        task.add_done_callback(creates.discard)


async def measure(system: str, args: argparse.Namespace, kube: KubeClient, cp: ControlPlane, run: int) -> Curve:
    curve = Curve(system)
    peer = Peer(system, args, str(cp.kubeconfig_path), Path(args.logdir))
    peer.ns = f"curve-{system}-{run}"
    peer.selector = "jobtrigger.dev/owner" if system == "jobtrigger" else f"bench-peer={system}"
    watch = JobWatch(kube, peer.ns, peer.selector)
    tasks: list[asyncio.Task[None]] = []
    pid: int | None = None
    try:
        await peer.setup(kube)
        tasks.append(asyncio.create_task(watch.run()))
        await asyncio.wait_for(watch.started.wait(), 30)
        if system == "floor":
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(floor_loop(kube, peer.ns, ready)))
            await asyncio.wait_for(ready.wait(), 30)
        else:
            peer.start()
            assert peer.proc is not None
            pid = peer.proc.pid
            took = await peer.wait_ready(kube, args.ready_timeout)
            print(f"{system}: ready {took:.1f}s after start", file=sys.stderr)
        await asyncio.sleep(2.0)
        k = 0
        for rate in args.rate_list:
            n = min(args.pool, max(1, int(rate * args.seconds)))
            names = [f"cm{(k + j) % args.pool}" for j in range(n)]
            k += n
            step = Step(rate)
            c0, s0, r0 = cpu_seconds(pid) if pid else NAN, server_cpu(cp), await requests(peer)
            with paused_gc():
                await drive(kube, peer.ns, watch, step, names, settle=20)
            c1, s1, r1 = cpu_seconds(pid) if pid else NAN, server_cpu(cp), await requests(peer)
            jobs = len(step.latencies_ms) + step.duplicates
            if jobs:
                step.cpu_ms_per_job = 1000 * (c1 - c0) / jobs
                step.server_cpu_ms_per_job = 1000 * (s1 - s0) / jobs
                step.requests_per_job = (r1 - r0) / jobs
            curve.steps.append(step)
            print(
                f"{system} {rate:g}/s: p50 {step.pct(50):.1f} p99 {step.pct(99):.1f} ms, backlog "
                f"{step.backlog_ms():+.0f} ms, missing {step.missing}, dup {step.duplicates}, CPU/Job "
                f"{step.cpu_ms_per_job:.2f} ms, server CPU/Job {step.server_cpu_ms_per_job:.2f} ms"
                + ("" if step.holds() else "  (does not hold)"),
                file=sys.stderr,
            )
            if step.missing or step.pct(99) > 2000:
                break  # broken: higher rates only take longer to say the same
        if args.burst:
            burst = Step(0.0)
            names = [f"cm{j}" for j in range(min(args.burst, args.pool))]
            t0 = time.perf_counter()
            with paused_gc():
                await drive(kube, peer.ns, watch, burst, names, settle=60)
            last = max((v[-1] for cm, v in watch.seen.items() if cm in set(names)), default=NAN)
            if not burst.missing and not math.isnan(last):
                curve.burst_jobs_per_s = len(names) / (last - t0)
                if system == "jobtrigger":
                    curve.status_lag_s = await caught_up(peer) - last
            print(
                f"{system} burst of {len(names)}: {curve.burst_jobs_per_s:.1f} Jobs/s"
                + (f", status caught up {curve.status_lag_s:.1f} s later" if system == "jobtrigger" else ""),
                file=sys.stderr,
            )
    except Exception as e:  # the report says which system failed and why; the others are still measured
        curve.error = f"{type(e).__name__}: {e}"
        print(f"{system}: FAILED: {curve.error}", file=sys.stderr)
    finally:
        if system != "floor":
            await peer.stop()
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, ApiError):
                await t
        with contextlib.suppress(ApiError):
            await peer.cleanup(kube)
    return curve


async def requests(peer: Peer) -> float:
    """jobtrigger's API requests so far (NaN for the other systems)."""
    if peer.name != "jobtrigger" or peer.port is None:
        return NAN
    async with aiohttp.ClientSession() as http:
        return metric(await scrape_controller(http, peer.port), "jobtrigger_api_requests_total")


async def caught_up(peer: Peer, timeout: float = 300) -> float:
    """perf_counter when jobtrigger has no deferred status write left (write-behind caught up)."""
    assert peer.port is not None
    deadline = time.perf_counter() + timeout
    async with aiohttp.ClientSession() as http:
        while time.perf_counter() < deadline:
            text = await scrape_controller(http, peer.port)
            if metric(text, "jobtrigger_status_behind_jobtriggers") == 0:
                return time.perf_counter()
            await asyncio.sleep(0.2)
    return NAN


async def main_async(args: argparse.Namespace) -> tuple[list[list[Curve]], dict[str, Any]]:
    cp = ControlPlane(with_controller_manager=False)  # only the Job creation is measured
    await cp.astart()
    kube = await KubeClient.from_config(str(cp.kubeconfig_path))
    info: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    runs: list[list[Curve]] = []
    try:
        info["apiserver"] = (await kube.get("/version"))["gitVersion"]
        await install_crd(kube)
        for run in range(args.runs):
            runs.append([await measure(system, args, kube, cp, run) for system in args.system_list])
    finally:
        info["loadavg_end"] = os.getloadavg()
        await kube.close()
        await cp.astop()
    return runs, info


# ------------------------------------------------------------------------------------------------ report


def spread(xs: list[float], fmt: str = "{:.0f}") -> str:
    xs = sorted(x for x in xs if not math.isnan(x))
    if not xs:
        return "n/a"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return " / ".join(fmt.format(x) for x in (xs[0], statistics.median(xs), xs[-1]))


def report(runs: list[list[Curve]], info: dict[str, Any], args: argparse.Namespace) -> str:
    la0, la1 = info.get("loadavg_start", (0, 0, 0)), info.get("loadavg_end", (0, 0, 0))
    n = len(runs)
    by: dict[str, list[Curve]] = {s: [c for run in runs for c in run if c.system == s] for s in args.system_list}
    rows = []
    for rate in args.rate_list:
        cells = []
        for s in args.system_list:
            steps = [st for c in by[s] for st in c.steps if st.rate == rate]
            if not steps:
                cells.append("— (broke below)")
                continue
            held = sum(st.holds() for st in steps)
            cells.append(f"{spread([st.pct(99) for st in steps])} ({held}/{len(steps)} hold)")
        rows.append(f"| {rate:g}/s | " + " | ".join(cells) + " |")
    knees = {s: [c.knee() for c in by[s]] for s in args.system_list}
    floor_knees = knees.get("floor", [])
    ratio = [j / f for j, f in zip(knees.get("jobtrigger", []), floor_knees, strict=False) if f]
    bursts = {s: [c.burst_jobs_per_s for c in by[s]] for s in args.system_list}
    bratio = [
        j / f
        for j, f in zip(bursts.get("jobtrigger", []), bursts.get("floor", []), strict=False)
        if f and not math.isnan(j) and not math.isnan(f)
    ]
    cpu_rows = []
    for s in args.system_list:
        at100 = [st for c in by[s] for st in c.steps if st.rate == 100.0]
        cpu_rows.append(
            f"| {s} | {spread([st.cpu_ms_per_job for st in at100], '{:.2f}') if s != 'floor' else '— (in process)'} "
            f"| {spread([st.server_cpu_ms_per_job for st in at100], '{:.1f}')} |"
        )
    jt100 = [st for c in by.get("jobtrigger", []) for st in c.steps if st.rate == 100.0]
    lags = [c.status_lag_s for c in by.get("jobtrigger", [])]
    errors = [f"- {c.system}: {c.error}" for run in runs for c in run if c.error]
    head = " | ".join(f"{s} p99 ms" for s in args.system_list)
    return "\n".join(
        [
            "## Saturation curve",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
            f"{la0[0]:.2f} at start, {la1[0]:.2f} at end. API server: local kube-apiserver {info.get('apiserver', '?')}"
            f" + etcd (envtest, same machine, no controller-manager). {n} run(s), one after another on one control "
            f"plane; each system in its own namespace with {args.pool} ConfigMaps, {args.seconds:g} s per rate, each "
            "change to a ConfigMap not changed before in that step. Cells: p99 min / median / max over the runs, and "
            f"in how many runs the rate held (p99 < {P99_LIMIT_MS:g} ms, no growing backlog, nothing missing).",
            "",
            f"![latency vs rate](img/{PNG.name})",
            "",
            f"| rate | {head} |",
            "|---|" + "---|" * len(args.system_list),
            *rows,
            "",
            "| | " + " | ".join(args.system_list) + " |",
            "|---|" + "---|" * len(args.system_list),
            "| knee (changes/s), min / median / max | " + " | ".join(spread(knees[s]) for s in args.system_list) + " |",
            f"| burst of {args.burst} changes: Jobs/s | "
            + " | ".join(spread(bursts[s]) for s in args.system_list)
            + " |",
            "",
            f"jobtrigger's knee ÷ the floor's, per run: {', '.join(f'{r:.2f}' for r in ratio) or 'n/a'} (goal ≥ 0.7). "
            f"Burst Jobs/s ÷ the floor's, per run: {', '.join(f'{r:.2f}' for r in bratio) or 'n/a'} (goal ≥ 0.7).",
            "",
            "CPU per Job at 100 changes/s (ms, min / median / max over the runs; /proc of the process, and of "
            "kube-apiserver + etcd together, including the benchmark's own PATCH of each change):",
            "",
            "| system | its process | API server + etcd |",
            "|---|---|---|",
            *cpu_rows,
            "",
            "jobtrigger's API requests per Job at 100 changes/s: "
            f"{spread([st.requests_per_job for st in jt100], '{:.2f}')}"
            " (the floor: 1, the Job create). After the burst, the statuses written behind "
            "([write-behind](concepts.md#status-write-behind)) were all written "
            f"{spread(lags, '{:.1f}')} s after the burst's last Job was seen.",
            *(["", "Failures:", *errors] if errors else []),
            "",
            "Run: `.venv/bin/python -m benchmarks.curve` (writes this section and the plot).",
        ]
    )


def plot(runs: list[list[Curve]], args: argparse.Namespace, path: Path) -> None:
    """p99 vs rate per system (median over the runs, min-max as error bars), drawn from this run's numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for s in args.system_list:
        xs, med, lo, hi = [], [], [], []
        for rate in args.rate_list:
            vals = [st.pct(99) for run in runs for c in run if c.system == s for st in c.steps if st.rate == rate]
            if not vals:
                continue
            m = statistics.median(vals)
            xs.append(rate)
            med.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=s)
    ax.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("changes per second")
    ax.set_ylabel("p99 change → Job, ms")
    ax.set_title(f"Latency vs rate ({len(runs)} run(s): median, min-max)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def load(path: Path, args: argparse.Namespace) -> tuple[list[list[Curve]], dict[str, Any]]:
    """The runs of a ``--json`` file (its rates, systems, pool and burst replace the command line's)."""
    data = json.loads(path.read_text())
    runs = [
        [
            Curve(
                c["system"],
                [Step(**st) for st in c["steps"]],
                c["burst"] if c["burst"] is not None else NAN,
                status_lag_s=c.get("status_lag", NAN) if c.get("status_lag") is not None else NAN,
                error=c["error"],
            )
            for c in run
        ]
        for run in data["runs"]
    ]
    saved = data.get("args") or {}
    for k in ("rate_list", "system_list", "pool", "burst", "seconds"):
        if k in saved:
            setattr(args, k, saved[k])
    if not saved:  # a file from before the args were saved: what the run itself shows
        args.system_list = [c.system for c in runs[0]]
        args.rate_list = sorted({st.rate for run in runs for c in run for st in c.steps})
    return runs, data["info"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ",".join(SYSTEMS))
    p.add_argument("--rates", default="10,30,100,150,200,300,400,600", help="changes per second, rising")
    p.add_argument("--seconds", type=float, default=5.0, help="duration per rate (bounded by --pool)")
    p.add_argument("--pool", type=int, default=1500, help="ConfigMaps per system (max changes per rate)")
    p.add_argument("--burst", type=int, default=1000, help="ConfigMaps changed at once for the throughput figure")
    p.add_argument("--runs", type=int, default=3, help="runs (the report gives min / median / max over them)")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument(
        "--from-json", type=Path, help="measure nothing: write the section and the plot from a --json file of a run"
    )
    p.add_argument("--quick", action="store_true", help="two low rates, few changes; checks it runs; writes nothing")
    args = p.parse_args()
    if args.quick:
        args.rates, args.seconds, args.pool, args.burst, args.runs = "10,30", 1, 40, 20, 1
    args.rate_list = [float(r) for r in args.rates.split(",")]
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.quiet_logs, args.interval = True, 5.0  # for compare.Peer
    args.logdir = str(ROOT / "benchmarks" / ".curve-logs")
    Path(args.logdir).mkdir(exist_ok=True)
    if "kopf" in args.system_list:
        ensure_kopf()
    if args.from_json:
        runs, info = load(args.from_json, args)
    else:
        runs, info = asyncio.run(main_async(args))
    text = report(runs, info, args)
    print(text)
    if args.json:
        raw = [[{"system": c.system, "burst": c.burst_jobs_per_s, "status_lag": c.status_lag_s, "error": c.error,
                 "steps": [vars(s) for s in c.steps]} for c in run] for run in runs]  # fmt: skip
        args.json.write_text(json.dumps({"info": info, "args": vars(args), "runs": raw}, default=str))
    if not args.quick:
        plot(runs, args, PNG)
        write_section("Saturation curve", text)
    failed = [c for run in runs for c in run if c.error or any(s.duplicates for s in c.steps)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
