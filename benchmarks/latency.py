"""Event→Job latency of jobtrigger on a local real API server, next to the floor for the same path.

Measured path: the benchmark PATCHes a watched ConfigMap and records the time the PATCH returned; a watch on Jobs
in the benchmark process records when the Job appeared. The *floor* is the same path with the controller replaced
by the cheapest possible reaction (the benchmark's own ConfigMap watch creates a Job directly), so
``controller overhead = jobtrigger - floor``.

The controller runs as a separate process (``jobtrigger controller``), as in production.

    .venv/bin/python -m benchmarks.latency            # 1, 10, 100 changes/s; writes docs/benchmarks.md
    .venv/bin/python -m benchmarks.latency --quick    # a few changes, checks it still runs; writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient

ROOT = Path(__file__).resolve().parent.parent
NS = "bench"
POOL = 300  # ConfigMaps (and JobTriggers): within one rate step every change hits a distinct object


@dataclass
class Run:
    rate: float
    latencies_ms: list[float] = field(default_factory=list)
    missing: int = 0
    duplicates: int = 0

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        if not xs:
            return float("nan")
        k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
        return xs[k]


def jt_body(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": f"t{i}", "namespace": NS},
        "spec": {
            "triggers": {
                "resources": {
                    "cooldown": "0s",
                    "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"cm{i}", "fields": ["data"]}],
                }
            },
            "history": 1000,
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            },
        },
    }


class JobWatch:
    """Records when each Job (by the ConfigMap it was made for) appeared, via a watch in this process."""

    def __init__(self, kube: KubeClient, label: str):
        self.kube = kube
        self.label = label
        self.seen: dict[str, list[float]] = {}
        self.task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    async def run(self) -> None:
        path = f"/apis/batch/v1/namespaces/{NS}/jobs"
        lst = await self.kube.get(path, labelSelector=self.label)
        rv = lst["metadata"]["resourceVersion"]
        self.started.set()
        while True:
            async for ev in self.kube.watch_lines(
                path,
                {"resourceVersion": rv, "labelSelector": self.label, "allowWatchBookmarks": "true"},
                inactivity_timeout=600,
            ):
                t = time.perf_counter()
                obj = ev["object"]
                rv = obj["metadata"]["resourceVersion"]
                if ev["type"] == "ADDED":
                    meta = obj["metadata"]
                    objects = (meta.get("annotations") or {}).get("jobtrigger.dev/objects")
                    cm = json.loads(objects)[0]["name"] if objects else meta["labels"]["bench-cm"]
                    self.seen.setdefault(str(cm), []).append(t)


async def drive(kube: KubeClient, watch: JobWatch, run: Run, changes: int, settle: float) -> None:
    """Change ``changes`` ConfigMaps at ``run.rate`` per second, each one a distinct object."""
    before = {k: len(v) for k, v in watch.seen.items()}
    sent: list[tuple[str, float]] = []
    interval = 1.0 / run.rate
    t_next = time.perf_counter()
    stamp = time.time_ns()

    async def one(i: int) -> None:
        cm = f"cm{i % POOL}"
        t0 = time.perf_counter()
        await kube.merge_patch(f"/api/v1/namespaces/{NS}/configmaps/{cm}", {"data": {"v": f"{stamp}-{i}"}})
        sent.append((cm, t0))

    tasks = []
    for i in range(changes):
        delay = t_next - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
        t_next += interval
    await asyncio.gather(*tasks)
    deadline = time.perf_counter() + settle
    while time.perf_counter() < deadline:
        if all(len(watch.seen.get(cm, [])) - before.get(cm, 0) >= 1 for cm, _ in sent):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # let duplicates (if any) show up
    for cm, t0 in sent:
        new = watch.seen.get(cm, [])[before.get(cm, 0) :]
        if not new:
            run.missing += 1
            continue
        run.latencies_ms.append((new[0] - t0) * 1000)
        run.duplicates += len(new) - 1


async def floor_reactor(kube: KubeClient, stop: asyncio.Event) -> None:
    """The cheapest reaction: watch ConfigMaps, create a Job per change. No queue, no status, no checks."""
    path = f"/api/v1/namespaces/{NS}/configmaps"
    lst = await kube.get(path)
    rv = lst["metadata"]["resourceVersion"]
    n = 0
    async for ev in kube.watch_lines(path, {"resourceVersion": rv}, inactivity_timeout=600):
        if stop.is_set():
            return
        if ev["type"] != "MODIFIED":
            continue
        n += 1
        cm = ev["object"]["metadata"]["name"]
        job = {
            "metadata": {"name": f"floor-{cm}-{n}", "labels": {"floor": "1", "bench-cm": cm}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "b"}]}}},
        }
        asyncio.get_running_loop().create_task(kube.create(f"/apis/batch/v1/namespaces/{NS}/jobs", job))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main_async(args: argparse.Namespace) -> list[tuple[str, Run]]:
    cp: ControlPlane | None = None
    kubeconfig = os.environ.get("KUBECONFIG") if args.use_kubeconfig else None
    if kubeconfig is None:
        cp = ControlPlane(with_controller_manager=False)  # Jobs need not run: only their creation is measured
        await cp.astart()
        kubeconfig = str(cp.kubeconfig_path)
    kube = await KubeClient.from_config(kubeconfig)
    proc: subprocess.Popen[bytes] | None = None
    results: list[tuple[str, Run]] = []
    try:
        await install_crd(kube)
        with contextlib.suppress(ApiError):
            await kube.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        for i in range(POOL):
            with contextlib.suppress(ApiError):
                await kube.create(f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": f"cm{i}"}, "data": {}})
        rates = [float(r) for r in args.rates.split(",")]

        # floor
        fw = JobWatch(kube, "floor=1")
        fw.task = asyncio.create_task(fw.run())
        await fw.started.wait()
        stop = asyncio.Event()
        reactor = asyncio.create_task(floor_reactor(kube, stop))
        await asyncio.sleep(0.5)
        for rate in rates:
            r = Run(rate)
            await drive(kube, fw, r, min(args.changes, int(rate * args.seconds)) or 1, settle=30)
            results.append(("floor", r))
        stop.set()
        reactor.cancel()
        fw.task.cancel()

        # jobtrigger
        for i in range(POOL):
            with contextlib.suppress(ApiError):
                await kube.create(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", jt_body(i))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log = open(ROOT / "benchmarks" / ".controller.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobtrigger.cli",
                "controller",
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                NS,
                "--http-addr",
                "127.0.0.1:0",
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
        # wait until every JobTrigger has its baseline
        t_ready = time.perf_counter()
        while True:
            got = await kube.get(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}")
            ready = sum(
                1
                for o in got["items"]
                for c in (o.get("status") or {}).get("conditions") or []
                if c["type"] == "Ready" and c["status"] == "True"
            )
            if ready == POOL:
                break
            if proc.poll() is not None:
                raise RuntimeError("controller exited; see benchmarks/.controller.log")
            await asyncio.sleep(0.1)
        startup = time.perf_counter() - t_ready
        print(f"controller: {POOL} JobTriggers ready {startup:.2f}s after start", file=sys.stderr)
        jw = JobWatch(kube, "jobtrigger.dev/owner")
        jw.task = asyncio.create_task(jw.run())
        await jw.started.wait()
        for rate in rates:
            r = Run(rate)
            await drive(kube, jw, r, min(args.changes, int(rate * args.seconds)) or 1, settle=30)
            results.append(("jobtrigger", r))
        results.append(("rss", Run(rss_kib(proc.pid))))
        jw.task.cancel()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        await kube.close()
        if cp is not None:
            await cp.astop()
    return results


def report(results: list[tuple[str, Run]], args: argparse.Namespace) -> str:
    rss = next((r.rate for name, r in results if name == "rss"), 0)
    rows = []
    floors = {r.rate: r for name, r in results if name == "floor"}
    for name, r in results:
        if name != "jobtrigger":
            continue
        f = floors.get(r.rate)
        rows.append(
            f"| {r.rate:g}/s | {len(r.latencies_ms)} | {r.pct(50):.1f} | {r.pct(95):.1f} | {r.pct(99):.1f} | "
            f"{f.pct(50):.1f} / {f.pct(99):.1f} | {r.pct(50) - f.pct(50):+.1f} | {r.missing} | {r.duplicates} |"
            if f
            else ""
        )
    py = platform.python_version()
    return "\n".join(
        [
            "## Event→Job latency (ConfigMap change → Job exists)",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {py}; API server: local kube-apiserver "
            "v1.20.2 + etcd 3.4 (envtest, same machine); controller as a separate process, "
            f"{args.workers} workers, {POOL} JobTriggers each watching its own ConfigMap (one shared watch).",
            "Latency: PATCH returned → Job ADDED seen by a watch in the benchmark process. Floor: the same path "
            "with the controller replaced by a bare watch→create loop.",
            "",
            "| rate | changes | p50 ms | p95 ms | p99 ms | floor p50 / p99 ms | overhead p50 ms | missing | dup |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Controller RSS after the run: {rss / 1024:.1f} MiB.",
            "",
            "Run: `.venv/bin/python -m benchmarks.latency` (writes this section).",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--rates", default="1,10,100")
    p.add_argument("--changes", type=int, default=POOL, help=f"max changes per rate (<= {POOL})")
    p.add_argument("--seconds", type=float, default=20, help="duration per rate (bounded by --changes)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="a few changes; check it runs; write nothing")
    p.add_argument("--use-kubeconfig", action="store_true", help="use $KUBECONFIG instead of a local control plane")
    args = p.parse_args()
    if args.quick:
        args.rates, args.changes, args.seconds = "10", 10, 1
    results = asyncio.run(main_async(args))
    text = report(results, args)
    print(text)
    bad = [r for name, r in results if name == "jobtrigger" and (r.missing or r.duplicates)]
    if not args.quick:
        out = ROOT / "docs" / "benchmarks.md"
        current = out.read_text() if out.exists() else "# Benchmarks\n"
        current = re.sub(r"\n## Event→Job latency.*?(?=\n## |\Z)", "", current, flags=re.S)
        out.write_text(current.rstrip() + "\n\n" + text + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
