"""concurrencyPolicy with overlapping runs; Jobs finish through the real Job controller."""

from __future__ import annotations

from typing import Any

from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import (
    Runner,
    create_cm,
    create_jt,
    finish_job_pods,
    get_jt,
    jobs_of,
    patch_cm,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)
from tests.integration.events import wait_event


async def request_run(kube: KubeClient, ns: str, name: str, token: str) -> None:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{name}"
    await kube.merge_patch(path, {"metadata": {"annotations": {"jobtrigger.dev/run-requested": token}}})


async def served(kube: KubeClient, ns: str, name: str, token: str) -> None:
    async def probe() -> bool:
        return (await get_jt(kube, ns, name))["status"].get("lastRunRequest") == token

    await wait_for(probe, f"token {token} served")


async def complete(kube: KubeClient, ns: str, job: str) -> None:
    await finish_job_pods(kube, ns, job)

    async def done() -> bool:
        # the Complete condition, not status.succeeded: newer Job controllers count the pod first and add the
        # condition in a later write, and the controller takes a Job as finished by its condition
        got = await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{job}")
        conds = (got.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conds)

    await wait_for(done, f"Job {job} complete", timeout=30)


async def count_stays(kube: KubeClient, ns: str, owner: str, n: int, seconds: float = 1.5) -> bool:
    async def probe() -> bool:
        return len(await jobs_of(kube, ns, owner)) == n

    return await stays(probe, seconds)


async def test_forbid_skips_while_active(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "t", {"manual": {}}, concurrencyPolicy="Forbid")
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "a")
    first = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    await request_run(kube, namespace, "t", "b")
    await served(kube, namespace, "t", "b")
    assert await count_stays(kube, namespace, "t", 1)
    jt = await get_jt(kube, namespace, "t")
    assert first in jt["status"]["lastSkipped"]["reason"]
    await wait_event(kube, namespace, "t", "RunSkipped")
    await complete(kube, namespace, first)

    async def seen_done() -> bool:
        # the controller learns it from its own Job watch: a run requested before that would be skipped (Forbid)
        st = (await get_jt(kube, namespace, "t"))["status"]
        return st.get("lastJobName") == first and st.get("lastJobStatus") == "Succeeded"

    try:
        await wait_for(seen_done, f"the controller saw {first} finish")
    except AssertionError as e:
        job = await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{first}")
        status = (await get_jt(kube, namespace, "t"))["status"]
        raise AssertionError(f"{e}; status {status}; job {job['status']}") from None
    await request_run(kube, namespace, "t", "c")
    await wait_jobs(kube, namespace, "t", 2)


async def test_replace_deletes_the_active_job(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "t", {"manual": {}}, concurrencyPolicy="Replace")
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "a")
    first = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    await request_run(kube, namespace, "t", "b")

    async def replaced() -> list[dict[str, Any]] | None:
        jobs = await jobs_of(kube, namespace, "t")
        live = [j for j in jobs if not j["metadata"].get("deletionTimestamp")]
        names = [j["metadata"]["name"] for j in live]
        return live if len(names) == 1 and names[0] != first else None

    await wait_for(replaced, "the first Job replaced by a second one")
    try:
        got = await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{first}")
        assert got["metadata"].get("deletionTimestamp")
    except ApiError as e:
        assert e.status == 404


async def test_queue_runs_exactly_one_more_after_the_active_job(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    await create_cm(kube, namespace, "cfg", {"v": "0"})
    watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]
    await create_jt(kube, namespace, "t", {"resources": {"cooldown": "0s", "watch": watch}}, concurrencyPolicy="Queue")
    await wait_ready(kube, namespace, "t")
    await patch_cm(kube, namespace, "cfg", {"data": {"v": "1"}})
    first = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    for v in ("2", "3", "4"):  # three changes while the first Job runs
        await patch_cm(kube, namespace, "cfg", {"data": {"v": v}})

    async def queued() -> bool:
        return "queued behind" in ((await get_jt(kube, namespace, "t"))["status"].get("pending") or "")

    await wait_for(queued, "status.pending = queued")
    assert await count_stays(kube, namespace, "t", 1)
    await complete(kube, namespace, first)
    jobs = await wait_jobs(kube, namespace, "t", 2, timeout=30)
    assert await count_stays(kube, namespace, "t", 2, 2.0), "the queued changes must coalesce into one run"
    assert jobs[1]["metadata"]["annotations"]["jobtrigger.dev/reason"].endswith("updated (*)")

    async def not_pending() -> bool:
        return "pending" not in (await get_jt(kube, namespace, "t"))["status"]

    await wait_for(not_pending, "status.pending cleared")


async def test_controller_wide_cap_defers_and_loses_nothing(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    runner = Runner(kubeconfig, namespace, max_active_jobs=2)
    await runner.start()
    try:
        names = [f"t{i}" for i in range(4)]
        for n in names:
            await create_jt(kube, namespace, n, {"manual": {}})
        for n in names:
            await wait_ready(kube, namespace, n)
            await request_run(kube, namespace, n, "go")

        async def all_jobs() -> list[dict[str, Any]]:
            got = await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")
            return list(got.get("items") or [])

        async def two() -> list[dict[str, Any]] | None:
            jobs = await all_jobs()
            return jobs if len(jobs) == 2 else None

        first = await wait_for(two, "2 Jobs (the cap)")

        async def still_two() -> bool:
            return len(await all_jobs()) == 2

        async def two_waiting() -> list[str] | None:
            # status.pending is written at the end of the capped sync: awaited, not read once
            waiting = [
                n for n in names if "waiting" in ((await get_jt(kube, namespace, n))["status"].get("pending") or "")
            ]
            return waiting if len(waiting) == 2 else None

        await wait_for(two_waiting, "two JobTriggers waiting for the cap")
        assert await stays(still_two, 1.5)
        for job in first:
            await complete(kube, namespace, job["metadata"]["name"])

        async def four() -> list[dict[str, Any]] | None:
            jobs = await all_jobs()
            return jobs if len(jobs) == 4 else None

        jobs = await wait_for(four, "the 2 deferred runs after the first Jobs finished", timeout=30)
        assert {j["metadata"]["labels"]["jobtrigger.dev/owner"] for j in jobs} == set(names)
    finally:
        await runner.stop()
