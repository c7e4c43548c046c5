"""``jobtrigger demo``: the README's first command.

Starts a local control plane (kube-apiserver + etcd + kube-controller-manager + kube-scheduler + KWOK with one
fake node, the newest Kubernetes unless $JOBTRIGGER_K8S_VERSION says otherwise; built once and cached), installs
the CRD, runs the controller in this process, applies ``examples/configmap-change.yaml`` (a ConfigMap and a
JobTrigger watching its ``data``), changes the ConfigMap and prints the Job that the change created. With KWOK the
Job's pod is scheduled onto the fake node and the Job completes through the real Job controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

import yaml

from jobtrigger import logs
from jobtrigger.api.crd import crd
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.envtest import KWOK_TOLERATION, ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient
from jobtrigger.reactor.controller import Controller, Settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "configmap-change.yaml"
NS = "default"


def _say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


async def install_crd(kube: KubeClient, timeout: float = 30.0) -> None:
    """Create or update the CRD and wait until it is Established."""
    body = crd()
    name = body["metadata"]["name"]
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    try:
        await kube.create(path, body)
    except ApiError as e:
        if e.status != 409:
            raise
        current = await kube.get(f"{path}/{name}")
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await kube.request("PUT", f"{path}/{name}", body=body)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await kube.get(f"{path}/{name}")
        if any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in (got.get("status") or {}).get("conditions") or []
        ):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"CRD {name} not established after {timeout}s")


async def apply(kube: KubeClient, doc: dict[str, Any]) -> None:
    kind = doc["kind"]
    ns = doc["metadata"].get("namespace", NS)
    path = {
        "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
        "JobTrigger": f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}",
    }[kind]
    try:
        await kube.create(path, doc)
    except ApiError as e:
        if e.status != 409:
            raise


async def demo(*, keep_running: bool = False) -> int:
    logs.setup("warning", "text")
    _say("starting a local control plane (the first run builds Kubernetes from Go modules: see docs/testing.md)")
    cp = ControlPlane()
    await cp.astart()
    try:
        _say(f"kube-apiserver {cp.version} ready at {cp.server_url} (kubeconfig: {cp.kubeconfig_path})")
        kube = await KubeClient.from_config(str(cp.kubeconfig_path))
        await install_crd(kube)
        _say("CRD jobtriggers.jobtrigger.dev installed")
        controller = Controller(kube, Settings(workers=2))
        task = asyncio.get_running_loop().create_task(controller.run())
        await controller.ready.wait()
        _say("controller running")
        docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
        if cp.has_kwok:  # let the Job's pod run on the fake node (its taint keeps every other pod away)
            for d in docs:
                if d["kind"] == "JobTrigger":
                    pod = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
                    pod["tolerations"] = [*pod.get("tolerations", []), dict(KWOK_TOLERATION)]
            _say("kube-scheduler and KWOK run one fake node; the Job's pod gets a toleration for it")
        for d in docs:
            await apply(kube, d)
            _say(f"applied {d['kind']}/{d['metadata']['name']}")
        jt_name = next(d["metadata"]["name"] for d in docs if d["kind"] == "JobTrigger")
        cm_name = next(d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap")
        jt_path = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{jt_name}"
        await _wait(lambda: _ready(kube, jt_path), "JobTrigger ready")
        t0 = time.monotonic()
        await kube.merge_patch(f"/api/v1/namespaces/{NS}/configmaps/{cm_name}", {"data": {"greeting": "hello again"}})
        _say(f"changed ConfigMap/{cm_name} data.greeting")
        job = await _wait(lambda: _job(kube, jt_name), "Job created")
        _say(f"Job created {1000 * (time.monotonic() - t0):.0f} ms after the change:")
        meta = job["metadata"]
        print(
            json.dumps(
                {
                    "name": meta["name"],
                    "labels": meta.get("labels"),
                    "annotations": meta.get("annotations"),
                    "env": job["spec"]["template"]["spec"]["containers"][0].get("env"),
                },
                indent=2,
            )
        )
        jt = await _wait(lambda: _status_has_job(kube, jt_path), "status updated")
        if cp.has_kwok:
            jt = await _wait(lambda: _status_job_done(kube, jt_path), "Job finished on the KWOK node")
            _say(f"Job {job['metadata']['name']} finished {1000 * (time.monotonic() - t0):.0f} ms after the change")
        status = jt["status"]
        _say(
            f"kubectl get jt: {jt_name}  triggers={status.get('triggers')}  lastJob={status.get('lastJobName')}"
            f"  lastStatus={status.get('lastJobStatus')}"
        )
        if keep_running:
            _say(f"keeping it running; export KUBECONFIG={cp.kubeconfig_path}  (Ctrl-C to stop)")
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):  # stop the control plane on either
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await kube.close()
    finally:
        await cp.astop()
        _say("control plane stopped")
    logging.shutdown()
    return 0


async def _ready(kube: KubeClient, path: str) -> dict[str, Any] | None:
    jt = await kube.get(path)
    conds = (jt.get("status") or {}).get("conditions") or []
    for c in conds:
        if c.get("type") == "Ready":
            if c.get("status") == "False":
                raise RuntimeError(f"JobTrigger not ready: {c.get('reason')}: {c.get('message')}")
            if c.get("status") == "True":
                return jt
    return None


async def _job(kube: KubeClient, owner: str) -> dict[str, Any] | None:
    jobs = await kube.get(f"/apis/batch/v1/namespaces/{NS}/jobs", labelSelector=f"jobtrigger.dev/owner={owner}")
    items: list[dict[str, Any]] = jobs.get("items") or []
    return items[0] if items else None


async def _status_has_job(kube: KubeClient, path: str) -> dict[str, Any] | None:
    jt = await kube.get(path)
    return jt if (jt.get("status") or {}).get("lastJobName") else None


async def _status_job_done(kube: KubeClient, path: str) -> dict[str, Any] | None:
    jt = await kube.get(path)
    return jt if (jt.get("status") or {}).get("lastJobStatus") in ("Succeeded", "Failed") else None


async def _wait(probe: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.02)
    raise TimeoutError(f"timed out waiting for: {what}")
