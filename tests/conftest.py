"""Shared fixtures.

Integration tests (tests/integration/) run against a real kube-apiserver + etcd (+ kube-controller-manager,
kube-scheduler and KWOK) of the Kubernetes version $JOBTRIGGER_K8S_VERSION (default: the newest supported), started
once per session by :class:`jobtrigger.envtest.ControlPlane`, or against an existing cluster when
JOBTRIGGER_TEST_KUBECONFIG is set. All fixtures are lazy: unit tests never start the control plane.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from jobtrigger.envtest import ControlPlane, existing_kubeconfig, k8s_version
from jobtrigger.logs import TextFormatter

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_report_header(config: pytest.Config) -> str:
    if existing_kubeconfig() is not None:
        return f"integration tests: the cluster of JOBTRIGGER_TEST_KUBECONFIG={existing_kubeconfig()}"
    return f"integration tests: envtest Kubernetes {k8s_version()} (JOBTRIGGER_K8S_VERSION)"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """A failing test's report shows the controller's log records with their structured fields (``error=``,
    ``job=``...), as ``--log-format text`` prints them: what a flake needs to be explained afterwards."""
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    for handler in (getattr(plugin, "report_handler", None), getattr(plugin, "caplog_handler", None)):
        if handler is not None:
            handler.setFormatter(TextFormatter())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane | None]:
    """The session's envtest control plane; None when JOBTRIGGER_TEST_KUBECONFIG points at a cluster."""
    if existing_kubeconfig() is not None:
        yield None
        return
    cp = ControlPlane()
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane | None) -> str:
    """Path of the kubeconfig for the cluster under test."""
    if control_plane is not None:
        return str(control_plane.kubeconfig_path)
    path = existing_kubeconfig()
    assert path is not None
    return path


@pytest.fixture(scope="session")
async def api_client(kubeconfig: str) -> AsyncIterator[client.ApiClient]:
    api = await k8s_config.new_client_from_config(config_file=kubeconfig)
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
async def namespace(api_client: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace ``jt-test-<random>``; deleted afterwards (without waiting for it to go away)."""
    core = client.CoreV1Api(api_client)
    name = f"jt-test-{secrets.token_hex(4)}"
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            await core.delete_namespace(name, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise
