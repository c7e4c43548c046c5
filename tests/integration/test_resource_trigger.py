"""Resource-change triggers end to end on the real API server (rows K1-K9, C1-C4)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import (
    Runner,
    condition,
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
from tests.integration.test_admission import CEL_MINOR, server_minor


def cm_watch(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, **extra}


def resources(*watch: dict[str, Any], cooldown: str = "0s", condition: str = "Any") -> dict[str, Any]:
    return {"resources": {"watch": list(watch), "cooldown": cooldown, "condition": condition}}


async def no_more_jobs(kube: KubeClient, ns: str, owner: str, count: int, seconds: float = 1.5) -> bool:
    async def probe() -> bool:
        return len(await jobs_of(kube, ns, owner)) == count

    return await stays(probe, seconds)


async def test_configmap_data_change_creates_exactly_one_job(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg", fields=["data"])))
    jt = await wait_ready(kube, namespace, "t")
    assert jt["status"]["resourceHashes"][0]["name"] == "cfg"
    assert await no_more_jobs(kube, namespace, "t", 0, 0.5), "creating the JobTrigger must only take a baseline"

    await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
    jobs = await wait_jobs(kube, namespace, "t", 1)
    assert await no_more_jobs(kube, namespace, "t", 1)
    job = jobs[0]
    labels = job["metadata"]["labels"]
    assert labels["jobtrigger.dev/owner"] == "t"
    assert labels["jobtrigger.dev/trigger"] == "resources"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("JobTrigger", "t", True)
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOBTRIGGER_OBJECT_NAME"] == "cfg"
    assert env["JOBTRIGGER_OBJECT_KIND"] == "ConfigMap"
    assert env["JOBTRIGGER_CHANGED_PATHS"] == "data"

    async def status_updated() -> dict[str, Any] | None:
        jt = await get_jt(kube, namespace, "t")
        return jt if jt["status"].get("lastJobName") == job["metadata"]["name"] else None

    jt = await wait_for(status_updated, "status.lastJobName")
    assert jt["status"]["lastJobStatus"] == "Active"
    assert jt["status"]["lastTriggeredTime"]
    await wait_event(kube, namespace, "t", "JobCreated")

    # a second change: a second Job with another name
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "3"}})
    jobs = await wait_jobs(kube, namespace, "t", 2)
    assert len({j["metadata"]["name"] for j in jobs}) == 2


async def test_change_of_unwatched_field_creates_no_job(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "cfg", {"watched": "1", "other": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg", fields=["data.watched"])))
    await wait_ready(kube, namespace, "t")
    await patch_cm(kube, namespace, "cfg", {"data": {"other": "2"}, "metadata": {"labels": {"x": "y"}}})
    assert await no_more_jobs(kube, namespace, "t", 0)
    await patch_cm(kube, namespace, "cfg", {"data": {"watched": "2"}})
    jobs = await wait_jobs(kube, namespace, "t", 1)
    assert "data.watched" in jobs[0]["metadata"]["annotations"]["jobtrigger.dev/reason"]


async def test_default_fields_ignore_metadata_noise(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg")))
    await wait_ready(kube, namespace, "t")
    # resourceVersion / managedFields change, content does not (an empty-diff apply, a finalizer-free touch)
    await kube.merge_patch(
        f"/api/v1/namespaces/{namespace}/configmaps/cfg",
        {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}},
    )
    assert await no_more_jobs(kube, namespace, "t", 0)
    await patch_cm(kube, namespace, "cfg", {"metadata": {"labels": {"tier": "x"}}})
    await wait_jobs(kube, namespace, "t", 1)


async def test_condition_all_needs_every_resource(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "one", {"a": "1"})
    await create_cm(kube, namespace, "two", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("one"), cm_watch("two"), condition="All"))
    await wait_ready(kube, namespace, "t")
    await patch_cm(kube, namespace, "one", {"data": {"a": "2"}})
    await patch_cm(kube, namespace, "one", {"data": {"a": "3"}})

    async def pending() -> dict[str, Any] | None:
        jt = await get_jt(kube, namespace, "t")
        return jt if "watch[1]" in (jt["status"].get("pending") or "") else None

    await wait_for(pending, "status.pending naming watch[1]")
    assert await no_more_jobs(kube, namespace, "t", 0)
    await patch_cm(kube, namespace, "two", {"data": {"a": "2"}})
    jobs = await wait_jobs(kube, namespace, "t", 1)
    assert await no_more_jobs(kube, namespace, "t", 1)
    assert jobs[0]["metadata"]["annotations"]["jobtrigger.dev/reason"].endswith("and 1 more")


async def test_cooldown_defers_and_fires_once(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg"), cooldown="3s"))
    await wait_ready(kube, namespace, "t")
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
    await wait_jobs(kube, namespace, "t", 1)
    t_first = time.monotonic()
    # two more changes inside the window: deferred to its end, then exactly one Job for the last state
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "3"}})
    await asyncio.sleep(0.3)
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "4"}})

    async def pending() -> dict[str, Any] | None:
        jt = await get_jt(kube, namespace, "t")
        return jt if (jt["status"].get("pending") or "").startswith("cooldown") else None

    await wait_for(pending, "status.pending = cooldown")
    assert len(await jobs_of(kube, namespace, "t")) == 1
    jobs = await wait_jobs(kube, namespace, "t", 2, timeout=10)
    assert time.monotonic() - t_first >= 2.5, "the deferred Job must wait for the end of the cooldown"
    assert await no_more_jobs(kube, namespace, "t", 2, 4.0)

    async def not_pending() -> bool:
        return "pending" not in (await get_jt(kube, namespace, "t"))["status"]

    await wait_for(not_pending, "status.pending cleared")
    assert jobs[1]["metadata"]["annotations"]["jobtrigger.dev/reason"].startswith("ConfigMap/")


async def test_change_while_controller_down_runs_once_after_restart(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg")))
    await wait_ready(kube, namespace, "t")
    await runner.stop()
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
    await runner.start()
    await wait_jobs(kube, namespace, "t", 1)
    # and another restart with no change: nothing new
    await runner.restart()
    assert await no_more_jobs(kube, namespace, "t", 1, 2.0)


async def test_restart_without_change_creates_no_job(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg")))
    await wait_ready(kube, namespace, "t")
    for _ in range(2):
        await runner.restart()
    assert await no_more_jobs(kube, namespace, "t", 0, 2.0)


async def test_lost_status_write_does_not_duplicate_the_job(kube: KubeClient, namespace: str, runner: Runner) -> None:
    """The Job was created but the status write (baseline) was lost, e.g. a crash in between: the retry derives the
    same Job name, gets AlreadyExists and counts the occurrence as done."""
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg")))
    before = (await wait_ready(kube, namespace, "t"))["status"]
    await runner.stop()
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
    await runner.start()
    await wait_jobs(kube, namespace, "t", 1)

    async def recorded() -> dict[str, Any] | None:
        jt = await get_jt(kube, namespace, "t")
        return jt if jt["status"].get("resourceRuns") == 1 else None

    await wait_for(recorded, "status.resourceRuns = 1")
    await runner.stop()
    # roll the status back to before the Job, as if the write had never happened
    await kube.merge_patch(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/t/status",
        {
            "status": {
                "resourceHashes": before["resourceHashes"],
                "resourceRuns": None,
                "lastJobName": None,
                "lastResourceTriggerTime": None,
            }
        },
    )
    await runner.start()
    await wait_for(recorded, "status.resourceRuns = 1 again")
    assert await no_more_jobs(kube, namespace, "t", 1, 2.0)


async def test_watch_break_loses_no_change(
    kube: KubeClient, namespace: str, runner: Runner, control_plane: ControlPlane | None
) -> None:
    """Restart kube-apiserver in the middle of a stream of changes: each change still yields its Job."""
    if control_plane is None:
        import pytest

        pytest.skip("needs the suite's own control plane")
    names = [f"cfg{i}" for i in range(4)]
    for n in names:
        await create_cm(kube, namespace, n, {"v": "0"})
        await create_jt(kube, namespace, f"t-{n}", resources(cm_watch(n)))
    for n in names:
        await wait_ready(kube, namespace, f"t-{n}")
    await patch_cm(kube, namespace, names[0], {"data": {"v": "1"}})
    await wait_jobs(kube, namespace, f"t-{names[0]}", 1)

    await asyncio.to_thread(control_plane.restart_apiserver)
    # changes right after the restart, while the controller's watches are still reconnecting
    for n in names[1:]:
        await patch_cm(kube, namespace, n, {"data": {"v": "1"}})
    for n in names:
        await wait_jobs(kube, namespace, f"t-{n}", 1, timeout=60)
    # and the first one again, after the break
    await patch_cm(kube, namespace, names[0], {"data": {"v": "2"}})
    await wait_jobs(kube, namespace, f"t-{names[0]}", 2, timeout=30)
    for n in names[1:]:
        assert len(await jobs_of(kube, namespace, f"t-{n}")) == 1
    assert runner.controller is not None
    assert runner.controller.jobs.stats.reconnects + runner.controller.jobs.stats.relists_410 > 0


async def test_forced_410_relists_and_diffs(kube: KubeClient, namespace: str, runner: Runner) -> None:
    """A watch resumed from an expired resourceVersion gets 410 Gone; the relist must report what changed."""
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg")))
    await wait_ready(kube, namespace, "t")
    ctl = runner.controller
    assert ctl is not None
    scope = next(iter(ctl.resource_watches.scopes.values()))
    watcher = scope.watcher
    assert watcher is not None and scope.task is not None
    # stop the scope's watch, change the object, then resume from a long-expired resourceVersion
    scope.task.cancel()
    await asyncio.sleep(0.1)
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
    watcher.resource_version = "1"
    scope.task = asyncio.get_running_loop().create_task(watcher.run())
    await wait_jobs(kube, namespace, "t", 1)
    assert watcher.stats.relists_410 >= 1 or watcher.stats.lists >= 2


async def test_cluster_scoped_kind(kube: KubeClient, namespace: str, runner: Runner) -> None:
    name = f"{namespace}-role"
    await kube.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
    )
    try:
        watch = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": name, "fields": ["rules"]}
        await create_jt(kube, namespace, "t", resources(watch))
        await wait_ready(kube, namespace, "t")
        await kube.merge_patch(
            f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
            {"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        )
        jobs = await wait_jobs(kube, namespace, "t", 1)
        env = {e["name"]: e.get("value", "") for e in jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["JOBTRIGGER_OBJECT_KIND"] == "ClusterRole"
        assert env["JOBTRIGGER_OBJECT_NAMESPACE"] == ""
    finally:
        await kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")


async def test_label_selector_and_deletion(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "a", {"v": "1"}, labels={"app": "web"})
    await create_cm(kube, namespace, "b", {"v": "1"}, labels={"app": "other"})
    sel = {"apiVersion": "v1", "kind": "ConfigMap", "selector": {"matchLabels": {"app": "web"}}}
    await create_jt(kube, namespace, "t", resources(sel))
    await wait_ready(kube, namespace, "t")
    await patch_cm(kube, namespace, "b", {"data": {"v": "2"}})
    assert await no_more_jobs(kube, namespace, "t", 0, 1.0)
    await create_cm(kube, namespace, "c", {"v": "1"}, labels={"app": "web"})
    jobs = await wait_jobs(kube, namespace, "t", 1)
    assert "ConfigMap/" + namespace + "/c created" in jobs[0]["metadata"]["annotations"]["jobtrigger.dev/reason"]
    await kube.delete(f"/api/v1/namespaces/{namespace}/configmaps/a")
    jobs = await wait_jobs(kube, namespace, "t", 2)
    reasons = [j["metadata"]["annotations"]["jobtrigger.dev/reason"] for j in jobs]
    assert "a deleted" in reasons[1], reasons


async def test_unknown_kind_and_namespace_errors(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "nokind", resources({"apiVersion": "v1", "kind": "Gizmo", "name": "x"}))
    jt = await wait_ready(kube, namespace, "nokind", "False")
    c = condition(jt)
    assert c is not None and c["reason"] == "UnknownKind"
    assert "spec.triggers.resources.watch[0]" in c["message"] and "Gizmo" in c["message"]

    await create_jt(
        kube, namespace, "nonode", resources({"apiVersion": "v1", "kind": "Node", "name": "n1", "namespace": "x"})
    )
    c = condition(await wait_ready(kube, namespace, "nonode", "False"))
    assert c is not None and "cluster-scoped" in c["message"] and "watch[0].namespace" in c["message"]

    await create_jt(kube, namespace, "otherns", resources(cm_watch("x", namespace="kube-system")))
    c = condition(await wait_ready(kube, namespace, "otherns", "False"))
    assert c is not None and c["reason"] == "Forbidden" and "kube-system" in c["message"]

    await wait_event(kube, namespace, "nokind", "UnknownKind", type_="Warning")

    # a valid JobTrigger next to the broken ones keeps working
    await create_cm(kube, namespace, "cfg", {"a": "1"})
    await create_jt(kube, namespace, "good", resources(cm_watch("cfg")))
    await wait_ready(kube, namespace, "good")
    await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
    await wait_jobs(kube, namespace, "good", 1)


async def test_invalid_specs_get_conditions_naming_the_field(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "badpath", resources(cm_watch("x", fields=["data.[oops"])))
    c = condition(await wait_ready(kube, namespace, "badpath", "False"))
    assert c is not None and c["reason"] == "InvalidSpec"
    assert "spec.triggers.resources.watch[0].fields[0]" in c["message"]

    # neither name nor selector: refused at admission where the server runs the CRD's CEL rules (1.29+, see
    # test_admission.py), else the controller's condition says the same
    if await server_minor(kube) >= CEL_MINOR:
        with pytest.raises(ApiError) as refused:
            await create_jt(kube, namespace, "both", resources({"apiVersion": "v1", "kind": "ConfigMap"}))
        assert refused.value.status == 422 and "exactly one of name and selector" in refused.value.message
    else:
        await create_jt(kube, namespace, "both", resources({"apiVersion": "v1", "kind": "ConfigMap"}))
        c = condition(await wait_ready(kube, namespace, "both", "False"))
        assert c is not None and "exactly one of name and selector" in c["message"]

    bad_template = {"spec": {"template": {"spec": {"containers": [{"name": "BAD_NAME", "image": "busybox"}]}}}}
    await create_jt(kube, namespace, "badjob", resources(cm_watch("x")), jobTemplate=bad_template)
    c = condition(await wait_ready(kube, namespace, "badjob", "False"))
    assert c is not None and c["reason"] == "InvalidJobTemplate"
    assert "spec.jobTemplate.spec.template.spec.containers[0].name" in c["message"]


async def test_secret_mounted_into_every_container(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await kube.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": "tls"}, "type": "Opaque", "data": {"tls.crt": "YQ=="}},
    )
    template = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "one", "image": "busybox"},
                        {"name": "two", "image": "busybox"},
                    ]
                }
            }
        }
    }
    watch = {"apiVersion": "v1", "kind": "Secret", "name": "tls", "mount": {"mountPath": "/etc/certs"}}
    await create_jt(kube, namespace, "t", resources(watch), jobTemplate=template)
    await wait_ready(kube, namespace, "t")
    await kube.merge_patch(f"/api/v1/namespaces/{namespace}/secrets/tls", {"data": {"tls.crt": "Yg=="}})
    job = (await wait_jobs(kube, namespace, "t", 1))[0]
    pod = job["spec"]["template"]["spec"]
    assert {"name": "certs", "secret": {"secretName": "tls", "defaultMode": 420}} in pod["volumes"]
    for c in pod["containers"]:
        assert {"name": "certs", "mountPath": "/etc/certs", "readOnly": True} in c["volumeMounts"]


async def test_history_prunes_old_finished_jobs(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "cfg", {"a": "0"})
    await create_jt(kube, namespace, "t", resources(cm_watch("cfg")), history=2)
    await wait_ready(kube, namespace, "t")
    names: list[str] = []
    for i in range(1, 5):
        await patch_cm(kube, namespace, "cfg", {"data": {"a": str(i)}})
        jobs = await wait_jobs(kube, namespace, "t", len(names) + 1 if len(names) < 2 else 3)
        new = [j["metadata"]["name"] for j in jobs if j["metadata"]["name"] not in names]
        assert len(new) == 1
        names.append(new[0])
        await finish_job_pods(kube, namespace, new[0])

        async def complete(job: str = new[0]) -> bool:
            got = await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}")
            return bool((got.get("status") or {}).get("succeeded"))

        await wait_for(complete, f"Job {new[0]} complete", timeout=30)

    async def pruned() -> list[str] | None:
        left = [j["metadata"]["name"] for j in await jobs_of(kube, namespace, "t")]
        return left if left == names[-2:] else None

    await wait_for(pruned, "only the 2 newest Jobs left", timeout=30)

    async def last_succeeded() -> bool:
        # written by the sync that pruned, after the deletes: awaited, not read right away
        st = (await get_jt(kube, namespace, "t"))["status"]
        return st.get("lastJobName") == names[-1] and st.get("lastJobStatus") == "Succeeded"

    await wait_for(last_succeeded, f"status.lastJobName {names[-1]} Succeeded")


async def test_manual_run_annotation_runs_once_per_token(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "errand", {"manual": {}})
    jt = await wait_ready(kube, namespace, "errand")
    assert "run-requested" in (condition(jt) or {})["message"]
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/errand"
    await kube.merge_patch(path, {"metadata": {"annotations": {"jobtrigger.dev/run-requested": "first"}}})
    jobs = await wait_jobs(kube, namespace, "errand", 1)
    env = {e["name"]: e.get("value", "") for e in jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["JOBTRIGGER_TRIGGER"] == "manual" and env["JOBTRIGGER_RUN_REQUEST"] == "first"
    await runner.restart()  # the same token after a restart: no second run
    assert await no_more_jobs(kube, namespace, "errand", 1, 1.5)
    await kube.merge_patch(path, {"metadata": {"annotations": {"jobtrigger.dev/run-requested": "second"}}})
    await wait_jobs(kube, namespace, "errand", 2)

    async def recorded() -> bool:
        return (await get_jt(kube, namespace, "errand"))["status"].get("lastRunRequest") == "second"

    await wait_for(recorded, "status.lastRunRequest = second")
    assert await no_more_jobs(kube, namespace, "errand", 2, 1.0)


async def test_errand_strategy_now_runs_and_resets(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(kube, namespace, "errand", {"manual": {"strategy": "now"}})
    await wait_jobs(kube, namespace, "errand", 1)

    async def reset() -> dict[str, Any] | None:
        jt = await get_jt(kube, namespace, "errand")
        ok = jt["spec"]["triggers"]["manual"]["strategy"] == "manual"
        status = jt.get("status") or {}  # the reset can land before the first status write
        return jt if ok and status.get("observedGeneration") == jt["metadata"]["generation"] else None

    await wait_for(reset, "strategy reset to manual")
    assert await no_more_jobs(kube, namespace, "errand", 1, 1.0)
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/errand"
    await kube.merge_patch(path, {"spec": {"triggers": {"manual": {"strategy": "now"}}}})
    await wait_jobs(kube, namespace, "errand", 2)
    await wait_for(reset, "strategy reset to manual again")
