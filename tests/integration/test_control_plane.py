"""Smoke tests of the test infrastructure: a real apiserver, and a real Job controller when KCM runs."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from kubernetes_asyncio import client

from jobtrigger.envtest import ControlPlane

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


def smoke_job(name: str) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    # unschedulable: on a real cluster (JOBTRIGGER_TEST_KUBECONFIG) no kubelet interferes
                    node_selector={"jobtrigger.dev/envtest": "no-such-node"},
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
    api_client: client.ApiClient, namespace: str, control_plane: ControlPlane | None
) -> None:
    """The real Job controller creates the pod; we play the kubelet; the controller marks the Job done."""
    if control_plane is not None and not control_plane.has_controller_manager:
        pytest.skip("control plane runs without kube-controller-manager")
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    t0 = time.monotonic()
    await batch.create_namespaced_job(namespace, smoke_job("smoke"))
    pod = await wait_for_job_pod(api_client, namespace, "smoke")
    print(f"\nKCM created the Job's pod {time.monotonic() - t0:.2f}s after the Job was created")

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
    assert any(c.type == "Complete" and c.status == "True" for c in done.status.conditions or [])


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
