"""Watches that die without telling anyone (half-open TCP) are detected by the inactivity timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlparse

import yaml

from jobtrigger.kube.client import KubeClient
from tests.faultproxy import FaultProxy
from tests.integration.conftest import Runner, create_cm, create_jt, jobs_of, patch_cm, wait_jobs, wait_ready


async def test_silent_dead_watch_is_reopened(kube: KubeClient, kubeconfig: str, namespace: str, tmp_path: Path) -> None:
    cfg = yaml.safe_load(Path(kubeconfig).read_text())  # noqa: ASYNC240
    server = cfg["clusters"][0]["cluster"]["server"]
    url = urlparse(server)
    proxy = FaultProxy(url.hostname or "127.0.0.1", url.port or 443)
    await proxy.start()
    runner = Runner(
        proxy.kubeconfig_via_proxy(kubeconfig, tmp_path / "kubeconfig"),
        namespace,
        watch_timeout=30,
        inactivity_timeout=3.0,
    )
    try:
        await create_cm(kube, namespace, "cfg", {"a": "1"})
        await runner.start()
        await create_jt(
            kube,
            namespace,
            "t",
            {"resources": {"cooldown": "0s", "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]}},
        )
        await wait_ready(kube, namespace, "t")

        proxy.blackhole()  # every stream the controller holds is now dead, and it is not told
        await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
        await asyncio.sleep(1.0)
        assert await jobs_of(kube, namespace, "t") == []
        proxy.restore()  # new connections work again; the old ones stay dead
        await wait_jobs(kube, namespace, "t", 1, timeout=20)
        ctl = runner.controller
        assert ctl is not None
        scope = next(iter(ctl.resource_watches.scopes.values()))
        assert scope.watcher is not None and scope.watcher.stats.inactivity_restarts >= 1
    finally:
        await runner.stop()
        await proxy.stop()
