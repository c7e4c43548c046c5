"""``python -m jobtrigger.envtest up``: a control plane until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from jobtrigger.envtest.base import (
    KWOK_NODE,
    EnvtestError,
)
from jobtrigger.envtest.controlplane import ControlPlane

# ----------------------------------------------------------------------------------------------------
# command line


@contextlib.contextmanager
def _until_signal() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """``python -m jobtrigger.envtest up [--no-controller-manager] [--no-kwok]``: run a control plane until Ctrl-C.

    The version is $JOBTRIGGER_K8S_VERSION (default :data:`DEFAULT_ENVTEST_VERSION`).
    """
    parser = argparse.ArgumentParser(prog="python -m jobtrigger.envtest", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", help="start etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler, kwok); wait for Ctrl-C"
    )
    up.add_argument("--no-controller-manager", action="store_true", help="do not start kube-controller-manager")
    up.add_argument("--no-kwok", action="store_true", help="do not start kube-scheduler and kwok")
    up.add_argument("--keep", action="store_true", help="keep the work dir (logs, etcd data) on exit")
    up.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    cp = ControlPlane(with_controller_manager=not args.no_controller_manager, with_kwok=not args.no_kwok)
    if args.keep:
        cp.keep_work_dir = True
    with _until_signal() as stop:
        try:
            cp.start()
        except EnvtestError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        try:
            t = cp.timings
            print(
                f"# kube-apiserver {cp.version} at {cp.server_url} "
                f"(etcd {t['etcd_ready_s']:.2f}s + apiserver {t['apiserver_ready_s']:.2f}s; "
                f"controller-manager: {'yes' if cp.has_controller_manager else 'no'}; "
                f"scheduler + kwok node {KWOK_NODE}: {'yes' if cp.has_kwok else 'no'}); "
                f"logs in {cp.work_dir / 'logs'}",
                file=sys.stderr,
            )
            print(cp.kubeconfig_path)
            print(f"export KUBECONFIG={cp.kubeconfig_path}", flush=True)
            print("# press Ctrl-C to stop", file=sys.stderr)
            while not stop.wait(1.0):
                if not cp.running:
                    print(f"error: {', '.join(cp.exited())} exited; see {cp.work_dir / 'logs'}", file=sys.stderr)
                    cp.keep_work_dir = True
                    return 1
        finally:
            cp.stop()
    print("# stopped", file=sys.stderr)
    return 0
