"""An API server that throttles (429) and fails (503): retries with backoff, no occurrence lost or doubled, and the
errors are visible in the metrics. Injected by an HTTPS proxy in front of the real kube-apiserver."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from jobtrigger import metrics
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import KubeClient
from tests.faultproxy import HttpFaultProxy
from tests.integration.conftest import Runner, create_cm, create_jt, jobs_of, patch_cm, stays, wait_jobs, wait_ready


async def test_throttled_api_server_loses_nothing(
    kube: KubeClient, kubeconfig: str, namespace: str, control_plane: ControlPlane | None, tmp_path: Path
) -> None:
    if control_plane is None:
        pytest.skip("needs the suite's own control plane (its serving certificate)")
    proxy = HttpFaultProxy.in_front_of(control_plane)
    await proxy.start()
    via_proxy = proxy.kubeconfig_via_proxy(kubeconfig, tmp_path / "kubeconfig")

    n = 12
    for i in range(n):
        await create_cm(kube, namespace, f"cm{i}", {"v": "0"})
        watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"cm{i}"}]
        await create_jt(kube, namespace, f"t{i}", {"resources": {"cooldown": "0s", "watch": watch}}, history=10)
    runner = Runner(via_proxy, namespace)
    await runner.start()
    try:
        for i in range(n):
            await wait_ready(kube, namespace, f"t{i}")
        rnd = random.Random(7)

        def inject(method: str, path: str) -> int | None:
            writes = method in ("POST", "PATCH", "PUT") and (path.endswith("/jobs") or path.endswith("/status"))
            if writes and rnd.random() < 0.3:
                return 429
            if method == "GET" and "watch" not in path and rnd.random() < 0.2:
                return 503
            return None

        before_429 = metrics.API_REQUESTS.labels("POST", "jobs", "429")._value.get()
        proxy.inject = inject
        for round_ in (1, 2):  # two changes per ConfigMap, the second after the first one's Job exists
            for i in range(n):
                await patch_cm(kube, namespace, f"cm{i}", {"data": {"v": str(round_)}})
            for i in range(n):
                await wait_jobs(kube, namespace, f"t{i}", round_, timeout=60)
        proxy.inject = lambda method, path: None

        async def settled() -> bool:
            counts = [len(await jobs_of(kube, namespace, f"t{i}")) for i in range(n)]
            return counts == [2] * n

        assert await stays(settled, 2.0), "every change exactly one Job"
        assert proxy.injected.get(429, 0) > 0
        assert metrics.API_REQUESTS.labels("POST", "jobs", "429")._value.get() > before_429
        print(f"\ninjected: {proxy.injected}, forwarded {proxy.forwarded}")
    finally:
        await runner.stop()
        await proxy.stop()
