"""Constants and errors of the test control plane (versions, the KWOK node and its toleration)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("jobtrigger.envtest")

_T = TypeVar("_T")

#: the Kubernetes version used unless $JOBTRIGGER_K8S_VERSION says otherwise (the newest one the project builds)
DEFAULT_ENVTEST_VERSION = "1.37.2"
#: the oldest version the project supports and tests (see docs/compatibility.md)
OLDEST_K8S_VERSION = "1.20.2"
#: the fake Node that KWOK manages, and the toleration a pod needs to be scheduled onto it
KWOK_NODE = "kwok-node-0"
KWOK_TOLERATION: dict[str, str] = {
    "key": "kwok.x-k8s.io/node",
    "operator": "Equal",
    "value": "fake",
    "effect": "NoSchedule",
}
_KWOK_STAGES = Path(__file__).resolve().parent.parent / "envtest_stages" / "kwok.yaml"
#: what `kubectl logs` (pods/log) returns for any container on the KWOK node
KWOK_LOG_LINE = "log line from the KWOK node"
USER_AGENT = "jobtrigger-envtest/1"  # never curl/Wget: the 1.20 apiserver pretty-prints for those (see docs)
_STOP_GRACE_S = 5.0
_POLL_S = 0.1
_PORT_RETRIES = 3


class EnvtestError(RuntimeError):
    """The control plane could not be obtained or started."""


class _PortInUse(EnvtestError):
    """A picked port was taken between picking and binding; start() retries with fresh ports."""
