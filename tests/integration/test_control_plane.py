"""Smoke tests of the test infrastructure: a real apiserver, a real Job controller when KCM runs, and real pod
lifecycles (kube-scheduler + KWOK) on the default control plane."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from kubernetes_asyncio import client

from jobtrigger.envtest import KWOK_NODE, KWOK_TOLERATION, ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import KWOK_EXIT_CODE, Runner, create_jt, get_jt, wait_for, wait_jobs, wait_ready
from tests.integration.test_concurrency import request_run

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """Poll ``probe`` every 0.1 s until it returns something other than None."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_version(api_client: client.ApiClient, control_plane: ControlPlane | None) -> None:
    info = await client.VersionApi(api_client).get_code()
    assert info.major == "1"
    assert re.match(r"v1\.\d+\.\d+", info.git_version)
    if control_plane is not None:
        assert info.git_version == control_plane.version


async def test_configmap_roundtrip(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="smoke"), data={"greeting": "hello"})
    created = await core.create_namespaced_config_map(namespace, body)
    assert created.metadata.resource_version
    got = await core.read_namespaced_config_map("smoke", namespace)
    assert got.data == {"greeting": "hello"}
    assert got.metadata.uid == created.metadata.uid


def smoke_job(name: str, *, kwok: bool = False) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    # KWOK: scheduled onto the KWOK node, which runs it to completion. Otherwise unschedulable: on
                    # a real cluster (JOBTRIGGER_TEST_KUBECONFIG) no kubelet interferes
                    node_selector={"kubernetes.io/hostname": KWOK_NODE}
                    if kwok
                    else {"jobtrigger.dev/envtest": "no-such-node"},
                    tolerations=[client.V1Toleration(**KWOK_TOLERATION)] if kwok else None,
                    containers=[client.V1Container(name="main", image="busybox", command=["true"])],
                )
            ),
        ),
    )


async def wait_for_job_pod(api_client: client.ApiClient, namespace: str, job: str) -> client.V1Pod:
    core = client.CoreV1Api(api_client)

    async def job_pod() -> client.V1Pod | None:
        pods = await core.list_namespaced_pod(namespace, label_selector=f"job-name={job}")
        return pods.items[0] if pods.items else None

    return await eventually(job_pod, 30, f"the Job controller to create a pod for Job {job}")


async def test_job_controller_runs_jobs(
    api_client: client.ApiClient, namespace: str, control_plane: ControlPlane | None, kwok: bool
) -> None:
    """The real Job controller creates the pod; kube-scheduler + KWOK run it (or we play the kubelet); the Job
    controller marks the Job done."""
    if control_plane is not None and not control_plane.has_controller_manager:
        pytest.skip("control plane runs without kube-controller-manager")
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    t0 = time.monotonic()
    await batch.create_namespaced_job(namespace, smoke_job("smoke", kwok=kwok))
    pod = await wait_for_job_pod(api_client, namespace, "smoke")
    print(f"\nKCM created the Job's pod {time.monotonic() - t0:.2f}s after the Job was created")
    if control_plane is not None:  # Job tracking with pod finalizers: GA in 1.26, absent in 1.20
        tracked = "batch.kubernetes.io/job-tracking" in (pod.metadata.finalizers or [])
        assert tracked == (control_plane.minor >= 26), pod.metadata.finalizers
    if kwok:

        async def succeeded_pod() -> client.V1Pod | None:
            p = await core.read_namespaced_pod(pod.metadata.name, namespace)
            return p if p.status.phase == "Succeeded" else None

        done_pod = await eventually(succeeded_pod, 30, "KWOK to run the Job's pod to Succeeded")
        assert done_pod.spec.node_name == KWOK_NODE
        print(f"pod scheduled onto {KWOK_NODE} and Succeeded {time.monotonic() - t0:.2f}s after the Job was created")
        await eventually(lambda: _job_with_condition(batch, namespace, "smoke", "Complete"), 30, "Job Complete")
        return

    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    await core.patch_namespaced_pod_status(
        pod.metadata.name,
        namespace,
        {
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "terminated": {
                                "exitCode": 0,
                                "reason": "Completed",
                                "startedAt": now,
                                "finishedAt": now,
                            }
                        },
                    }
                ],
            }
        },
    )

    async def succeeded() -> client.V1Job | None:
        j = await batch.read_namespaced_job_status("smoke", namespace)
        return j if j.status and j.status.succeeded == 1 else None

    t1 = time.monotonic()
    done = await eventually(succeeded, 30, "the Job to report status.succeeded == 1")
    print(f"Job status.succeeded == 1 {time.monotonic() - t1:.2f}s after the pod was marked Succeeded")
    assert done.status.succeeded == 1
    # the Job controller may add the Complete condition in a later write than the count: awaited
    await eventually(lambda: _job_with_condition(batch, namespace, "smoke", "Complete"), 30, "the Complete condition")


async def _job_with_condition(batch: client.BatchV1Api, ns: str, name: str, type_: str) -> client.V1Job | None:
    j = await batch.read_namespaced_job_status(name, ns)
    conds = (j.status.conditions if j.status else None) or []
    return j if any(c.type == type_ and c.status == "True" for c in conds) else None


def _conditions(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


@pytest.mark.parametrize("outcome", ["Succeeded", "Failed"])
async def test_controller_job_runs_on_kwok_with_interim_conditions(
    kube: KubeClient, namespace: str, runner: Runner, control_plane: ControlPlane | None, kwok: bool, outcome: str
) -> None:
    """A Job created by jobtrigger runs on the KWOK node and finishes through the real Job controller. On >= 1.31
    the Job controller first sets SuccessCriteriaMet / FailureTarget, then Complete / Failed (once the pods are
    terminal); jobtrigger counts the Job as finished only on Complete / Failed (summarize_job)."""
    if not kwok:
        pytest.skip("needs kube-scheduler + KWOK (the default control plane)")
    code = "0" if outcome == "Succeeded" else "1"
    template = {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {KWOK_EXIT_CODE: code}},
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": [dict(KWOK_TOLERATION)],
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                },
            },
        }
    }
    await create_jt(kube, namespace, "t", {"manual": {}}, jobTemplate=template)
    await wait_ready(kube, namespace, "t")
    t0 = time.monotonic()
    await request_run(kube, namespace, "t", "go")
    job = (await wait_jobs(kube, namespace, "t", 1))[0]
    name = job["metadata"]["name"]
    final, interim = ("Complete", "SuccessCriteriaMet") if code == "0" else ("Failed", "FailureTarget")

    async def finished() -> dict[str, Any] | None:
        got = await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}")
        return got if final in _conditions(got) else None

    done = await wait_for(finished, f"Job {name} {final}", timeout=30)
    t_done = time.monotonic() - t0
    conds = _conditions(done)
    minor = control_plane.minor if control_plane is not None else 99
    if minor >= 31:
        assert interim in conds, conds
        assert conds[interim]["lastTransitionTime"] <= conds[final]["lastTransitionTime"]
    else:  # the interim conditions do not exist before 1.31 (1.20: only Complete / Failed)
        assert interim not in conds, conds
    st = done.get("status") or {}
    assert st.get("succeeded" if code == "0" else "failed") == 1

    async def recorded() -> dict[str, Any] | None:
        status = (await get_jt(kube, namespace, "t")).get("status") or {}
        return status if status.get("lastJobName") == name and status.get("lastJobStatus") == outcome else None

    await wait_for(recorded, f"JobTrigger status lastJobStatus={outcome}", timeout=30)
    print(f"\nJob {final} {t_done:.2f}s after the run request; conditions: {sorted(conds)}")


async def test_restart_apiserver_keeps_data(
    api_client: client.ApiClient, namespace: str, control_plane: ControlPlane | None
) -> None:
    if control_plane is None:
        pytest.skip("needs the suite's own control plane")
    core = client.CoreV1Api(api_client)
    await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survivor"), data={"k": "v"})
    )
    url = control_plane.server_url
    await control_plane.arestart_apiserver()
    assert control_plane.server_url == url
    print(f"\nkube-apiserver restarted in {control_plane.timings['restart_apiserver_s']:.2f}s")
    # the session client (with pooled connections to the old process) keeps working
    got = await core.read_namespaced_config_map("survivor", namespace)
    assert got.data == {"k": "v"}
    if control_plane.has_controller_manager:
        # kube-controller-manager re-establishes its watches by itself
        t0 = time.monotonic()
        await client.BatchV1Api(api_client).create_namespaced_job(namespace, smoke_job("after-restart"))
        await wait_for_job_pod(api_client, namespace, "after-restart")
        print(f"KCM created a Job pod {time.monotonic() - t0:.2f}s after the Job was created (after restart)")


# ---- what differs between the supported versions (docs/compatibility.md quotes these) ------------------------


def _jt_with_typo(name: str) -> dict[str, Any]:
    watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}]
    return {
        "apiVersion": "jobtrigger.dev/v1alpha1",
        "kind": "JobTrigger",
        "metadata": {"name": name},
        "spec": {
            "triggers": {"resources": {"watch": watch, "cooldwon": "5s"}},  # typo of cooldown
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}},
        },
    }


async def test_unknown_fields_per_version(kube: KubeClient, namespace: str, control_plane: ControlPlane | None) -> None:
    """fieldValidation=Strict (what kubectl >= 1.27 sends by default) refuses a typo on >= 1.25 (the parameter is
    unknown to 1.20, which prunes the field silently); without the parameter both prune it."""
    if control_plane is None:
        pytest.skip("asserts per-version behaviour of the suite's own control plane")
    path = f"/apis/jobtrigger.dev/v1alpha1/namespaces/{namespace}/jobtriggers"
    plain = await kube.create(path, _jt_with_typo("plain"))
    assert "cooldwon" not in plain["spec"]["triggers"]["resources"]
    if control_plane.minor >= 25:
        with pytest.raises(ApiError) as err:
            await kube.create(path, _jt_with_typo("strict"), fieldValidation="Strict")
        assert err.value.status == 400 and 'unknown field "spec.triggers.resources.cooldwon"' in str(err.value)
    else:
        strict = await kube.create(path, _jt_with_typo("strict"), fieldValidation="Strict")
        assert "cooldwon" not in strict["spec"]["triggers"]["resources"]


async def test_served_apis_per_version(kube: KubeClient, control_plane: ControlPlane | None) -> None:
    """OpenAPI v3 (what `kubectl explain` reads on >= 1.27) and batch/v1 CronJob (>= 1.21)."""
    if control_plane is None:
        pytest.skip("asserts per-version behaviour of the suite's own control plane")
    minor = control_plane.minor
    try:
        v3 = await kube.get("/openapi/v3")
    except ApiError as e:
        assert minor < 24 and e.status == 404, e
    else:
        assert minor >= 24 and "apis/jobtrigger.dev/v1alpha1" in v3["paths"]
    batch = {r["name"] for r in (await kube.get("/apis/batch/v1"))["resources"]}
    assert ("cronjobs" in batch) == (minor >= 21)
