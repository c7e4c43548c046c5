"""Pod Security admission still applies to the pods of a JobTrigger's Jobs.

Creating a JobTrigger is creating Jobs in its namespace with the controller's permissions (docs/security.md), so
the namespace's own guard rails must hold. Two namespaces, one JobTrigger each asking for a privileged pod: in the
one labelled ``pod-security.kubernetes.io/enforce: restricted`` the controller still creates the Job (admission
only warns about a Job's template), but the Job controller's pod is refused (Event ``FailedCreate`` on the Job,
"violates PodSecurity"), and no pod exists; in the unlabelled one the same Job gets its pod. Pod Security
admission exists from Kubernetes 1.23 (beta, on by default): skipped on older servers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from jobtrigger.jobs.builder import ANNOTATION_RUN_REQUESTED
from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import Runner, create_jt, jt_path, wait_for, wait_jobs, wait_ready

PRIVILEGED = {
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": "busybox", "command": ["true"], "securityContext": {"privileged": True}}
                ],
            }
        },
    }
}


async def server_minor(kube: KubeClient) -> int:
    m = re.match(r"\d+", str((await kube.get("/version"))["minor"]))
    return int(m.group()) if m else 99


async def test_a_restricted_namespace_refuses_the_privileged_pod_of_a_jobtriggers_job(
    kube: KubeClient, kubeconfig: str, namespace: str
) -> None:
    if await server_minor(kube) < 23:
        pytest.skip("Pod Security admission exists from Kubernetes 1.23 (this server is older)")
    restricted, open_ns = namespace, f"{namespace}-open"
    await kube.merge_patch(
        f"/api/v1/namespaces/{restricted}",
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    await kube.create("/api/v1/namespaces", {"metadata": {"name": open_ns}})
    runner = Runner(kubeconfig, f"{restricted},{open_ns}")
    await runner.start()
    try:
        for ns in (restricted, open_ns):
            await create_jt(kube, ns, "priv", {"manual": {}}, jobTemplate=PRIVILEGED)
            # the template's dry run passes: Pod Security admission only warns about a Job's pod template
            await wait_ready(kube, ns, "priv")
            await kube.merge_patch(jt_path(ns, "priv"), {"metadata": {"annotations": {ANNOTATION_RUN_REQUESTED: "1"}}})
        jobs = {ns: (await wait_jobs(kube, ns, "priv", 1))[0]["metadata"]["name"] for ns in (restricted, open_ns)}

        async def pods(ns: str) -> list[dict[str, Any]]:
            got = await kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"job-name={jobs[ns]}")
            return list(got.get("items") or [])

        # the unrestricted namespace: the Job controller creates the privileged pod
        [pod] = await wait_for(lambda: pods(open_ns), "the pod of the Job in the open namespace", timeout=30)
        assert pod["spec"]["containers"][0]["securityContext"]["privileged"] is True

        # the restricted namespace: the Job controller's pod create is refused by Pod Security admission
        async def failed_create() -> dict[str, Any] | None:
            got = await kube.get(
                f"/api/v1/namespaces/{restricted}/events",
                fieldSelector=f"involvedObject.kind=Job,involvedObject.name={jobs[restricted]}",
            )
            found = [e for e in got.get("items") or [] if e.get("reason") == "FailedCreate"]
            return found[0] if found else None

        event = await wait_for(failed_create, "a FailedCreate Event on the Job", timeout=30)
        assert event["type"] == "Warning"
        assert "violates PodSecurity" in event["message"] and "restricted" in event["message"], event["message"]
        assert "privileged" in event["message"], event["message"]
        assert await pods(restricted) == []
        job = await kube.get(f"/apis/batch/v1/namespaces/{restricted}/jobs/{jobs[restricted]}")
        print(f"restricted Job status: {job.get('status')}\nFailedCreate: {event['message']}")  # shown with -s
        assert not (job.get("status") or {}).get("active")
        assert not (job.get("status") or {}).get("succeeded")
    finally:
        await runner.stop()
        await kube.delete(f"/api/v1/namespaces/{open_ns}")
