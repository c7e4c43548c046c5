"""Fixtures that run the jobtrigger controller in-process against the suite's real API server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.app import count_request
from jobtrigger.demo import install_crd
from jobtrigger.envtest import KWOK_NODE, KWOK_TOLERATION
from jobtrigger.kube.client import ApiError, KubeClient
from jobtrigger.reactor.controller import Controller, Settings

T = TypeVar("T")


@pytest.fixture(scope="session")
async def kube(kubeconfig: str) -> AsyncIterator[KubeClient]:
    """A KubeClient for the test cluster, with the CRD installed."""
    k = await KubeClient.from_config(kubeconfig)
    await install_crd(k)
    try:
        yield k
    finally:
        await k.close()


class Runner:
    """Starts/stops a controller limited to one namespace; ``restart()`` simulates a controller restart."""

    def __init__(self, kubeconfig: str, namespace: str, *, impersonate: str | None = None, **settings: Any):
        self.impersonate = impersonate
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.settings = settings
        self.controller: Controller | None = None
        self.client: KubeClient | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Controller:
        self.client = await KubeClient.from_config(self.kubeconfig)
        self.client.on_request = count_request  # as the real process does (jobtrigger_api_requests_total)
        if self.impersonate:
            self.client.extra_headers["Impersonate-User"] = self.impersonate
        self.controller = Controller(self.client, Settings(namespace=self.namespace, **self.settings))
        self.task = asyncio.get_running_loop().create_task(self.controller.run())
        await asyncio.wait_for(self.controller.ready.wait(), 30)
        return self.controller

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.client is not None:
            await self.client.close()
        self.task = self.controller = self.client = None

    async def restart(self) -> Controller:
        await self.stop()
        return await self.start()


@pytest.fixture
async def runner(kubeconfig: str, namespace: str, kube: KubeClient) -> AsyncIterator[Runner]:
    r = Runner(kubeconfig, namespace)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def wait_for(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def jt_path(ns: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}" + (f"/{name}" if name else "")


async def create_jt(kube: KubeClient, ns: str, name: str, triggers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JobTrigger",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "triggers": triggers,
            "jobTemplate": spec.pop(
                "jobTemplate",
                {
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                            }
                        },
                    }
                },
            ),
            **spec,
        },
    }
    return await kube.create(jt_path(ns), body)


async def get_jt(kube: KubeClient, ns: str, name: str) -> dict[str, Any]:
    return await kube.get(jt_path(ns, name))


async def jobs_of(kube: KubeClient, ns: str, owner: str) -> list[dict[str, Any]]:
    got = await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector=f"jobtrigger.dev/owner={owner}")
    items: list[dict[str, Any]] = got.get("items") or []
    return sorted(items, key=lambda j: j["metadata"]["annotations"].get("jobtrigger.dev/created", ""))


def condition(jt: dict[str, Any], type_: str = "Ready") -> dict[str, Any] | None:
    for c in (jt.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


async def wait_ready(kube: KubeClient, ns: str, name: str, status: str = "True") -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        jt = await get_jt(kube, ns, name)
        c = condition(jt)
        return jt if c and c.get("status") == status else None

    return await wait_for(probe, f"JobTrigger {name} Ready={status}")


async def wait_jobs(kube: KubeClient, ns: str, owner: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        jobs = await jobs_of(kube, ns, owner)
        return jobs if len(jobs) >= count else None

    return await wait_for(probe, f"{count} Job(s) of {owner}", timeout)


async def stays(probe: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """True if ``probe`` holds for the whole period (used to assert that nothing *more* happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not await probe():
            return False
        await asyncio.sleep(0.1)
    return True


async def create_cm(kube: KubeClient, ns: str, name: str, data: dict[str, str], **meta: Any) -> dict[str, Any]:
    return await kube.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": name, **meta}, "data": data})


async def patch_cm(kube: KubeClient, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return await kube.merge_patch(f"/api/v1/namespaces/{ns}/configmaps/{name}", patch)


#: annotations read by the KWOK stages in jobtrigger/envtest_stages/kwok.yaml
KWOK_EXIT_CODE = "envtest.jobtrigger.dev/exit-code"
KWOK_REASON = "envtest.jobtrigger.dev/reason"
KWOK_MESSAGE = "envtest.jobtrigger.dev/message."  # + container name
KWOK_READY = "envtest.jobtrigger.dev/ready"
KWOK_CRASH = "envtest.jobtrigger.dev/crash"

_kwok_seen: list[bool] = []  # one cluster per test session: looked up once


async def has_kwok(kube: KubeClient) -> bool:
    """True when the cluster has the envtest's Ready KWOK node: kube-scheduler places pods that tolerate
    :data:`KWOK_TOLERATION` there and KWOK gives them a node's lifecycle (jobtrigger/envtest_stages/kwok.yaml)."""
    if not _kwok_seen:
        try:
            node = await kube.get(f"/api/v1/nodes/{KWOK_NODE}")
        except ApiError:
            node = {}
        conds = (node.get("status") or {}).get("conditions") or []
        _kwok_seen.append(any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds))
    return _kwok_seen[0]


@pytest.fixture
async def kwok(kube: KubeClient) -> bool:
    """Whether pods can be given to KWOK (see :func:`has_kwok`)."""
    return await has_kwok(kube)


def on_kwok_node(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """``pod_spec`` with the toleration that lets kube-scheduler place the pod on the KWOK node."""
    return {**pod_spec, "tolerations": [*(pod_spec.get("tolerations") or []), dict(KWOK_TOLERATION)]}


async def hand_to_kwok(kube: KubeClient, ns: str, pod: dict[str, Any], annotations: dict[str, str]) -> None:
    """Let an existing Pending pod run on the KWOK node: add the toleration (pods may gain tolerations) and the
    annotations the KWOK stages read; kube-scheduler binds it, KWOK drives its status from there."""
    spec = on_kwok_node({"tolerations": pod["spec"].get("tolerations") or []})
    name = pod["metadata"]["name"]
    await kube.merge_patch(
        f"/api/v1/namespaces/{ns}/pods/{name}", {"metadata": {"annotations": annotations}, "spec": spec}
    )


async def finish_job_pods(
    kube: KubeClient, ns: str, job: str, phase: str = "Succeeded", messages: dict[str, str] | None = None
) -> None:
    """Let the Job controller's pod of ``job`` terminate with ``phase`` (and these termination messages).

    With KWOK (the default control plane): the pod is handed to the KWOK node, kube-scheduler binds it and KWOK's
    stages run it to Succeeded (exit code 0) or Failed (exit code 1) with the messages, as a kubelet would report
    it; returns once the pod is terminal. Without KWOK (an existing cluster): play the kubelet and set the phase
    through the status subresource.
    """

    async def pods() -> list[dict[str, Any]] | None:
        got = await kube.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"job-name={job}")
        return got.get("items") or None

    found = await wait_for(pods, f"pod of Job {job}")
    if await has_kwok(kube):
        await _finish_on_kwok(kube, ns, found, phase, messages or {})
        return
    for pod in found:
        name = pod["metadata"]["name"]
        code = 0 if phase == "Succeeded" else 1
        status = {
            "phase": phase,
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "reason": "Completed" if code == 0 else "Error",
                            "finishedAt": "2026-01-01T00:00:00Z",
                            **({"message": messages[c["name"]]} if messages and c["name"] in messages else {}),
                        }
                    },
                }
                for c in pod["spec"]["containers"]
            ],
        }
        with contextlib.suppress(ApiError):
            await kube.merge_patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status})


async def _finish_on_kwok(
    kube: KubeClient, ns: str, pods: list[dict[str, Any]], phase: str, messages: dict[str, str]
) -> None:
    annotations = {KWOK_EXIT_CODE: "0" if phase == "Succeeded" else "1"}
    annotations.update({KWOK_MESSAGE + c: m for c, m in messages.items()})
    for pod in pods:
        with contextlib.suppress(ApiError):  # gone already (the Job was deleted meanwhile)
            await hand_to_kwok(kube, ns, pod, annotations)
    for pod in pods:
        path = f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}"

        async def terminal(path: str = path) -> str | None:
            try:
                got = await kube.get(path)
            except ApiError as e:
                return "gone" if e.status == 404 else None
            p = str((got.get("status") or {}).get("phase") or "")
            return p if p in ("Succeeded", "Failed") else None

        assert await wait_for(terminal, f"{path} {phase} on the KWOK node", timeout=30) in (phase, "gone")


def free_port() -> int:
    """A free loopback port (for a controller's --http-addr)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: what a namespaced controller needs to handle ConfigMap-watching JobTriggers (the chart's rules, minus the rest)
CONTROLLER_RULES = [
    {"apiGroups": ["jobtrigger.dev"], "resources": ["jobtriggers"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["jobtrigger.dev"], "resources": ["jobtriggers/status"], "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
]


async def grant_role(kube: KubeClient, ns: str, user: str, rules: list[dict[str, Any]]) -> None:
    """A Role with ``rules`` in ``ns``, bound to ``user`` (e.g. an impersonated ServiceAccount)."""
    base = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
    await kube.create(f"{base}/roles", {"metadata": {"name": "jobtrigger"}, "rules": rules})
    await kube.create(
        f"{base}/rolebindings",
        {
            "metadata": {"name": "jobtrigger"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "jobtrigger"},
            "subjects": [{"kind": "User", "name": user}],
        },
    )
