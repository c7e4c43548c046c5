"""Scale and throughput of the controller on a local real API server.

- **Memory per watched object**: controller RSS with a pod trigger watching N pods (1k, 10k), minus the RSS of
  the same controller with nothing to watch; and the time from controller start to a synced state.
- **Throughput**: C distinct ConfigMaps (one JobTrigger each) changed as fast as the benchmark can, with 1 and
  with 4 workers: changes turned into Jobs per second.
- **API economy**: API requests the controller made per Job in the throughput run (its own
  ``jobtrigger_api_requests_total``), and requests during an idle window (no LIST polling).

    .venv/bin/python -m benchmarks.scale              # 1k and 10k pods, 300 changes; appends to docs/benchmarks.md
    .venv/bin/python -m benchmarks.scale --quick      # 200 pods, 50 changes; writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from typing import Any

from benchmarks.common import controller_argv, cpu_seconds, free_port, write_section
from benchmarks.idle import api_requests, rss_mib
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient


class Controller:
    def __init__(self, kubeconfig: str, ns: str, workers: int = 4):
        self.port = free_port()
        self.proc = subprocess.Popen(
            controller_argv(kubeconfig, ns, self.port, "--log-level", "warning", "--workers", str(workers)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


async def bulk(n: int, make: Any, parallel: int = 20) -> None:
    sem = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        async with sem:
            await make(i)

    await asyncio.gather(*(one(i) for i in range(n)))


#: version of the kube-apiserver of the run (for the report)
APISERVER = ["?"]


def jt_body(ns: str, name: str, triggers: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "triggers": triggers,
            "history": 100000,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
        },
    }


async def ready_count(kube: KubeClient, ns: str) -> int:
    got = await kube.get(f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}")
    return sum(
        1
        for o in got["items"]
        for c in (o.get("status") or {}).get("conditions") or []
        if c["type"] == "Ready" and c["status"] == "True"
    )


async def memory_per_pod(kube: KubeClient, kubeconfig: str, n: int) -> dict[str, float]:
    ns = f"pods-{n}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})

    async def pod(i: int) -> None:
        body = {
            "metadata": {"name": f"p{i}", "labels": {"app": "w"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        await kube.create(f"/api/v1/namespaces/{ns}/pods", body)

    t0 = time.perf_counter()
    await bulk(n, pod)
    create_s = time.perf_counter() - t0
    # baseline: the controller with nothing to watch in this namespace
    c = Controller(kubeconfig, ns)
    try:
        await asyncio.sleep(4.0)
        base = rss_mib(c.proc.pid)
    finally:
        c.stop()
    await kube.create(
        f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}",
        jt_body(ns, "pods", {"pods": {"selector": {"matchLabels": {"app": "w"}}, "when": ["Ready"]}}),
    )
    c = Controller(kubeconfig, ns)
    try:
        t0 = time.perf_counter()
        while await ready_count(kube, ns) < 1:
            await asyncio.sleep(0.1)
        synced_s = time.perf_counter() - t0
        await asyncio.sleep(3.0)
        rss = rss_mib(c.proc.pid)
    finally:
        c.stop()
    return {
        "pods": n,
        "base_mib": base,
        "rss_mib": rss,
        "bytes_per_pod": (rss - base) * 1024 * 1024 / n,
        "synced_s": synced_s,
        "create_s": create_s,
    }


async def throughput(kube: KubeClient, kubeconfig: str, changes: int, workers: int) -> dict[str, float]:
    ns = f"tp-{workers}"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})

    async def setup(i: int) -> None:
        await kube.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": f"cm{i}"}, "data": {"v": "0"}})
        watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"cm{i}", "fields": ["data"]}]
        await kube.create(
            f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}",
            jt_body(ns, f"t{i}", {"resources": {"cooldown": "0s", "watch": watch}}),
        )

    await bulk(changes, setup)
    c = Controller(kubeconfig, ns, workers)
    try:
        while await ready_count(kube, ns) < changes:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        req0, cpu0 = await api_requests(c.port), cpu_seconds(c.proc.pid)
        t0 = time.perf_counter()

        async def change(i: int) -> None:
            await kube.merge_patch(f"/api/v1/namespaces/{ns}/configmaps/cm{i}", {"data": {"v": "1"}})

        await bulk(changes, change, parallel=32)
        t_sent = time.perf_counter() - t0
        while True:
            jobs = (await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector="jobtrigger.dev/owner"))[
                "items"
            ]
            if len(jobs) >= changes:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(2.0)  # status writes and Events of the last ones
        req1, cpu1 = await api_requests(c.port), cpu_seconds(c.proc.pid)
        await asyncio.sleep(10.0)
        req2 = await api_requests(c.port)
    finally:
        c.stop()
    return {
        "workers": workers,
        "changes": changes,
        "sent_s": t_sent,
        "elapsed_s": elapsed,
        "jobs_per_s": changes / elapsed,
        "requests_per_job": (req1 - req0) / changes,
        "cpu_ms_per_job": 1000 * (cpu1 - cpu0) / changes,
        "idle_requests_10s": req2 - req1,
    }


async def main_async(args: argparse.Namespace) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    cp = ControlPlane(with_controller_manager=False)
    await cp.astart()
    APISERVER[0] = cp.version
    try:
        kube = await KubeClient.from_config(str(cp.kubeconfig_path))
        await install_crd(kube)
        mem = [await memory_per_pod(kube, str(cp.kubeconfig_path), n) for n in args.pods]
        tp = [await throughput(kube, str(cp.kubeconfig_path), args.changes, w) for w in (1, 4)]
        await kube.close()
    except ApiError:
        raise
    finally:
        await cp.astop()
    return mem, tp


def report(mem: list[dict[str, float]], tp: list[dict[str, float]]) -> str:
    return "\n".join(
        [
            "## Scale, memory and throughput",
            "",
            f"Controller as a separate process against a local kube-apiserver {APISERVER[0]} "
            "(etcd on the same 2 cores).",
            "",
            "| watched pods | controller RSS idle / watching (MiB) | bytes per watched pod | start → synced (s) |",
            "|---|---|---|---|",
            *[
                f"| {m['pods']:.0f} | {m['base_mib']:.1f} / {m['rss_mib']:.1f} | {m['bytes_per_pod']:.0f} "
                f"| {m['synced_s']:.2f} |"
                for m in mem
            ],
            "",
            "Throughput: N ConfigMaps (one JobTrigger each) all changed at once (32 in flight); time until every Job "
            "exists. API requests and CPU per Job are the controller's own (its metrics, /proc).",
            "",
            "| workers | changes | Jobs/s | API requests per Job | controller CPU ms per Job | requests in 10 s idle |",
            "|---|---|---|---|---|---|",
            *[
                f"| {t['workers']:.0f} | {t['changes']:.0f} | {t['jobs_per_s']:.0f} | {t['requests_per_job']:.2f} "
                f"| {t['cpu_ms_per_job']:.1f} | {t['idle_requests_10s']:.0f} |"
                for t in tp
            ],
            "",
            "Run: `.venv/bin/python -m benchmarks.scale` (writes this section).",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pods", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000])
    p.add_argument("--changes", type=int, default=300)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.pods, args.changes = [200], 50
    mem, tp = asyncio.run(main_async(args))
    text = report(mem, tp)
    print(text)
    if not args.quick:
        write_section("Scale, memory and throughput", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
