"""Idle cost of many JobTriggers: controller CPU and memory with N scheduled (and N resource) JobTriggers.

Starts a local control plane (no kube-controller-manager: no Job runs), creates N JobTriggers with a schedule
that is not due during the run (``0 0 1 1 *``), starts ``jobtrigger controller`` as a separate process, waits
until every JobTrigger is Ready, then samples the process's CPU time and RSS over an idle window, and counts the
API requests it made in that window (from its own /metrics). Schedules are delayed re-adds in the work queue, so
idle should mean ~0 CPU and 0 requests.

    .venv/bin/python -m benchmarks.idle                 # N=1000, 60 s idle window; appends to docs/benchmarks.md
    .venv/bin/python -m benchmarks.idle --quick         # N=50, 5 s; writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import controller_argv, cpu_seconds, free_port, write_section
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import KubeClient

NS = "idle"


#: version of the kube-apiserver of the run (for the report)
APISERVER = ["?"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def jt(i: int, kind: str) -> dict[str, Any]:
    triggers: dict[str, Any]
    if kind == "schedule":
        triggers = {"schedule": {"cron": "0 0 1 1 *"}}
    else:
        triggers = {
            "resources": {"watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"cm{i}", "fields": ["data"]}]}
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": f"{kind[0]}{i}", "namespace": NS},
        "spec": {
            "triggers": triggers,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
        },
    }


async def api_requests(port: int) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    return sum(float(m.group(1)) for m in re.finditer(r"^jobtrigger_api_requests_total\{[^}]*\} (\S+)$", text, re.M))


async def measure(n: int, kind: str, window: float, kubeconfig: str, kube: KubeClient) -> dict[str, float]:
    created = 0
    sem = asyncio.Semaphore(20)

    async def make(i: int) -> None:
        nonlocal created
        async with sem:
            if kind == "resources":
                await kube.create(f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": f"cm{i}"}, "data": {}})
            await kube.create(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", jt(i, kind))
            created += 1

    await asyncio.gather(*(make(i) for i in range(n)))
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        controller_argv(kubeconfig, NS, port, "--log-level", "warning"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            got = await kube.get(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}")
            ready = sum(
                1
                for o in got["items"]
                if o["metadata"]["name"][0] == kind[0]
                for c in (o.get("status") or {}).get("conditions") or []
                if c["type"] == "Ready" and c["status"] == "True"
            )
            if ready == n:
                break
            if proc.poll() is not None:
                raise RuntimeError("controller exited")
            await asyncio.sleep(0.2)
        startup = time.perf_counter() - t0
        await asyncio.sleep(2.0)  # let the last status writes settle
        cpu0, req0 = cpu_seconds(proc.pid), await api_requests(port)
        await asyncio.sleep(window)
        cpu1, req1 = cpu_seconds(proc.pid), await api_requests(port)
        return {
            "n": n,
            "startup_s": startup,
            "cpu_pct": 100 * (cpu1 - cpu0) / window,
            "requests": req1 - req0,
            "rss_mib": rss_mib(proc.pid),
            "window_s": window,
        }
    finally:
        proc.terminate()
        proc.wait(10)


async def main_async(args: argparse.Namespace) -> list[tuple[str, dict[str, float]]]:
    cp = ControlPlane(with_controller_manager=False)
    await cp.astart()
    APISERVER[0] = cp.version
    results = []
    try:
        kube = await KubeClient.from_config(str(cp.kubeconfig_path))
        await install_crd(kube)
        await kube.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        for kind in ("schedule", "resources"):
            results.append((kind, await measure(args.n, kind, args.window, str(cp.kubeconfig_path), kube)))
            # clean up between the two, so each measurement has only its own kind
            for o in (await kube.get(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"))["items"]:
                await kube.delete(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{o['metadata']['name']}")
        await kube.close()
    finally:
        await cp.astop()
    return results


def report(results: list[tuple[str, dict[str, float]]]) -> str:
    rows = [
        f"| {kind} | {r['n']:.0f} | {r['startup_s']:.1f} | {r['cpu_pct']:.2f} | {max(0, r['requests']):.0f} "
        f"| {r['rss_mib']:.1f} |"
        for kind, r in results
    ]
    window = results[0][1]["window_s"] if results else 0
    return "\n".join(
        [
            "## Idle cost of many JobTriggers",
            "",
            f"Controller as a separate process; local kube-apiserver {APISERVER[0]}; idle window {window:.0f} s after "
            "every JobTrigger is Ready. `schedule`: cron `0 0 1 1 *` (not due); `resources`: each watches its own "
            "ConfigMap by name (one shared watch for the namespace).",
            "",
            "| JobTriggers | count | start → all Ready (s) | idle CPU (% of a core) | API requests | RSS (MiB) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "Run: `.venv/bin/python -m benchmarks.idle` (writes this section).",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--window", type=float, default=60.0)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.n, args.window = 50, 5.0
    results = asyncio.run(main_async(args))
    text = report(results)
    print(text)
    if not args.quick:
        write_section("Idle cost of many JobTriggers", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
