"""rerunOnConfigChange (rows E6, Q3): a change to a ConfigMap/Secret the Job template uses runs the Job again."""

from __future__ import annotations

from typing import Any

from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import Runner, create_cm, create_jt, jobs_of, patch_cm, stays, wait_jobs, wait_ready


async def test_referenced_config_change_reruns(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_cm(kube, namespace, "settings", {"a": "1"})
    await create_cm(kube, namespace, "unrelated", {"a": "1"})
    await kube.create(f"/api/v1/namespaces/{namespace}/secrets", {"metadata": {"name": "creds"}, "data": {"p": "YQ=="}})
    template: dict[str, Any] = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "envFrom": [{"configMapRef": {"name": "settings"}}],
                            "volumeMounts": [{"name": "c", "mountPath": "/creds"}],
                        }
                    ],
                    "volumes": [{"name": "c", "secret": {"secretName": "creds"}}],
                }
            }
        }
    }
    await create_jt(
        kube,
        namespace,
        "t",
        {"schedule": {"cron": "@once"}},
        jobTemplate=template,
        rerunOnConfigChange=True,
        history=10,
    )
    await wait_jobs(kube, namespace, "t", 1)
    await wait_ready(kube, namespace, "t")
    await patch_cm(kube, namespace, "unrelated", {"data": {"a": "2"}})
    await patch_cm(kube, namespace, "settings", {"metadata": {"labels": {"x": "y"}}})  # not data: no re-run

    async def one() -> bool:
        return len(await jobs_of(kube, namespace, "t")) == 1

    assert await stays(one, 1.5)
    await patch_cm(kube, namespace, "settings", {"data": {"a": "2"}})
    jobs = await wait_jobs(kube, namespace, "t", 2)
    assert jobs[1]["metadata"]["labels"]["jobtrigger.dev/trigger"] == "config"
    assert "referenced by the Job template" in jobs[1]["metadata"]["annotations"]["jobtrigger.dev/reason"]
    await kube.merge_patch(f"/api/v1/namespaces/{namespace}/secrets/creds", {"data": {"p": "Yg=="}})
    jobs = await wait_jobs(kube, namespace, "t", 3)
    assert "Secret/" in jobs[2]["metadata"]["annotations"]["jobtrigger.dev/reason"]
    await runner.restart()  # nothing changed meanwhile: no re-run

    async def three() -> bool:
        return len(await jobs_of(kube, namespace, "t")) == 3

    assert await stays(three, 1.5)
