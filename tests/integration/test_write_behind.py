"""Status write-behind (issue #16): run records wait for a later status write when the status budget is spent,
and exactly-once still holds through a crash (the baseline is read back from the newest Job), a SIGTERM (the
deferred fields are written before exit) and pruning (no Job goes while the status is behind).

The budget is emptied by hand (``bucket.tokens = 0`` with a refill rate near 0) so that the deferral does not depend
on timing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from typing import Any

from benchmarks.common import controller_argv
from jobtrigger.jobs.builder import ANNOTATION_BASELINE
from jobtrigger.kube.client import KubeClient
from jobtrigger.reactor.controller import Controller
from tests.integration.conftest import (
    Runner,
    create_cm,
    create_jt,
    finish_job_pods,
    free_port,
    get_jt,
    jobs_of,
    patch_cm,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)
from tests.integration.test_resource_trigger import cm_watch, no_more_jobs, resources

NO_REFILL = {"status_qps": 0.0001, "status_burst": 1}


def spend_budget(ctl: Controller) -> None:
    ctl.write_behind.bucket.tokens = 0.0


async def status_of(kube: KubeClient, ns: str, name: str) -> dict[str, Any]:
    return (await get_jt(kube, ns, name)).get("status") or {}


async def test_deferred_runs_are_recorded_on_the_jobs_and_written_later(
    kube: KubeClient, namespace: str, kubeconfig: str
) -> None:
    runner = Runner(kubeconfig, namespace, status_qps=4.0, status_burst=1)
    ctl = await runner.start()
    try:
        names = [f"t{i}" for i in range(6)]
        for n in names:
            await create_cm(kube, namespace, n, {"v": "a"})
            await create_jt(kube, namespace, n, resources(cm_watch(n, fields=["data"])))
        for n in names:
            await wait_ready(kube, namespace, n)
        spend_budget(ctl)
        await asyncio.gather(*(patch_cm(kube, namespace, n, {"data": {"v": "b"}}) for n in names))
        jobs = {n: (await wait_jobs(kube, namespace, n, 1))[0] for n in names}
        # each Job carries the baseline it ran for
        for n, job in jobs.items():
            carried = json.loads(job["metadata"]["annotations"][ANNOTATION_BASELINE])
            assert [h["name"] for h in carried["hashes"]] == [n], carried

        async def all_written() -> bool:
            statuses = [await status_of(kube, namespace, n) for n in names]
            return all(st.get("resourceRuns") == 1 and st.get("lastJobName") for st in statuses)

        await wait_for(all_written, "every run recorded in its JobTrigger's status", timeout=30)
        for n, job in jobs.items():
            st = await status_of(kube, namespace, n)
            carried = json.loads(job["metadata"]["annotations"][ANNOTATION_BASELINE])
            assert st["resourceHashes"] == carried["hashes"]  # the same baseline, from the status or the Job
            assert st["lastJobName"] == job["metadata"]["name"]
        assert not ctl.write_behind.pending() and not ctl.unwritten_run
        for n in names:
            assert await no_more_jobs(kube, namespace, n, 1, 0.3)
    finally:
        await runner.stop()


async def test_a_deferred_run_is_read_back_from_its_job_after_a_crash(
    kube: KubeClient, namespace: str, kubeconfig: str
) -> None:
    """A→B (Job for B, status deferred) → crash → back to A: the restarted controller must run A again. Without
    the baseline on the Job it compared A with the status's older baseline A and ran nothing."""
    runner = Runner(kubeconfig, namespace, **NO_REFILL)
    ctl = await runner.start()
    try:
        await create_cm(kube, namespace, "cfg", {"v": "a"})
        await create_jt(kube, namespace, "t", resources(cm_watch("cfg", fields=["data"])))
        await wait_ready(kube, namespace, "t")
        spend_budget(ctl)
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "b"}})
        first = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
        await wait_for(lambda: _true(ctl.write_behind.behind((namespace, "t"))), "the status write deferred")

        async def unrecorded() -> bool:
            return "resourceRuns" not in await status_of(kube, namespace, "t")

        assert await stays(unrecorded, 0.5), "the run must not be in the status yet (the test's premise)"
        await runner.stop()  # a crash: the deferred fields are gone with the process
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "a"}})
        await runner.start()
        jobs = await wait_jobs(kube, namespace, "t", 2)
        second = next(j for j in jobs if j["metadata"]["name"] != first)
        assert second["metadata"]["annotations"]["jobtrigger.dev/occurrence"].startswith("resources/2/")

        async def recorded() -> dict[str, Any] | None:
            st = await status_of(kube, namespace, "t")
            return st if st.get("resourceRuns") == 2 else None

        await wait_for(recorded, "run 2 recorded")
        assert await no_more_jobs(kube, namespace, "t", 2)
    finally:
        await runner.stop()


async def test_a_crash_while_the_status_is_behind_runs_nothing_twice(
    kube: KubeClient, namespace: str, kubeconfig: str
) -> None:
    runner = Runner(kubeconfig, namespace, **NO_REFILL)
    ctl = await runner.start()
    try:
        await create_cm(kube, namespace, "cfg", {"v": "a"})
        await create_jt(kube, namespace, "t", resources(cm_watch("cfg", fields=["data"]), cooldown="1h"))
        await wait_ready(kube, namespace, "t")
        spend_budget(ctl)
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "b"}})
        job = (await wait_jobs(kube, namespace, "t", 1))[0]
        await wait_for(lambda: _true(ctl.write_behind.behind((namespace, "t"))), "the status write deferred")
        await runner.stop()
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "c"}})  # within the cooldown of the deferred run
        await runner.start()

        async def read_back() -> dict[str, Any] | None:
            st = await status_of(kube, namespace, "t")
            return st if st.get("resourceRuns") == 1 else None

        st = await wait_for(read_back, "the deferred run read back from its Job")
        assert st["lastResourceTriggerTime"] == job["metadata"]["annotations"]["jobtrigger.dev/created"]
        assert st["pending"].startswith("cooldown until"), st  # the cooldown of the run held, though unwritten
        assert await no_more_jobs(kube, namespace, "t", 1)
    finally:
        await runner.stop()


async def test_pruning_waits_until_the_deferred_status_is_written(
    kube: KubeClient, namespace: str, kubeconfig: str
) -> None:
    runner = Runner(kubeconfig, namespace, **NO_REFILL)
    ctl = await runner.start()
    order: list[str] = []
    assert ctl.kube is not None
    real_patch, real_delete = ctl.kube.merge_patch, ctl.kube.delete

    async def merge_patch(path: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await real_patch(path, body)
        if path.endswith("/t/status"):
            order.append(f"status runs={(body.get('status') or {}).get('resourceRuns')}")
        return result

    async def delete(path: str, **kw: Any) -> Any:
        result = await real_delete(path, **kw)
        order.append("delete " + path.rsplit("/", 1)[-1])
        return result

    ctl.kube.merge_patch = merge_patch  # type: ignore[method-assign]
    ctl.kube.delete = delete  # type: ignore[method-assign]
    try:
        await create_cm(kube, namespace, "cfg", {"v": "0"})
        await create_jt(kube, namespace, "t", resources(cm_watch("cfg", fields=["data"])), successfulJobsHistoryLimit=1)
        await wait_ready(kube, namespace, "t")
        spend_budget(ctl)
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "1"}})
        first = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "2"}})
        await wait_jobs(kube, namespace, "t", 2)
        await wait_for(lambda: _true(ctl.write_behind.behind((namespace, "t"))), "the status write deferred")
        order.clear()
        for job in await jobs_of(kube, namespace, "t"):
            await finish_job_pods(kube, namespace, job["metadata"]["name"])

        async def pruned() -> bool:
            return len(await jobs_of(kube, namespace, "t")) == 1

        await wait_for(pruned, "the older Job pruned", timeout=60)
        assert f"delete {first}" in order, order
        assert order.index("status runs=2") < order.index(f"delete {first}"), order
    finally:
        await runner.stop()


async def test_sigterm_writes_the_deferred_status_before_exit(
    kube: KubeClient, kubeconfig: str, namespace: str
) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *controller_argv(kubeconfig, namespace, port),
        "--status-qps",
        "0.0001",
        "--status-burst",
        "1",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await create_cm(kube, namespace, "cfg", {"v": "0"})
        await create_jt(kube, namespace, "t", resources(cm_watch("cfg", fields=["data"])))
        await wait_ready(kube, namespace, "t")
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "1"}})  # written at once: the one token

        async def runs(n: int) -> bool:
            return (await status_of(kube, namespace, "t")).get("resourceRuns") == n

        await wait_for(lambda: runs(1), "run 1 recorded")
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "2"}})  # no token left: deferred
        await wait_jobs(kube, namespace, "t", 2)
        assert await stays(lambda: runs(1), 1.0), "run 2 must wait for the budget (the test's premise)"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert await runs(2), await status_of(kube, namespace, "t")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _true(value: bool) -> bool:
    return value
