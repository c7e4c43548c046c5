"""Pod-state triggers on the real API server (rows E1-E3).

With KWOK (the default control plane) the pods are scheduled by kube-scheduler onto the KWOK node and KWOK moves
them through Running/Ready; a readiness flip is asked for with the `envtest.jobtrigger.dev/ready` annotation (see
jobtrigger/envtest_stages/kwok.yaml). Without KWOK (an existing cluster) the tests play the kubelet through
pods/status.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    KWOK_CRASH,
    KWOK_READY,
    Runner,
    create_jt,
    get_jt,
    jobs_of,
    on_kwok_node,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def make_pod(
    kube: KubeClient, ns: str, name: str, labels: dict[str, str] | None = None, *, kwok: bool = False
) -> dict[str, Any]:
    """A pod; with ``kwok`` it tolerates the KWOK node, so it is scheduled and becomes Running/Ready by itself."""
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    body = {"metadata": {"name": name, "labels": labels or {"app": "db"}}, "spec": on_kwok_node(spec) if kwok else spec}
    return await kube.create(f"/api/v1/namespaces/{ns}/pods", body)


async def pod_ready(kube: KubeClient, ns: str, name: str, ready: bool = True) -> dict[str, Any]:
    """Wait until the pod's Ready condition is ``ready``; returns the pod."""

    async def probe() -> dict[str, Any] | None:
        pod = await kube.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        conds = (pod.get("status") or {}).get("conditions") or []
        want = "True" if ready else "False"
        return pod if any(c["type"] == "Ready" and c["status"] == want for c in conds) else None

    return await wait_for(probe, f"pod {name} Ready={ready}")


async def set_ready(kube: KubeClient, ns: str, name: str, ready: bool, at: str | None = None, *, kwok: bool) -> None:
    """Make the pod (not) ready: on KWOK by the annotation its stages read (like a readiness probe flipping),
    otherwise by writing what a kubelet would into pods/status. Returns once the pod shows it."""
    if kwok:
        value = None if ready else "false"
        await kube.merge_patch(
            f"/api/v1/namespaces/{ns}/pods/{name}", {"metadata": {"annotations": {KWOK_READY: value}}}
        )
        await pod_ready(kube, ns, name, ready)
        return
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


def states(jobs: list[dict[str, Any]]) -> list[str]:
    return [env_of(j)["JOBTRIGGER_POD_STATE"] for j in jobs]


async def test_each_transition_runs_one_job_per_pod(
    kube: KubeClient, namespace: str, runner: Runner, kwok: bool
) -> None:
    await create_jt(kube, namespace, "t", pods_trigger("Created", "Ready", "NotReady", "Deleted"), history=50)
    await wait_ready(kube, namespace, "t")
    await make_pod(kube, namespace, "db-0", kwok=kwok)
    await make_pod(kube, namespace, "web-0", labels={"app": "web"}, kwok=kwok)  # not selected
    if kwok:  # scheduled and made Ready by KWOK right away: Created and Ready, in either order of observation
        jobs = await wait_jobs(kube, namespace, "t", 2)
        assert sorted(states(jobs)) == ["Created", "Ready"]
        pod = await pod_ready(kube, namespace, "db-0")
        assert pod["spec"]["nodeName"] == "kwok-node-0" and pod["status"]["phase"] == "Running"
        ip = pod["status"]["podIP"]
    else:
        jobs = await wait_jobs(kube, namespace, "t", 1)
        await set_ready(kube, namespace, "db-0", True, "2026-01-01T00:00:01Z", kwok=False)
        jobs = await wait_jobs(kube, namespace, "t", 2)
        ip = "10.1.2.3"
    created = next(j for j in jobs if env_of(j)["JOBTRIGGER_POD_STATE"] == "Created")
    assert created["metadata"]["labels"]["jobtrigger.dev/affected-pod"] == "db-0"
    env = env_of(created)
    assert env["JOBTRIGGER_POD_NAME"] == "db-0" and env["JOBTRIGGER_TRIGGER"] == "pods"
    ready = next(j for j in jobs if env_of(j)["JOBTRIGGER_POD_STATE"] == "Ready")
    assert env_of(ready)["JOBTRIGGER_POD_IP"] == ip and ip
    t_ready = time.monotonic()
    await set_ready(kube, namespace, "db-0", False, "2026-01-01T00:00:02Z", kwok=kwok)
    await wait_jobs(kube, namespace, "t", 3)
    # a second Ready is its own occurrence, told apart by the Ready condition's lastTransitionTime (1 s resolution)
    await asyncio.sleep(max(0.0, 1.1 - (time.monotonic() - t_ready)))
    await set_ready(kube, namespace, "db-0", True, "2026-01-01T00:00:03Z", kwok=kwok)
    jobs = await wait_jobs(kube, namespace, "t", 4)
    assert sorted(states(jobs)[:2]) == ["Created", "Ready"] and states(jobs)[2:] == ["NotReady", "Ready"]
    await kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/db-0", query={"gracePeriodSeconds": 0})
    jobs = await wait_jobs(kube, namespace, "t", 5)
    assert env_of(jobs[4])["JOBTRIGGER_POD_STATE"] == "Deleted"
    assert await count_stays(kube, namespace, "t", 5)


async def become_ready(kube: KubeClient, ns: str, name: str, kwok: bool) -> None:
    """A new pod that becomes ready: KWOK does it by itself; without KWOK the test writes the status."""
    await make_pod(kube, ns, name, kwok=kwok)
    if kwok:
        await pod_ready(kube, ns, name)
    else:
        await set_ready(kube, ns, name, True, kwok=False)


async def test_restart_neither_repeats_nor_loses_transitions(
    kube: KubeClient, namespace: str, runner: Runner, kwok: bool
) -> None:
    await become_ready(kube, namespace, "old", kwok)  # ready before the JobTrigger existed: no Job
    await create_jt(kube, namespace, "t", pods_trigger("Ready", "Deleted"), history=50)
    await wait_ready(kube, namespace, "t")
    await become_ready(kube, namespace, "a", kwok)
    await wait_jobs(kube, namespace, "t", 1)

    async def watermark() -> str | None:
        return (await get_jt(kube, namespace, "t"))["status"].get("podWatermark")

    await wait_for(watermark, "status.podWatermark")
    await runner.stop()
    # while the controller is down: b becomes ready, the old pod is deleted
    await become_ready(kube, namespace, "b", kwok)
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


async def test_include_existing(kube: KubeClient, namespace: str, runner: Runner, kwok: bool) -> None:
    for n in ("x", "y"):
        await become_ready(kube, namespace, n, kwok)
    await create_jt(kube, namespace, "t", pods_trigger("Ready", include_existing=True))
    jobs = await wait_jobs(kube, namespace, "t", 2)
    assert sorted(env_of(j)["JOBTRIGGER_POD_NAME"] for j in jobs) == ["x", "y"]
    assert await count_stays(kube, namespace, "t", 2)


async def test_burst_of_pods_each_get_their_job(kube: KubeClient, namespace: str, runner: Runner, kwok: bool) -> None:
    """100 pods at once; on KWOK they are also scheduled and become Ready (status updates that must not add Jobs)."""
    n = 100
    await create_jt(kube, namespace, "t", pods_trigger("Created"), history=1000)
    await wait_ready(kube, namespace, "t")
    t0 = time.monotonic()
    sem = asyncio.Semaphore(10)

    async def one(i: int) -> None:
        async with sem:
            await make_pod(kube, namespace, f"p{i}", kwok=kwok)

    await asyncio.gather(*(one(i) for i in range(n)))
    t_created = time.monotonic() - t0
    jobs = await wait_jobs(kube, namespace, "t", n, timeout=60)
    elapsed = time.monotonic() - t0
    names = {env_of(j)["JOBTRIGGER_POD_NAME"] for j in jobs}
    assert names == {f"p{i}" for i in range(n)}
    assert await count_stays(kube, namespace, "t", n, 1.0)
    print(f"\n{n} pods created in {t_created:.2f}s, {n} Jobs after {elapsed:.2f}s: {n / elapsed:.0f} transitions/s")


async def test_crashes_oom_kills_and_restarts_on_kwok(
    kube: KubeClient, namespace: str, runner: Runner, kwok: bool
) -> None:
    """OOMKilled, CrashLoopBackOff and Restarted as a kubelet reports them (KWOK stages pod-container-crash and
    pod-container-restart): one Job per occurrence, none for the restart that follows, new ones for a second
    crash."""
    if not kwok:
        pytest.skip("needs KWOK: the crash is produced by its stages")
    await create_jt(kube, namespace, "t", pods_trigger("OOMKilled", "CrashLoopBackOff", "Restarted"), history=50)
    await wait_ready(kube, namespace, "t")
    await become_ready(kube, namespace, "db-0", kwok)
    path = f"/api/v1/namespaces/{namespace}/pods/db-0"

    async def crash(reason: str | None) -> None:
        await kube.merge_patch(path, {"metadata": {"annotations": {KWOK_CRASH: reason}}})

    await crash("OOMKilled")
    jobs = await wait_jobs(kube, namespace, "t", 3)
    assert sorted(states(jobs)) == ["CrashLoopBackOff", "OOMKilled", "Restarted"]
    pod = await kube.get(path)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1 and cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["reason"] == "OOMKilled" and cs["lastState"]["terminated"]["exitCode"] == 137
    await crash(None)  # the container runs again: no new occurrence of any of the three states
    await pod_ready(kube, namespace, "db-0")
    assert await count_stays(kube, namespace, "t", 3)
    await crash("Error")  # a second crash, not an OOM kill: Restarted and CrashLoopBackOff again
    jobs = await wait_jobs(kube, namespace, "t", 5)
    assert sorted(states(jobs)[3:]) == ["CrashLoopBackOff", "Restarted"]
    assert await count_stays(kube, namespace, "t", 5)
