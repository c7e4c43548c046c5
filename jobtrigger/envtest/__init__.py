"""A real, throw-away Kubernetes control plane for tests and demos ("envtest" style).

This package owns the lifecycle of a local control plane made of real upstream binaries:

* ``etcd``,
* ``kube-apiserver``,
* optionally ``kube-controller-manager``, so that the real Job controller, garbage collector and
  namespace controller drive objects exactly like in a cluster,
* optionally ``kube-scheduler`` and `KWOK <https://kwok.sigs.k8s.io>`_ with one fake Node, so that pods are
  scheduled and go through a node's lifecycle (Running/Ready, Job pods Succeeded or Failed) without a kubelet.

Two Kubernetes versions are supported, chosen by ``$JOBTRIGGER_K8S_VERSION``:

* ``1.37.2`` (the default, the newest release): everything built from Go modules by ``hack/build-k8s.sh``
  (kube-apiserver, kube-controller-manager, kube-scheduler, etcd 3.7.3, kwok 0.8.0);
* ``1.20.2`` (the oldest supported): kube-apiserver, kube-controller-manager and kube-scheduler built from
  Debian's source package with Debian's Go 1.19 by ``hack/build-envtest.sh``, Debian's etcd 3.4, the same kwok.

KWOK manages only the Node it is given (annotation ``kwok.x-k8s.io/node=fake``), and that Node carries the
taint ``kwok.x-k8s.io/node=fake:NoSchedule``: pods that tolerate it (:data:`KWOK_TOLERATION`) are scheduled
there and driven by the stages in ``jobtrigger/envtest_stages/kwok.yaml``; all other pods stay Pending, as on a
control plane without nodes, and tests may still set their status through the ``/status`` subresource.
We deliberately use the real API server instead of a fake API:
admission, validation, defaulting, resourceVersions, watch semantics (bookmarks, 410 Expired) and the
Job controller are exactly what the controller meets in production, so a passing integration test
means something.

Every :class:`ControlPlane` gets its own temporary work dir (PKI, token file, kubeconfig, etcd data,
process logs) and its own free loopback ports, so several control planes (a test session and a
running demo, say) can coexist.

Binaries are looked up in this order:

1. ``$KUBEBUILDER_ASSETS`` (a folder holding ``kube-apiserver`` and ``etcd``, optionally
   ``kube-controller-manager``, ``kube-scheduler`` and ``kwok``), as with controller-runtime's envtest;
2. ``$JOBTRIGGER_ENVTEST_DIR/bin`` (default ``~/.cache/jobtrigger/envtest/<version>/bin``); when a binary
   is missing there, the version's build script from the source checkout builds it (once; see docs/testing.md).

Command line: ``python -m jobtrigger.envtest up`` starts a control plane, prints
``export KUBECONFIG=...`` and keeps it running until SIGINT/SIGTERM.

Environment: ``JOBTRIGGER_KEEP_ENVTEST=1`` keeps the work dir (logs, etcd data) after
:meth:`ControlPlane.stop`; ``JOBTRIGGER_TEST_KUBECONFIG`` makes the test suite use an existing
cluster instead (see :func:`existing_kubeconfig`).

Layout: :mod:`.base` (versions, the KWOK node, errors), :mod:`.binaries` (where the binaries come from),
:mod:`.procs` (processes, ports, PKI), :mod:`.controlplane` (:class:`ControlPlane`), :mod:`.cli`.
"""

from __future__ import annotations

from jobtrigger.envtest.base import (
    DEFAULT_ENVTEST_VERSION,
    KWOK_LOG_LINE,
    KWOK_NODE,
    KWOK_TOLERATION,
    OLDEST_K8S_VERSION,
    EnvtestError,
)
from jobtrigger.envtest.binaries import Binaries, default_envtest_dir, find_binaries, k8s_version
from jobtrigger.envtest.cli import main
from jobtrigger.envtest.controlplane import ControlPlane
from jobtrigger.envtest.procs import existing_kubeconfig

__all__ = [
    "DEFAULT_ENVTEST_VERSION",
    "KWOK_LOG_LINE",
    "KWOK_NODE",
    "KWOK_TOLERATION",
    "OLDEST_K8S_VERSION",
    "Binaries",
    "ControlPlane",
    "EnvtestError",
    "default_envtest_dir",
    "existing_kubeconfig",
    "find_binaries",
    "k8s_version",
    "main",
]
