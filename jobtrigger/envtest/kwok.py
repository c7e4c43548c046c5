"""The fake Node that KWOK plays the kubelet of: its command line, the logs it serves, the Node object, readiness.
Pods that tolerate :data:`~jobtrigger.envtest.KWOK_TOLERATION` are scheduled there and driven by the stages in
``jobtrigger/envtest_stages/kwok.yaml``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from jobtrigger.envtest.base import (
    _KWOK_STAGES,
    KWOK_LOG_LINE,
    KWOK_NODE,
    KWOK_TOLERATION,
    EnvtestError,
)

if TYPE_CHECKING:
    from jobtrigger.envtest.controlplane import ControlPlane


def kwok_cmd(cp: ControlPlane, kwok: Path) -> list[str]:
    return [
        str(kwok),
        f"--kubeconfig={cp.kubeconfig_path}",
        f"--config={_KWOK_STAGES}",
        f"--config={write_kwok_logs(cp)}",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-lease-duration-seconds=40",
        "--cidr=10.244.0.0/16",
        # KWOK's kubelet-like server (container logs) is the node's kubelet endpoint
        "--node-ip=127.0.0.1",
        f"--node-port={cp._kwok_port}",
        f"--server-address=127.0.0.1:{cp._kwok_port}",
    ]


def write_kwok_logs(cp: ControlPlane) -> Path:
    """A ClusterLogs config: every container on the KWOK node logs :data:`KWOK_LOG_LINE` (CRI log format)."""
    log_file = cp.work_dir / "kwok-container.log"
    log_file.write_text(f"2026-01-01T00:00:00.000000000Z stdout F {KWOK_LOG_LINE}\n")
    config = cp.work_dir / "kwok-logs.yaml"
    logs = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": "envtest"},
        "spec": {"selector": {}, "logs": [{"logsFile": str(log_file), "follow": False}]},
    }
    config.write_text(yaml.safe_dump(logs, sort_keys=False))
    return config


def create_kwok_node(cp: ControlPlane) -> None:
    """The fake Node KWOK manages: tainted, so only pods tolerating KWOK_TOLERATION are scheduled onto it."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": KWOK_NODE,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": KWOK_NODE,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"taints": [{k: v for k, v in KWOK_TOLERATION.items() if k != "operator"}]},
    }
    status, body = cp._request("POST", "/api/v1/nodes", node)
    if status not in (201, 409):
        raise EnvtestError(f"creating Node {KWOK_NODE} returned HTTP {status}: {body[:300]!r}")


def kwok_node_ready(cp: ControlPlane) -> bool:
    try:
        status, body = cp._get(f"/api/v1/nodes/{KWOK_NODE}")
    except OSError:
        return False
    if status != 200:
        return False
    conds = (json.loads(body).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
