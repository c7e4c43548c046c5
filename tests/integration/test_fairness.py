"""Per-namespace fairness in the work queue (issue #14): a namespace that floods the controller cannot starve a
quiet one. Measured on the real controller: the latency from a change in a quiet namespace to its Job, alone and
while another namespace floods the queue, with the fair queue and with a single FIFO for comparison.

The noisy namespace's syncs are slowed by a seam (40 ms each) so that a flood builds a backlog of a known size
whatever else the 2 cores are doing; the quiet namespace's syncs are untouched."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobtrigger.kube.client import KubeClient
from jobtrigger.reactor.sync import on_resources
from jobtrigger.reactor.sync.core import Sync
from tests.integration.conftest import Runner, create_cm, create_jt, jobs_of, patch_cm, wait_for, wait_ready

NOISY_TRIGGERS = 60
SLOW_SYNC_S = 0.04  # 60 keys x 40 ms / 2 workers = a 1.2 s backlog per flood
SAMPLES = 6


def watch_cm(name: str) -> dict[str, Any]:
    return {"resources": {"watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": name}], "cooldown": "0s"}}


async def quiet_latencies(kube: KubeClient, quiet: str, noisy: str, *, flood: bool, round_: str) -> list[float]:
    out = []
    for i in range(SAMPLES):
        before = len(await jobs_of(kube, quiet, "q"))
        if flood:
            await patch_cm(kube, noisy, "flood", {"data": {"v": f"{round_}-{i}"}})  # queues all noisy JobTriggers
            await asyncio.sleep(0.1)  # the watch event has fanned out into the queue
        t0 = time.monotonic()
        await patch_cm(kube, quiet, "q", {"data": {"v": f"{round_}-{i}"}})

        async def job(before: int = before) -> bool | None:
            return True if len(await jobs_of(kube, quiet, "q")) > before else None

        await wait_for(job, "the quiet namespace's Job", 30)
        out.append(time.monotonic() - t0)
        await asyncio.sleep(SLOW_SYNC_S * NOISY_TRIGGERS / 2 + 0.3)  # let the backlog drain before the next sample
    return out


@pytest.fixture
async def quiet_and_noisy(kube: KubeClient, namespace: str) -> AsyncIterator[tuple[str, str]]:
    noisy = f"{namespace}-noisy"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": noisy}})
    await create_cm(kube, namespace, "q", {"v": "0"})
    await create_cm(kube, noisy, "flood", {"v": "0"})
    await asyncio.gather(
        *(create_jt(kube, noisy, f"n{i}", watch_cm("flood"), suspend=True) for i in range(NOISY_TRIGGERS))
    )
    await create_jt(kube, namespace, "q", watch_cm("q"))
    yield namespace, noisy
    await kube.delete(f"/api/v1/namespaces/{noisy}")


async def test_a_flooding_namespace_does_not_starve_a_quiet_one(
    kube: KubeClient, kubeconfig: str, quiet_and_noisy: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    quiet, noisy = quiet_and_noisy
    real = on_resources.run_resources

    async def slow_in_noisy(s: Sync, jt: Any, interests: Any) -> None:
        if s.ns == noisy:
            await asyncio.sleep(SLOW_SYNC_S)
        await real(s, jt, interests)

    monkeypatch.setattr(on_resources, "run_resources", slow_in_noisy)
    results: dict[str, list[float]] = {}
    for label, fair, flood in (("fair, alone", True, False), ("fair, flood", True, True), ("FIFO, flood", False, True)):
        r = Runner(kubeconfig, f"{quiet},{noisy}", workers=2, fair_namespaces=fair)
        await r.start()
        try:
            await wait_ready(kube, quiet, "q")
            results[label] = await quiet_latencies(kube, quiet, noisy, flood=flood, round_=label[:4])
        finally:
            await r.stop()
    lines = [
        f"{label}: median {statistics.median(v) * 1000:.0f} ms, max {max(v) * 1000:.0f} ms over {len(v)} changes"
        for label, v in results.items()
    ]
    print(
        "\nquiet namespace, change -> Job (" + f"{NOISY_TRIGGERS} noisy JobTriggers, {SLOW_SYNC_S * 1000:.0f} ms each):"
    )
    print("\n".join(lines))
    # the FIFO makes the quiet change wait behind the whole flood; the fair queue behind about one key per worker
    assert statistics.median(results["FIFO, flood"]) > SLOW_SYNC_S * NOISY_TRIGGERS / 2 * 0.5, lines
    assert max(results["fair, flood"]) < statistics.median(results["FIFO, flood"]) / 2, lines
