"""The ``jobtrigger`` command: ``controller``, ``crd``, ``run`` (request a manual run), ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import uuid

from jobtrigger import logs
from jobtrigger.triggers.fields import HashKey


def _hash_key(variable: str) -> HashKey | None:
    """The key of the persisted field hashes, from the environment (the chart maps its Secret there)."""
    value = os.environ.get(variable, "")
    if not value:
        return None
    try:
        return HashKey(value.encode())
    except ValueError as e:
        raise SystemExit(f"{variable}: {e}") from e


def _controller(args: argparse.Namespace) -> int:
    from jobtrigger.app import run_controller
    from jobtrigger.kube.leader import LeaseConfig
    from jobtrigger.reactor.controller import Settings

    logs.setup(args.log_level, args.log_format)
    host, _, port = args.http_addr.rpartition(":")
    settings = Settings(
        namespace=args.namespace or None,
        workers=args.workers,
        allow_cross_namespace=args.allow_cross_namespace,
        max_active_jobs=args.max_active_jobs,
        event_qps=args.event_qps,
        event_burst=args.event_burst,
        status_qps=args.status_qps,
        status_burst=args.status_burst,
        selector=args.selector or None,
        hash_key=_hash_key("JOBTRIGGER_HASH_KEY"),
        previous_hash_key=_hash_key("JOBTRIGGER_HASH_KEY_PREVIOUS"),
    )
    if settings.hash_key is None:
        logging.getLogger("jobtrigger").warning(
            "JOBTRIGGER_HASH_KEY is not set: field hashes in status are unkeyed, so whoever may read a JobTrigger "
            "can test guesses of the values it watches (the Helm chart sets it from a Secret; docs/security.md)"
        )
    if args.leader_elect and args.shards:
        raise SystemExit("--leader-elect and --shards exclude each other: shards are active-active already")
    if (args.leader_elect or args.shards) and not (args.lease_duration > args.renew_deadline > args.retry_period > 0):
        # the hand-over argument rests on it: a holder stops at the renew deadline, before its Lease can expire
        raise SystemExit(
            "--lease-duration must be greater than --renew-deadline, and that greater than --retry-period (> 0): "
            f"got {args.lease_duration:g} / {args.renew_deadline:g} / {args.retry_period:g}"
        )
    shard = None
    if args.shards:
        from jobtrigger.shards.membership import ShardConfig

        settings.identity = f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"  # Events name the replica
        shard = ShardConfig(
            namespace=args.leader_election_namespace or _own_namespace() or "default",
            group=args.shard_group,
            identity=settings.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    lease = None
    if args.leader_elect:
        lease = LeaseConfig(
            namespace=args.leader_election_namespace or _own_namespace() or "default",
            name=args.leader_election_name,
            identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
    return asyncio.run(
        run_controller(
            settings,
            kubeconfig=args.kubeconfig,
            http_host=host or "0.0.0.0",
            http_port=int(port),
            shutdown_timeout=args.shutdown_timeout,
            lease=lease,
            shard=shard,
        )
    )


def _own_namespace() -> str | None:
    """The pod's namespace when running in a cluster."""
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
            return f.read().strip() or None
    except OSError:
        return os.environ.get("POD_NAMESPACE")


def _crd(_: argparse.Namespace) -> int:
    from jobtrigger.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _run(args: argparse.Namespace) -> int:
    """Request a manual run: set ``jobtrigger.dev/run-requested`` to a new token."""
    from jobtrigger.api.models import GROUP, PLURAL, VERSION
    from jobtrigger.jobs.builder import ANNOTATION_RUN_REQUESTED
    from jobtrigger.kube.client import ApiError, KubeClient

    token = args.token or uuid.uuid4().hex[:12]

    async def go() -> int:
        kube = await KubeClient.from_config(args.kubeconfig)
        try:
            ns = args.namespace or _context_namespace(args.kubeconfig)
            path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}/{args.name}"
            await kube.merge_patch(path, {"metadata": {"annotations": {ANNOTATION_RUN_REQUESTED: token}}})
        except ApiError as e:
            print(f"error: {e.message}", file=sys.stderr)
            return 1
        finally:
            await kube.close()
        print(f"jobtrigger.jobtrigger.dev/{args.name} run requested (token {token})")
        return 0

    return asyncio.run(go())


def _context_namespace(kubeconfig: str | None) -> str:
    """The namespace of the kubeconfig's current context, as kubectl would use it."""
    from kubernetes_asyncio import config

    path = kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None)
    try:
        _, current = config.list_kube_config_contexts(path)
    except (config.ConfigException, OSError):
        return "default"
    return str(((current or {}).get("context") or {}).get("namespace") or "default")


def _demo(args: argparse.Namespace) -> int:
    from jobtrigger.demo import demo

    return asyncio.run(demo(keep_running=args.keep_running))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jobtrigger")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jobtrigger", description="Run a Kubernetes Job when something happens.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    fmt = argparse.ArgumentDefaultsHelpFormatter  # every help text ends with "(default: ...)"
    c = sub.add_parser(
        "controller",
        help="run the controller",
        formatter_class=fmt,
        description="Run the controller. A flag's default comes from the environment variable named in its help "
        "text when that is set.",
    )
    c.add_argument("--kubeconfig", default=None, help="kubeconfig file; unset: in-cluster config, else $KUBECONFIG")
    c.add_argument(
        "--namespace",
        default=_env("JOBTRIGGER_NAMESPACE", ""),
        help="watch only these namespaces, comma-separated; empty: all [env JOBTRIGGER_NAMESPACE]",
    )
    c.add_argument(
        "--workers",
        type=int,
        default=int(_env("JOBTRIGGER_WORKERS", "16")),
        help="worker tasks evaluating JobTriggers in parallel; a sync mostly waits for the API server, so more "
        "workers than cores keep the queue short [env JOBTRIGGER_WORKERS]",
    )
    c.add_argument(
        "--event-qps",
        type=float,
        default=float(_env("JOBTRIGGER_EVENT_QPS", "5")),
        help="Event writes per second (creates and count updates); over it, Events about the same JobTrigger and "
        "reason fold into one Event with a count; 0: no limit [env JOBTRIGGER_EVENT_QPS]",
    )
    c.add_argument(
        "--event-burst",
        type=int,
        default=int(_env("JOBTRIGGER_EVENT_BURST", "25")),
        help="Event writes allowed at once before --event-qps applies [env JOBTRIGGER_EVENT_BURST]",
    )
    c.add_argument(
        "--status-qps",
        type=float,
        default=float(_env("JOBTRIGGER_STATUS_QPS", "20")),
        help="status writes per second that record resource runs at once; over it, such writes wait and merge "
        "into one later write per JobTrigger (the runs are on their Jobs meanwhile); 0: always at once "
        "[env JOBTRIGGER_STATUS_QPS]",
    )
    c.add_argument(
        "--status-burst",
        type=int,
        default=int(_env("JOBTRIGGER_STATUS_BURST", "1")),
        help="status writes allowed at once before --status-qps applies [env JOBTRIGGER_STATUS_BURST]",
    )
    c.add_argument(
        "--http-addr",
        default=_env("JOBTRIGGER_HTTP_ADDR", "0.0.0.0:8080"),
        help="host:port of /metrics, /healthz and /readyz [env JOBTRIGGER_HTTP_ADDR]",
    )
    c.add_argument(
        "--allow-cross-namespace",
        action="store_true",
        default=_env("JOBTRIGGER_ALLOW_CROSS_NAMESPACE", "") == "true",
        help="let JobTriggers watch namespaced objects outside their own namespace "
        "[env JOBTRIGGER_ALLOW_CROSS_NAMESPACE=true]",
    )
    c.add_argument(
        "--max-active-jobs",
        type=int,
        default=int(_env("JOBTRIGGER_MAX_ACTIVE_JOBS", "0")),
        help="controller-wide cap on active Jobs; runs over it wait (0: no cap) [env JOBTRIGGER_MAX_ACTIVE_JOBS]",
    )
    c.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds the workers get on SIGTERM to finish the JobTriggers they hold (no env)",
    )
    c.add_argument(
        "--leader-elect",
        action="store_true",
        default=_env("JOBTRIGGER_LEADER_ELECT", "") == "true",
        help="run only while holding a coordination.k8s.io Lease (for several replicas) "
        "[env JOBTRIGGER_LEADER_ELECT=true]",
    )
    c.add_argument(
        "--shards",
        action="store_true",
        default=_env("JOBTRIGGER_SHARDS", "") == "true",
        help="active-active: every replica holds a Lease and works on its share of the JobTriggers (rendezvous "
        "hashing over the live replicas) [env JOBTRIGGER_SHARDS=true]",
    )
    c.add_argument(
        "--shard-group",
        default=_env("JOBTRIGGER_SHARD_GROUP", "jobtrigger"),
        help="replicas with the same group share the JobTriggers (label of their Leases) [env JOBTRIGGER_SHARD_GROUP]",
    )
    c.add_argument(
        "--selector",
        default=_env("JOBTRIGGER_SELECTOR", ""),
        help="handle only JobTriggers with these labels (a label selector, e.g. shard=a; static sharding with one "
        "deployment per selector); empty: all [env JOBTRIGGER_SELECTOR]",
    )
    c.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("JOBTRIGGER_LEADER_ELECTION_NAMESPACE"),
        help="namespace of the Lease (leader election and --shards); unset: the pod's namespace, else default "
        "[env JOBTRIGGER_LEADER_ELECTION_NAMESPACE]",
    )
    c.add_argument("--leader-election-name", default="jobtrigger-leader", help="name of the Lease (no env)")
    c.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        help="seconds a standby waits before taking over; with --shards, before a silent replica's JobTriggers "
        "move (no env)",
    )
    c.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        help="seconds after which the leader (or a shard replica) stops and exits if it cannot renew (no env)",
    )
    c.add_argument("--retry-period", type=float, default=2.0, help="seconds between lease attempts (no env)")
    c.add_argument(
        "--log-level",
        default=_env("JOBTRIGGER_LOG_LEVEL", "info"),
        help="debug, info, warning or error [env JOBTRIGGER_LOG_LEVEL]",
    )
    c.add_argument(
        "--log-format",
        choices=["json", "text"],
        default=_env("JOBTRIGGER_LOG_FORMAT", "json"),
        help="json (one object per line) or text [env JOBTRIGGER_LOG_FORMAT]",
    )
    c.set_defaults(func=_controller)

    sub.add_parser("crd", help="print the CustomResourceDefinition (YAML)").set_defaults(func=_crd)

    r = sub.add_parser("run", help="request a manual run of a JobTrigger")
    r.add_argument("name", help="the JobTrigger's name")
    r.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig context's namespace")
    r.add_argument("--token", default=None, help="request token (default: random); the same token runs once")
    r.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    r.set_defaults(func=_run)

    d = sub.add_parser("demo", help="local control plane + controller + a ConfigMap change that runs a Job")
    d.add_argument("--keep-running", action="store_true", help="keep the control plane and controller up")
    d.set_defaults(func=_demo)

    args = p.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
