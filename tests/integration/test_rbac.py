"""The controller under a least-privilege identity: missing permissions become a clear condition."""

from __future__ import annotations

from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    CONTROLLER_RULES,
    Runner,
    condition,
    create_cm,
    create_jt,
    grant_role,
    patch_cm,
    wait_jobs,
    wait_ready,
)


async def test_missing_watch_permission_is_reported(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    sa = f"system:serviceaccount:{namespace}:jobtrigger"
    await grant_role(kube, namespace, sa, CONTROLLER_RULES)
    runner = Runner(kubeconfig, namespace, impersonate=sa)
    await runner.start()
    try:
        # allowed: ConfigMaps work end to end with only these namespaced permissions
        await create_cm(kube, namespace, "cfg", {"a": "1"})
        await create_jt(
            kube,
            namespace,
            "ok",
            {"resources": {"cooldown": "0s", "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]}},
        )
        await wait_ready(kube, namespace, "ok")
        await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
        await wait_jobs(kube, namespace, "ok", 1)
        # not allowed: Secrets
        await create_jt(
            kube, namespace, "nope", {"resources": {"watch": [{"apiVersion": "v1", "kind": "Secret", "name": "s"}]}}
        )
        c = condition(await wait_ready(kube, namespace, "nope", "False"))
        assert c is not None and c["reason"] == "WatchFailed"
        assert "secrets.core" in c["message"] and "403" in c["message"]
    finally:
        await runner.stop()


async def test_two_namespaces_with_roles_only(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    """`--namespace a,b`: one watch per namespace, so Roles in each (no ClusterRole) are enough."""
    other = f"{namespace}-b"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": other}})
    sa = f"system:serviceaccount:{namespace}:jobtrigger"
    try:
        for ns in (namespace, other):
            await grant_role(kube, ns, sa, CONTROLLER_RULES)
        runner = Runner(kubeconfig, f"{namespace},{other}", impersonate=sa)
        await runner.start()
        try:
            for ns in (namespace, other):
                await create_cm(kube, ns, "cfg", {"a": "1"})
                watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]
                await create_jt(kube, ns, "t", {"resources": {"cooldown": "0s", "watch": watch}})
            for ns in (namespace, other):
                await wait_ready(kube, ns, "t")
                await patch_cm(kube, ns, "cfg", {"data": {"a": "2"}})
                await wait_jobs(kube, ns, "t", 1)
        finally:
            await runner.stop()
    finally:
        await kube.delete(f"/api/v1/namespaces/{other}")
