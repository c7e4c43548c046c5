"""Peer: the kopf operator a Python team would write instead of jobtrigger.

Watches ConfigMaps that carry a label and, when their ``data`` changes, creates a batch/v1 Job named after the
ConfigMap and its resourceVersion (so a retried handler cannot create the same Job twice). Kopf defaults are
kept on purpose (handler progress and the diff base are stored as annotations on the ConfigMap itself, i.e. one
extra PATCH per change; handler log lines are not posted as Events in kopf 1.45), because that is what such an
operator does in practice. The Job is created with the async Kubernetes client the project already ships
(``kubernetes_asyncio``, same generated API as the official ``kubernetes`` package).

    KUBECONFIG=... python -m kopf run --standalone --namespace NS benchmarks/peers/kopf_operator.py

Environment: ``PEER_LABEL`` (``key=value``, default ``jobtrigger-bench=watched``), ``PEER_IMAGE`` (``busybox``).
"""

from __future__ import annotations

import os
from typing import Any

import kopf
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

LABEL_KEY, _, LABEL_VALUE = os.environ.get("PEER_LABEL", "jobtrigger-bench=watched").partition("=")
IMAGE = os.environ.get("PEER_IMAGE", "busybox")

_api: dict[str, client.ApiClient] = {}


@kopf.on.startup()
async def connect(**_: Any) -> None:
    await config.load_kube_config()  # $KUBECONFIG
    _api["client"] = client.ApiClient()


@kopf.on.cleanup()
async def disconnect(**_: Any) -> None:
    if "client" in _api:
        await _api.pop("client").close()


@kopf.on.field("v1", "configmaps", field="data", labels={LABEL_KEY: LABEL_VALUE})
async def data_changed(name: str, namespace: str, meta: kopf.Meta, body: kopf.Body, old: Any, **_: Any) -> None:
    if old is None:  # first sight (creation, or the operator's first start): a baseline, not a change
        return
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{name}-{meta['resourceVersion']}",
            "labels": {"bench-peer": "kopf", "bench-cm": name},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": IMAGE}]}},
        },
    }
    kopf.adopt(job, owner=body)  # ownerReference → the Job goes away with its ConfigMap
    try:
        await client.BatchV1Api(_api["client"]).create_namespaced_job(namespace, job)
    except ApiException as e:
        if e.status != 409:  # AlreadyExists: a retry of a change that was already handled
            raise
