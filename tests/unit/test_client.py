"""KubeClient's one-time reading of the proxy environment (no per-request env/netrc lookups)."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client

from jobtrigger.kube.client import KubeClient


async def _kube(host: str) -> KubeClient:
    cfg = client.Configuration()
    cfg.host = host
    return KubeClient(client.ApiClient(configuration=cfg))


async def test_the_session_no_longer_reads_the_environment_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    kube = await _kube("https://10.1.2.3:6443")
    try:
        session = kube.api_client.rest_client.pool_manager
        assert session.trust_env is False  # fails if aiohttp renamed the attribute we set
        assert not kube.api_client.rest_client.proxy
    finally:
        await kube.close()


async def test_a_proxy_from_the_environment_is_still_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kube = await _kube("https://10.1.2.3:6443")
    try:
        assert kube.api_client.rest_client.proxy == "http://proxy.example:3128"
    finally:
        await kube.close()


async def test_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "10.1.2.3")
    kube = await _kube("https://10.1.2.3:6443")
    try:
        assert not kube.api_client.rest_client.proxy
    finally:
        await kube.close()
