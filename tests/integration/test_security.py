"""A JobTrigger in namespace A cannot read, mount or watch what is in namespace B, nor run Jobs there."""

from __future__ import annotations

from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import Runner, condition, create_jt, jobs_of, wait_ready


async def test_no_cross_namespace_access_by_default(kube: KubeClient, namespace: str, runner: Runner) -> None:
    other = f"{namespace}-b"
    await kube.create("/api/v1/namespaces", {"metadata": {"name": other}})
    try:
        await kube.create(f"/api/v1/namespaces/{other}/secrets", {"metadata": {"name": "s"}, "data": {"k": "dg=="}})
        secret = {"apiVersion": "v1", "kind": "Secret", "name": "s", "namespace": other}
        await create_jt(kube, namespace, "watch", {"resources": {"watch": [secret]}})
        await create_jt(kube, namespace, "mount", {"resources": {"watch": [{**secret, "mount": {}}]}})
        pods = {"selector": {"matchLabels": {"a": "b"}}, "when": ["Created"], "namespace": other}
        await create_jt(kube, namespace, "pods", {"pods": pods})
        for name, field in (("watch", "watch[0].namespace"), ("mount", "watch[0]"), ("pods", "pods.namespace")):
            c = condition(await wait_ready(kube, namespace, name, "False"))
            assert c is not None and c["reason"] == "Forbidden", (name, c)
            assert field in c["message"] and other in c["message"], (name, c)
        # nothing was watched in B, and the status holds no hash of B's Secret
        for name in ("watch", "mount"):
            jt = await kube.get(f"/apis/jobtrigger.dev/v1alpha1/namespaces/{namespace}/jobtriggers/{name}")
            assert "resourceHashes" not in jt["status"]
        assert not [s for s in runner.controller.resource_watches.scopes if s.namespace == other]  # type: ignore[union-attr]
        # Jobs only ever go to the JobTrigger's own namespace (there is no field to choose another)
        assert await jobs_of(kube, other, "watch") == []
    finally:
        await kube.delete(f"/api/v1/namespaces/{other}")
