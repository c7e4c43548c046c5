"""Two controller processes, one leader: kill the leader, the standby takes over; no occurrence lost or doubled."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import aiohttp

from benchmarks.common import controller_argv
from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    create_cm,
    create_jt,
    free_port,
    jobs_of,
    patch_cm,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)

LEASE = ["--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5"]


async def _controller(kubeconfig: str, ns: str, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *controller_argv(kubeconfig, ns, port, "--leader-elect", "--leader-election-namespace", ns, *LEASE),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _is_leader(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            return "jobtrigger_leader 1.0" in await r.text()
    except aiohttp.ClientError:
        return False


async def test_failover_keeps_exactly_once(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    ports = [free_port(), free_port()]
    procs = [await _controller(kubeconfig, namespace, p) for p in ports]
    try:

        async def leader() -> int | None:
            found = [i for i, p in enumerate(ports) if await _is_leader(p)]
            return found[0] + 1 if len(found) == 1 else None

        first = (await wait_for(leader, "exactly one leader", timeout=30)) - 1
        other = 1 - first
        await create_cm(kube, namespace, "cfg", {"v": "0"})
        await create_jt(
            kube,
            namespace,
            "t",
            {"resources": {"cooldown": "0s", "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]}},
            history=20,
        )
        await wait_ready(kube, namespace, "t")
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "1"}})
        await wait_jobs(kube, namespace, "t", 1)

        procs[first].send_signal(signal.SIGKILL)  # no lease release: the standby must wait for expiry
        t_kill = time.monotonic()
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "2"}})  # during the hand-over

        async def took_over() -> bool:
            return await _is_leader(ports[other])

        await wait_for(took_over, "the standby became leader", timeout=30)
        failover = time.monotonic() - t_kill
        await wait_jobs(kube, namespace, "t", 2, timeout=30)

        async def two() -> bool:
            return len(await jobs_of(kube, namespace, "t")) == 2

        assert await stays(two, 2.0)
        assert failover < 4 + 3, f"fail-over took {failover:.1f}s"  # lease duration + slack
        print(f"\nleader fail-over after SIGKILL: {failover:.2f}s (lease 4s)")

        # a clean stop releases the lease: the restarted first process takes over at once
        procs[first] = await _controller(kubeconfig, namespace, ports[first])
        t_stop = time.monotonic()
        procs[other].send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(procs[other].wait(), 15) == 0

        async def back() -> bool:
            return await _is_leader(ports[first])

        await wait_for(back, "hand-over after SIGTERM", timeout=30)
        print(f"hand-over after SIGTERM (lease released): {time.monotonic() - t_stop:.2f}s")
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
