"""Regression tests for the exactly-once holes of issues #17 and #18, and for SyncError (#15), on the real server.

Each test names the hole it closes. Faults are produced with the real API server and a controller restart where
that is possible; the in-process seams (a slow ``read_log``, a failing LIST, a delayed Job list, a deletion inside
a status write) are used only where the window cannot be hit reliably from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from jobtrigger.api.models import PLURAL
from jobtrigger.kube.client import ApiError, KubeClient
from jobtrigger.kube.leader import LeaderElector, LeaseConfig
from jobtrigger.reactor.controller import Controller, Settings
from jobtrigger.reactor.sync import gate, on_manual
from jobtrigger.reactor.sync.core import Sync
from tests.faultproxy import FaultProxy
from tests.integration.conftest import (
    Runner,
    condition,
    create_cm,
    create_jt,
    finish_job_pods,
    get_jt,
    jobs_of,
    jt_path,
    patch_cm,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)
from tests.integration.events import events_of, wait_event
from tests.integration.test_pod_trigger import make_pod, set_ready


async def request_run(kube: KubeClient, ns: str, name: str, token: str) -> None:
    await kube.merge_patch(jt_path(ns, name), {"metadata": {"annotations": {"jobtrigger.dev/run-requested": token}}})


async def job_count_stays(kube: KubeClient, ns: str, owner: str, n: int, seconds: float = 3.0) -> bool:
    async def probe() -> bool:
        return len(await jobs_of(kube, ns, owner)) == n

    return await stays(probe, seconds)


READY_ON_DB = {"pods": {"selector": {"matchLabels": {"app": "db"}}, "when": ["Ready"]}}


# --------------------------------------------------------------------------------------------- #17.1


async def test_pod_transition_is_not_rerun_after_a_restart_when_its_job_was_pruned(
    kube: KubeClient, namespace: str, runner: Runner, kwok: bool
) -> None:
    """#17.1: Ready → Job → Job succeeds → pruned (history 0) → restart: the same transition must not run again.
    Before the fix the first look after the restart put the Ready back (its Job was gone) and created it again."""
    await create_jt(kube, namespace, "t", READY_ON_DB, successfulJobsHistoryLimit=0)
    await wait_ready(kube, namespace, "t")
    await make_pod(kube, namespace, "db-0", kwok=kwok)
    await set_ready(kube, namespace, "db-0", True, kwok=kwok)
    job = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    await finish_job_pods(kube, namespace, job)

    async def pruned() -> bool | None:
        return True if not await jobs_of(kube, namespace, "t") else None

    await wait_for(pruned, "the succeeded Job pruned (successfulJobsHistoryLimit 0)", timeout=60)

    async def handled_persisted() -> list[str] | None:
        status = (await get_jt(kube, namespace, "t")).get("status") or {}
        return status.get("podHandled") or None

    assert any("/Ready/" in k for k in await wait_for(handled_persisted, "status.podHandled"))
    await runner.restart()
    assert await job_count_stays(kube, namespace, "t", 0, 4.0), "the pruned transition ran again after a restart"
    created = await events_of(kube, namespace, "t", "JobCreated")
    assert sum(int(e.get("count") or 1) for e in created) == 1


async def test_forbid_consumed_pod_transition_does_not_run_after_a_restart(
    kube: KubeClient, namespace: str, runner: Runner, kwok: bool
) -> None:
    """#17.1: with Forbid, pod B's Ready is consumed while A's Job is active; a restart must not run it anyway."""
    await create_jt(kube, namespace, "t", READY_ON_DB, concurrencyPolicy="Forbid")
    await wait_ready(kube, namespace, "t")
    await make_pod(kube, namespace, "db-a", kwok=kwok)
    await set_ready(kube, namespace, "db-a", True, kwok=kwok)
    await wait_jobs(kube, namespace, "t", 1)
    await make_pod(kube, namespace, "db-b", kwok=kwok)
    await set_ready(kube, namespace, "db-b", True, kwok=kwok)

    async def skipped() -> bool | None:
        return True if await events_of(kube, namespace, "t", "RunSkipped") else None

    await wait_for(skipped, "RunSkipped for db-b")

    async def handled_both() -> bool | None:
        status = (await get_jt(kube, namespace, "t")).get("status") or {}
        return True if len(status.get("podHandled") or []) == 2 else None

    await wait_for(handled_both, "both transitions recorded as handled")
    await runner.restart()
    assert await job_count_stays(kube, namespace, "t", 1, 4.0), "the consumed transition ran after a restart"


# --------------------------------------------------------------------------------------------- #17.2


async def test_job_finishing_while_another_jobs_output_is_written_keeps_its_own_output(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """#17.2 (seam: a slow read_log): Job B finishes while A's output is being written; B must not be pruned
    before its own output is written. Before the fix both were pruned and B's output was lost."""
    ctl = runner.controller
    assert ctl is not None
    slow_for: set[str] = set()
    b_finished = asyncio.Event()

    async def read_log(ns: str, pod: str, container: str, limit: int) -> str:
        if any(pod.startswith(j) for j in slow_for):
            await b_finished.wait()
            await asyncio.sleep(1.0)  # B's watch event is in the cache by now
        return f"log of {pod}\n"

    ctl.read_log = read_log
    template = {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}}
    await create_jt(
        kube,
        namespace,
        "t",
        {"manual": {}},
        jobTemplate=template,
        concurrencyPolicy="Allow",
        successfulJobsHistoryLimit=0,
        output={"source": "Logs", "kind": "ConfigMap", "name": "out", "versioned": True},
    )
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "a")
    job_a = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    await request_run(kube, namespace, "t", "b")
    jobs = await wait_jobs(kube, namespace, "t", 2)
    job_b = next(j["metadata"]["name"] for j in jobs if j["metadata"]["name"] != job_a)
    slow_for.add(job_a)
    await finish_job_pods(kube, namespace, job_a)

    async def a_complete_in_cache() -> bool | None:
        s = ctl.jobs.objects.get((namespace, job_a))
        return True if s is not None and s.state == "Succeeded" else None

    await wait_for(a_complete_in_cache, "Job A succeeded (controller cache)", timeout=60)
    await finish_job_pods(kube, namespace, job_b)

    async def b_complete_in_cache() -> bool | None:
        s = ctl.jobs.objects.get((namespace, job_b))
        return True if s is not None and s.state == "Succeeded" else None

    await wait_for(b_complete_in_cache, "Job B succeeded (controller cache)", timeout=60)
    b_finished.set()

    async def two_versions() -> list[str] | None:
        got = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps")
        names = sorted(c["metadata"]["name"] for c in got["items"] if c["metadata"]["name"].startswith("out-v"))
        return names if len(names) == 2 else None

    assert await wait_for(two_versions, "an output version for each Job", timeout=60) == ["out-v1", "out-v2"]
    await wait_event(kube, namespace, "t", "OutputWritten", count=2)


# --------------------------------------------------------------------------------------------- #17.3


async def test_a_failure_between_reserving_and_creating_releases_the_cap_slot(
    kube: KubeClient, namespace: str, kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#17.3 (seam: the renames LIST fails with 503 for a while): with --max-active-jobs and Queue, the reserved
    name must be released, so the next change runs. Before the fix a phantom active Job blocked Queue forever."""
    failing = {"on": True}
    real = gate.renames

    async def renames(s: Sync, jt: Any) -> dict[tuple[str, str], str]:
        if failing["on"]:
            raise ApiError(503, "Service Unavailable (injected)")
        return await real(s, jt)

    monkeypatch.setattr(gate, "renames", renames)
    r = Runner(kubeconfig, namespace, max_active_jobs=5)
    await r.start()
    try:
        await create_cm(kube, namespace, "cfg", {"v": "1"})
        await create_cm(kube, namespace, "ref", {"x": "1"})
        template = {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "m", "image": "x", "envFrom": [{"configMapRef": {"name": "ref"}}]}]
                    }
                }
            }
        }
        await create_jt(
            kube,
            namespace,
            "t",
            {"resources": {"watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg", "fields": ["data"]}]}},
            jobTemplate=template,
            concurrencyPolicy="Queue",
        )
        await wait_ready(kube, namespace, "t")
        for v in ("2", "3"):
            await patch_cm(kube, namespace, "cfg", {"data": {"v": v}})
            await asyncio.sleep(0.7)
        failing["on"] = False
        await patch_cm(kube, namespace, "cfg", {"data": {"v": "4"}})
        jobs = await wait_jobs(kube, namespace, "t", 1, timeout=30)
        assert len(jobs) == 1
        active = await wait_for(_active_set(kube, namespace), "status.active")
        assert all(a.get("uid") for a in active), f"phantom active Job in status: {active}"
    finally:
        await r.stop()


def _active_set(kube: KubeClient, ns: str) -> Callable[[], Awaitable[list[dict[str, Any]] | None]]:
    async def probe() -> list[dict[str, Any]] | None:
        return ((await get_jt(kube, ns, "t")).get("status") or {}).get("active") or None

    return probe


# --------------------------------------------------------------------------------------------- #17.4


async def test_a_recreated_jobtrigger_does_not_adopt_the_old_ones_jobs(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """#17.4: delete a JobTrigger with --cascade=orphan and create it again under the same name: the old active Job
    is not the new one's (Forbid must not skip, status.active must not list it, pruning must not touch it)."""
    spec: dict[str, Any] = {"concurrencyPolicy": "Forbid"}
    await create_jt(kube, namespace, "t", {"manual": {}}, **spec)
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "one")
    old = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    await kube.delete(jt_path(namespace, "t"), propagation="Orphan")

    async def gone() -> bool | None:
        try:
            await get_jt(kube, namespace, "t")
        except ApiError as e:
            return True if e.status == 404 else None
        return None

    await wait_for(gone, "JobTrigger deleted")
    created = await create_jt(kube, namespace, "t", {"manual": {}}, **spec)
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "two")
    jobs = await wait_jobs(kube, namespace, "t", 2)
    new = [j for j in jobs if j["metadata"]["name"] != old]
    assert new and new[0]["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert not await events_of(kube, namespace, "t", "RunSkipped")

    async def only_new_active() -> list[str] | None:
        active = ((await get_jt(kube, namespace, "t")).get("status") or {}).get("active") or []
        names = [a["name"] for a in active]
        return names if names == [new[0]["metadata"]["name"]] else None

    await wait_for(only_new_active, "status.active lists only the new JobTrigger's Job")


# --------------------------------------------------------------------------------------------- #18.2


async def test_no_job_is_created_before_the_job_list_completes(
    kube: KubeClient, namespace: str, kubeconfig: str
) -> None:
    """#18.2 (seam: the first Job LIST is slow): Forbid with an active Job; a new token set while the controller
    was down must be skipped, not run next to the active Job. Before the fix workers synced with an empty cache."""
    r = Runner(kubeconfig, namespace)
    await r.start()
    await create_jt(kube, namespace, "t", {"manual": {}}, concurrencyPolicy="Forbid")
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "t1")
    await wait_jobs(kube, namespace, "t", 1)
    await r.stop()
    await request_run(kube, namespace, "t", "t2")

    client = await KubeClient.from_config(kubeconfig)
    ctl = Controller(client, Settings(namespace=namespace))
    for w in ctl.jobs.watchers.values():
        real = w.relist

        async def slow_relist(real: Callable[[], Awaitable[None]] = real) -> None:
            await asyncio.sleep(2.0)
            await real()

        w.relist = slow_relist  # type: ignore[method-assign]
    task = asyncio.get_running_loop().create_task(ctl.run())
    try:
        await asyncio.wait_for(ctl.ready.wait(), 30)

        async def served() -> bool | None:
            status = (await get_jt(kube, namespace, "t")).get("status") or {}
            return True if status.get("lastRunRequest") == "t2" else None

        await wait_for(served, "token t2 handled")
        assert len(await jobs_of(kube, namespace, "t")) == 1, "a second Job ran next to the active one (Forbid)"
        await wait_event(kube, namespace, "t", "RunSkipped", count=1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


# --------------------------------------------------------------------------------------------- #18.3


async def test_a_jobtrigger_deleted_during_our_status_write_stays_deleted(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """#18.3 (seam: the JobTrigger is deleted between the server committing our status write and the worker
    resuming): the stale copy must not come back into the cache. Before the fix it did, and kept syncing."""
    ctl = runner.controller
    assert ctl is not None and ctl.kube is not None
    client = ctl.kube
    real = client.merge_patch
    armed = {"on": False, "dropped": False}

    async def merge_patch(path: str, body: dict[str, Any]) -> dict[str, Any]:
        written = await real(path, body)
        if armed["on"] and path.endswith("/t/status"):
            armed["on"] = False
            await kube.delete(jt_path(namespace, "t"))

            async def dropped() -> bool | None:
                return True if (namespace, "t") not in ctl.triggers.objects else None

            await wait_for(dropped, "the watch dropped the deleted JobTrigger")
            armed["dropped"] = True  # the worker resumes right after this, with the stale object
        return written

    client.merge_patch = merge_patch  # type: ignore[method-assign]
    await create_jt(kube, namespace, "t", {"manual": {}})
    await wait_ready(kube, namespace, "t")
    armed["on"] = True
    await request_run(kube, namespace, "t", "x")

    async def deleted_in_the_window() -> bool | None:
        return True if armed["dropped"] else None

    await wait_for(deleted_in_the_window, "the status write that deletes the JobTrigger", 30)

    async def absent() -> bool:
        return (namespace, "t") not in ctl.triggers.objects

    assert await stays(absent, 2.0), "the deleted JobTrigger came back into the cache"


# --------------------------------------------------------------------------------------------- #16 (a hog run)


async def test_a_run_whose_status_write_conflicts_is_still_recorded(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """Seam: a new token arrives between the Job create and the status write that records it, so the write fails
    (409) and the retry sees the new token; with Forbid the retry skips it and creates nothing. Before the fix the
    run's fields (lastJobName, lastTriggeredTime, lastTriggerReason) were lost for good: no later sync set them
    (found by a full-suite run under a CPU hog, test_forbid_skips_while_active)."""
    ctl = runner.controller
    assert ctl is not None and ctl.kube is not None
    client = ctl.kube
    real = client.merge_patch
    conflicts: list[int] = []

    async def merge_patch(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/t/status") and "lastJobName" in (body.get("status") or {}) and not conflicts:
            await request_run(kube, namespace, "t", "b")  # the object changes under the write
            try:
                return await real(path, body)
            except ApiError as e:
                conflicts.append(e.status)
                raise
        return await real(path, body)

    client.merge_patch = merge_patch  # type: ignore[method-assign]
    await create_jt(kube, namespace, "t", {"manual": {}}, concurrencyPolicy="Forbid")
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "a")
    first = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]

    async def recorded() -> dict[str, Any] | None:
        st: dict[str, Any] = (await get_jt(kube, namespace, "t")).get("status") or {}
        return st if st.get("lastRunRequest") == "b" and st.get("lastJobName") == first else None

    try:
        st = await wait_for(recorded, f"token b handled and {first} recorded as the last Job")
    except AssertionError as e:
        raise AssertionError(f"{e}; status {(await get_jt(kube, namespace, 't')).get('status')}") from None
    assert conflicts == [409], conflicts  # the seam did what it is for
    assert st["lastJobStatus"] == "Active" and st["lastTriggeredTime"]
    assert "run-requested=a)" in st["lastTriggerReason"], st["lastTriggerReason"]  # a's run, recorded
    assert first in st["lastSkipped"]["reason"]
    assert await job_count_stays(kube, namespace, "t", 1, 1.5)
    assert ctl.unwritten_run.get((namespace, "t")) is None  # persisted: nothing carried any more


# --------------------------------------------------------------------------------------------- #18 errand


async def test_errand_reset_survives_a_concurrent_spec_edit(kube: KubeClient, namespace: str, runner: Runner) -> None:
    """#18 (borderline): a spec edit that keeps `strategy: now`, made between the read and the reset, must not make
    the errand run twice (before: the reset's resourceVersion precondition failed, the retry ran errand/<g+1>)."""
    ctl = runner.controller
    assert ctl is not None
    client = ctl.kube
    edited = {"done": False}

    def wrap(real: Callable[..., Awaitable[dict[str, Any]]]) -> Callable[..., Awaitable[dict[str, Any]]]:
        async def call(path: str, body: Any) -> dict[str, Any]:
            if path.endswith(f"/{PLURAL}/e") and not edited["done"]:
                edited["done"] = True
                await kube.merge_patch(path, {"spec": {"history": 7}})  # a new generation, still `now`
            return await real(path, body)

        return call

    client.merge_patch = wrap(client.merge_patch)  # type: ignore[method-assign]
    if hasattr(client, "json_patch"):  # (the reset used a merge patch before the fix)
        client.json_patch = wrap(client.json_patch)  # type: ignore[method-assign]
    await create_jt(kube, namespace, "e", {"manual": {"strategy": "now"}})

    async def reset() -> bool | None:
        jt = await get_jt(kube, namespace, "e")
        return True if jt["spec"]["triggers"]["manual"]["strategy"] == "manual" else None

    await wait_for(reset, "strategy reset to manual")
    assert edited["done"]
    assert await job_count_stays(kube, namespace, "e", 1, 3.0), "the errand ran twice"


# --------------------------------------------------------------------------------------------- #15 SyncError


async def test_a_sync_that_keeps_failing_shows_as_sync_error(
    kube: KubeClient, namespace: str, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#15: an internal error (seam: the manual trigger raises) surfaces as Ready=False, reason SyncError, with the
    exception's message and an Event, while retries go on; the next good sync clears it."""
    broken = {"on": True}
    real = on_manual.run_manual

    async def manual(s: Sync, jt: Any) -> None:
        if broken["on"] and s.name == "t":
            raise RuntimeError("induced internal error")
        await real(s, jt)

    monkeypatch.setattr(on_manual, "run_manual", manual)
    await create_jt(kube, namespace, "t", {"manual": {}})

    async def sync_error() -> dict[str, Any] | None:
        c = condition(await get_jt(kube, namespace, "t"))
        return c if c and c.get("reason") == "SyncError" else None

    c = await wait_for(sync_error, "Ready=False, reason SyncError")
    assert c["status"] == "False" and "RuntimeError: induced internal error" in c["message"]
    await wait_event(kube, namespace, "t", "SyncError", count=1)
    broken["on"] = False
    await request_run(kube, namespace, "t", "now-ok")  # any change: the retry would come anyway, later
    await wait_ready(kube, namespace, "t")


# --------------------------------------------------------------------------------------------- #17 leader


async def test_a_leader_that_cannot_prove_its_lease_stops_acting_within_the_renew_deadline(
    kube: KubeClient, namespace: str, control_plane: Any
) -> None:
    """#17 (also): a renewal that hangs (blackholed connection) ends leadership at the renew deadline, not after
    the 30 s request timeout, and the client then sends nothing more."""
    if control_plane is None:
        pytest.skip("needs the suite's own control plane (proxy in front of it)")
    host, port = control_plane.server_url.removeprefix("https://").rsplit(":", 1)
    proxy = FaultProxy(host, int(port))
    await proxy.start()
    cfg_path = control_plane.work_dir / f"proxy-{proxy.port}.kubeconfig"
    cfg_path.write_text(control_plane.kubeconfig_path.read_text().replace(f":{port}", f":{proxy.port}"))
    client = await KubeClient.from_config(str(cfg_path))
    try:
        elector = LeaderElector(
            client,
            LeaseConfig(namespace, identity="a", lease_duration=4, renew_deadline=3, retry_period=0.5),
        )
        await asyncio.wait_for(elector.acquire(), 10)
        client.deadline = elector.remaining
        keeper = asyncio.get_running_loop().create_task(elector.keep())
        await asyncio.sleep(1.0)
        proxy.blackhole()
        t0 = asyncio.get_running_loop().time()
        await asyncio.wait_for(keeper, 10)
        assert elector.lost.is_set()
        assert asyncio.get_running_loop().time() - t0 <= 3.5
        with pytest.raises(ApiError) as e:
            await client.create(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "late"}})
        assert "lease" in e.value.message
    finally:
        proxy.restore()
        await client.close()
        await proxy.stop()
    with pytest.raises(ApiError):
        await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/late")


# --------------------------------------------------------------------------------------------- #18 borderline


async def test_a_change_after_a_watch_list_edit_survives_a_conflicting_status_write(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """#18 (borderline): a watch-list edit takes a new baseline, persisted by the status write; if that write
    conflicts, the retry must compare with the baseline it took, so a change in between still runs (before: the
    retry took a fresh baseline that already contained the change, and nothing ran)."""
    ctl = runner.controller
    assert ctl is not None
    await create_cm(kube, namespace, "a", {"v": "1"})
    await create_cm(kube, namespace, "b", {"v": "1"})
    entry = {"apiVersion": "v1", "kind": "ConfigMap", "fields": ["data"]}
    await create_jt(kube, namespace, "t", {"resources": {"watch": [{**entry, "name": "a"}]}})
    await wait_ready(kube, namespace, "t")
    client = ctl.kube
    real = client.merge_patch
    armed = {"on": False}

    async def merge_patch(path: str, body: dict[str, Any]) -> dict[str, Any]:
        # the write that persists the new watch list's baseline (both objects), not an earlier one
        if armed["on"] and path.endswith("/t/status") and len(body["status"].get("resourceHashes") or []) == 2:
            armed["on"] = False
            await patch_cm(kube, namespace, "a", {"data": {"v": "2"}})
            await asyncio.sleep(1.0)  # the controller's watch has the change before the retry
            raise ApiError(409, "Conflict", {"reason": "Conflict", "message": "injected conflict"})
        return await real(path, body)

    client.merge_patch = merge_patch  # type: ignore[method-assign]
    armed["on"] = True
    await kube.merge_patch(
        jt_path(namespace, "t"),
        {"spec": {"triggers": {"resources": {"watch": [{**entry, "name": "a"}, {**entry, "name": "b"}]}}}},
    )
    jobs = await wait_jobs(kube, namespace, "t", 1)
    assert f"ConfigMap/{namespace}/a updated" in jobs[0]["metadata"]["annotations"]["jobtrigger.dev/reason"]
    assert not armed["on"]


def _logs_template() -> dict[str, Any]:
    return {"spec": {"backoffLimit": 0, "template": {"spec": {"containers": [{"name": "m", "image": "x"}]}}}}


async def test_a_versioned_output_whose_version_was_taken_is_written_as_the_next_one(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """#18 (borderline): another writer creates the `out-vN` this Job planned; the output is re-planned and written
    as `out-v(N+1)` (before: AlreadyExists was final and the output lost, OutputFailed)."""
    ctl = runner.controller
    assert ctl is not None

    async def read_log(ns: str, pod: str, container: str, limit: int) -> str:
        return "ours\n"

    ctl.read_log = read_log
    client = ctl.kube
    real = client.create
    stolen = {"done": False}

    async def create(path: str, body: dict[str, Any], **query: Any) -> dict[str, Any]:
        if not stolen["done"] and (body.get("metadata") or {}).get("name") == "out-v1":
            stolen["done"] = True
            other = {"metadata": {"name": "out-v1", "labels": body["metadata"]["labels"]}, "data": {"m": "theirs"}}
            await kube.create(path, other)
        return await real(path, body, **query)

    client.create = create  # type: ignore[method-assign]
    await create_jt(
        kube,
        namespace,
        "t",
        {"manual": {}},
        jobTemplate=_logs_template(),
        output={"source": "Logs", "kind": "ConfigMap", "name": "out", "versioned": True},
    )
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "r1")
    job = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    await finish_job_pods(kube, namespace, job)
    await wait_event(kube, namespace, "t", "OutputWritten", count=1, timeout=60)
    assert stolen["done"]
    v2 = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/out-v2")
    assert v2["data"] == {"m": "ours\n"}
    assert not await events_of(kube, namespace, "t", "OutputFailed")


async def test_with_allow_versions_follow_the_order_in_which_jobs_finish(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """#18 (borderline, documented in docs/concepts.md "Persisted output"): under Allow, the run that finishes last
    writes the newest version, even if it started first."""
    ctl = runner.controller
    assert ctl is not None

    async def read_log(ns: str, pod: str, container: str, limit: int) -> str:
        return f"{pod.rsplit('-', 1)[0]}\n"  # the Job's name

    ctl.read_log = read_log
    await create_jt(
        kube,
        namespace,
        "t",
        {"manual": {}},
        jobTemplate=_logs_template(),
        concurrencyPolicy="Allow",
        output={"source": "Logs", "kind": "ConfigMap", "name": "out", "versioned": True},
    )
    await wait_ready(kube, namespace, "t")
    await request_run(kube, namespace, "t", "first")
    first = (await wait_jobs(kube, namespace, "t", 1))[0]["metadata"]["name"]
    await request_run(kube, namespace, "t", "second")
    second = next(
        j["metadata"]["name"] for j in await wait_jobs(kube, namespace, "t", 2) if j["metadata"]["name"] != first
    )
    await finish_job_pods(kube, namespace, second)
    await wait_event(kube, namespace, "t", "OutputWritten", count=1, timeout=60)
    await finish_job_pods(kube, namespace, first)
    await wait_event(kube, namespace, "t", "OutputWritten", count=2, timeout=60)
    v1 = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/out-v1")
    v2 = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/out-v2")
    assert v1["data"] == {"m": f"{second}\n"} and v2["data"] == {"m": f"{first}\n"}
