"""successfulJobsHistoryLimit / failedJobsHistoryLimit with Jobs finished by the real Job controller."""

from __future__ import annotations

from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import Runner, create_jt, finish_job_pods, get_jt, jobs_of, wait_for, wait_ready
from tests.integration.test_concurrency import request_run


async def finish(kube: KubeClient, ns: str, job: str, phase: str) -> None:
    await finish_job_pods(kube, ns, job, phase)
    key = "succeeded" if phase == "Succeeded" else "failed"

    async def done() -> bool:
        try:
            got = await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{job}")
        except ApiError as e:
            return e.status == 404  # already pruned (successfulJobsHistoryLimit: 0)
        conds = (got.get("status") or {}).get("conditions") or []
        return bool((got.get("status") or {}).get(key)) and any(c["status"] == "True" for c in conds)

    await wait_for(done, f"Job {job} {phase}", timeout=30)


async def test_separate_limits_for_succeeded_and_failed(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "t", {"manual": {}}, successfulJobsHistoryLimit=0, failedJobsHistoryLimit=1)
    await wait_ready(kube, namespace, "t")
    names: list[str] = []
    for i, phase in enumerate(["Failed", "Failed", "Succeeded"]):
        await request_run(kube, namespace, "t", f"run{i}")

        async def new_job(i: int = i) -> str | None:
            jobs = [j["metadata"]["name"] for j in await jobs_of(kube, namespace, "t")]
            fresh = [n for n in jobs if n not in names]
            return fresh[0] if fresh else None

        name = await wait_for(new_job, f"Job for run{i}")
        names.append(name)
        await finish(kube, namespace, name, phase)

    async def pruned() -> list[str] | None:
        left = [
            j["metadata"]["name"]
            for j in await jobs_of(kube, namespace, "t")
            if not j["metadata"].get("deletionTimestamp")
        ]
        # the succeeded Job is deleted at once (limit 0, QuarksJob style); of the failed ones the newest stays
        return left if left == [names[1]] else None

    await wait_for(pruned, "only the newest failed Job left", timeout=30)

    async def last_succeeded() -> bool:
        # the status is written after the prune (same sync): wait for it, do not read it right away
        st = (await get_jt(kube, namespace, "t"))["status"]
        return st.get("lastJobName") == names[2] and st.get("lastJobStatus") == "Succeeded"

    await wait_for(last_succeeded, f"status.lastJobName {names[2]} Succeeded")
