"""Pod-state triggers on the real API server; the tests play the kubelet through pods/status (rows E1-E3)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import Runner, create_jt, get_jt, jobs_of, stays, wait_for, wait_jobs, wait_ready


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_pod(kube: KubeClient, ns: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    body = {
        "metadata": {"name": name, "labels": labels or {"app": "db"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    return await kube.create(f"/api/v1/namespaces/{ns}/pods", body)


async def set_ready(kube: KubeClient, ns: str, name: str, ready: bool, at: str | None = None) -> None:
    cond = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": at or now()}
    status = {
        "phase": "Running",
        "podIP": "10.1.2.3",
        "conditions": [cond],
        "containerStatuses": [
            {
                "name": "main",
                "image": "busybox",
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
        ],
    }
    await kube.merge_patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status})


def pods_trigger(*when: str, include_existing: bool = False) -> dict[str, Any]:
    return {
        "pods": {"selector": {"matchLabels": {"app": "db"}}, "when": list(when), "includeExisting": include_existing}
    }


def env_of(job: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


async def count_stays(kube: KubeClient, ns: str, owner: str, n: int, seconds: float = 1.5) -> bool:
    async def probe() -> bool:
        return len(await jobs_of(kube, ns, owner)) == n

    return await stays(probe, seconds)


async def test_each_transition_runs_one_job_per_pod(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "t", pods_trigger("Created", "Ready", "NotReady", "Deleted"), history=50)
    await wait_ready(kube, namespace, "t")
    await make_pod(kube, namespace, "db-0")
    await make_pod(kube, namespace, "web-0", labels={"app": "web"})  # not selected
    jobs = await wait_jobs(kube, namespace, "t", 1)
    assert jobs[0]["metadata"]["labels"]["jobtrigger.dev/affected-pod"] == "db-0"
    env = env_of(jobs[0])
    assert env["JOBTRIGGER_POD_NAME"] == "db-0" and env["JOBTRIGGER_POD_STATE"] == "Created"
    assert env["JOBTRIGGER_TRIGGER"] == "pods"

    await set_ready(kube, namespace, "db-0", True, "2026-01-01T00:00:01Z")
    jobs = await wait_jobs(kube, namespace, "t", 2)
    assert env_of(jobs[1])["JOBTRIGGER_POD_STATE"] == "Ready"
    assert env_of(jobs[1])["JOBTRIGGER_POD_IP"] == "10.1.2.3"
    await set_ready(kube, namespace, "db-0", False, "2026-01-01T00:00:02Z")
    await set_ready(kube, namespace, "db-0", True, "2026-01-01T00:00:03Z")  # a second Ready: its own Job
    jobs = await wait_jobs(kube, namespace, "t", 4)
    assert [env_of(j)["JOBTRIGGER_POD_STATE"] for j in jobs] == ["Created", "Ready", "NotReady", "Ready"]
    await kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/db-0", query={"gracePeriodSeconds": 0})
    jobs = await wait_jobs(kube, namespace, "t", 5)
    assert env_of(jobs[4])["JOBTRIGGER_POD_STATE"] == "Deleted"
    assert await count_stays(kube, namespace, "t", 5)


async def test_restart_neither_repeats_nor_loses_transitions(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await make_pod(kube, namespace, "old")
    await set_ready(kube, namespace, "old", True)  # ready before the JobTrigger existed: no Job
    await create_jt(kube, namespace, "t", pods_trigger("Ready", "Deleted"), history=50)
    await wait_ready(kube, namespace, "t")
    await make_pod(kube, namespace, "a")
    await set_ready(kube, namespace, "a", True)
    await wait_jobs(kube, namespace, "t", 1)

    async def watermark() -> str | None:
        return (await get_jt(kube, namespace, "t"))["status"].get("podWatermark")

    await wait_for(watermark, "status.podWatermark")
    await runner.stop()
    # while the controller is down: b becomes ready, the old pod is deleted
    await make_pod(kube, namespace, "b")
    await set_ready(kube, namespace, "b", True)
    await kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/old", query={"gracePeriodSeconds": 0})
    await runner.start()
    try:
        jobs = await wait_jobs(kube, namespace, "t", 3)
    except AssertionError:
        jobs = await jobs_of(kube, namespace, "t")
        st = (await get_jt(kube, namespace, "t"))["status"]
        raise AssertionError(
            [(env_of(j)["JOBTRIGGER_POD_STATE"], env_of(j)["JOBTRIGGER_POD_NAME"]) for j in jobs], st
        ) from None
    seen = sorted((env_of(j)["JOBTRIGGER_POD_STATE"], env_of(j)["JOBTRIGGER_POD_NAME"]) for j in jobs)
    assert ("Ready", "a") in seen and ("Ready", "b") in seen
    assert any(s == "Deleted" for s, _ in seen)
    await runner.restart()
    assert await count_stays(kube, namespace, "t", 3, 2.0)


async def test_include_existing(kube: KubeClient, namespace: str, runner: Runner) -> None:
    for n in ("x", "y"):
        await make_pod(kube, namespace, n)
        await set_ready(kube, namespace, n, True)
    await create_jt(kube, namespace, "t", pods_trigger("Ready", include_existing=True))
    jobs = await wait_jobs(kube, namespace, "t", 2)
    assert sorted(env_of(j)["JOBTRIGGER_POD_NAME"] for j in jobs) == ["x", "y"]
    assert await count_stays(kube, namespace, "t", 2)


async def test_burst_of_pods_each_get_their_job(kube: KubeClient, namespace: str, runner: Runner) -> None:
    n = 100
    await create_jt(kube, namespace, "t", pods_trigger("Created"), history=1000)
    await wait_ready(kube, namespace, "t")
    t0 = time.monotonic()
    sem = asyncio.Semaphore(10)

    async def one(i: int) -> None:
        async with sem:
            await make_pod(kube, namespace, f"p{i}")

    await asyncio.gather(*(one(i) for i in range(n)))
    t_created = time.monotonic() - t0
    jobs = await wait_jobs(kube, namespace, "t", n, timeout=60)
    elapsed = time.monotonic() - t0
    names = {env_of(j)["JOBTRIGGER_POD_NAME"] for j in jobs}
    assert names == {f"p{i}" for i in range(n)}
    assert await count_stays(kube, namespace, "t", n, 1.0)
    print(f"\n{n} pods created in {t_created:.2f}s, {n} Jobs after {elapsed:.2f}s: {n / elapsed:.0f} transitions/s")
