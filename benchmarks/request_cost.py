"""What each request of the per-Job path costs the API server (kube-apiserver + etcd CPU), one request at a time.

Why this exists: on a small machine the API server, not the controller, sets how many Jobs per second fit (see the
saturation curve). This measures the requests themselves, with the bodies jobtrigger really sends: a real controller
process handles one ConfigMap change first, and the Job it created and the JobTrigger status it wrote are then
replayed ``--n`` times each (new Job names; the status write changes ``lastJobName``), next to the floor's minimal
Job, a ConfigMap PATCH (what the benchmarks' changes are) and an Event create. Requests are sequential, so the
figure is CPU per request with no batching; rounds alternate the kinds, and the report gives min / median / max.

    .venv/bin/python -m benchmarks.request_cost          # writes its section of docs/benchmarks.md
    .venv/bin/python -m benchmarks.request_cost --quick  # 20 requests per kind, one round; writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.common import controller_argv, free_port, write_section
from benchmarks.latency import jt_body, server_cpu
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient

NS = "cost"
STRIP = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink")


def _clean_job(job: dict[str, Any], name: str) -> dict[str, Any]:
    meta = {k: v for k, v in job["metadata"].items() if k not in STRIP}
    meta["name"] = name
    spec = dict(job["spec"])
    spec.pop("selector", None)  # generated from the server's own label
    tmpl = dict(spec["template"])
    tmeta = dict(tmpl.get("metadata") or {})
    labels = {
        k: v for k, v in (tmeta.get("labels") or {}).items() if "controller-uid" not in k and not k.endswith("job-name")
    }
    tmeta["labels"] = labels
    tmpl["metadata"] = tmeta
    spec["template"] = tmpl
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


async def real_bodies(kube: KubeClient, kubeconfig: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Job and the JobTrigger status a real controller wrote for one ConfigMap change."""
    jt = jt_body(0)
    jt["metadata"]["namespace"] = NS
    await kube.create(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", jt)
    port = free_port()
    proc = subprocess.Popen(
        controller_argv(kubeconfig, NS, port, "--log-level", "warning"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/t0"
        for _ in range(300):
            conds = ((await kube.get(path)).get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                break
            await asyncio.sleep(0.1)
        await kube.merge_patch(f"/api/v1/namespaces/{NS}/configmaps/cm0", {"data": {"v": "changed"}})
        for _ in range(300):
            jobs = (await kube.get(f"/apis/batch/v1/namespaces/{NS}/jobs"))["items"]
            status = (await kube.get(path)).get("status") or {}
            if jobs and status.get("lastJobName"):
                return jobs[0], status
            await asyncio.sleep(0.1)
        raise RuntimeError("the controller created no Job")
    finally:
        proc.terminate()
        proc.wait(10)


async def main_async(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, Any]]:
    cp = ControlPlane(with_controller_manager=False)
    await cp.astart()
    kube = await KubeClient.from_config(str(cp.kubeconfig_path))
    info: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    costs: dict[str, list[float]] = {}
    try:
        info["apiserver"] = (await kube.get("/version"))["gitVersion"]
        await install_crd(kube)
        await kube.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        await kube.create(f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "cm0"}, "data": {}})
        job, status = await real_bodies(kube, str(cp.kubeconfig_path))
        jt_status = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/t0/status"
        floor_job = {
            "metadata": {"name": "x", "labels": {"floor": "1"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "b"}]}}},
        }
        seq = iter(range(10**9))

        async def event(i: int) -> Any:
            return await kube.create(
                f"/api/v1/namespaces/{NS}/events",
                {
                    "metadata": {"name": f"e{i}"},
                    "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "JobTrigger", "name": "t0",
                                       "namespace": NS},
                    "reason": "JobCreated", "message": f"Created Job t0-{i}", "type": "Normal", "count": 1,
                },
            )  # fmt: skip

        kinds: dict[str, Callable[[int], Awaitable[Any]]] = {
            "ConfigMap PATCH (the change)": lambda i: kube.merge_patch(
                f"/api/v1/namespaces/{NS}/configmaps/cm0", {"data": {"v": str(i)}}
            ),
            "Job create, the floor's minimal Job": lambda i: kube.create(
                f"/apis/batch/v1/namespaces/{NS}/jobs",
                {**floor_job, "metadata": {**floor_job["metadata"], "name": f"f{i}"}},
            ),
            "Job create, the Job jobtrigger builds": lambda i: kube.create(
                f"/apis/batch/v1/namespaces/{NS}/jobs", _clean_job(job, f"j{i}")
            ),
            "JobTrigger status write (merge patch, resourceVersion precondition off)": lambda i: kube.merge_patch(
                jt_status, {"status": {**status, "lastJobName": f"t0-{i}"}}
            ),
            "Event create": event,
        }
        for _ in range(args.rounds):
            for name, fn in kinds.items():
                await asyncio.sleep(0.5)
                s0 = server_cpu(cp)
                for _ in range(args.n):
                    await fn(next(seq))
                costs.setdefault(name, []).append(1000 * (server_cpu(cp) - s0) / args.n)
            print({k: round(v[-1], 2) for k, v in costs.items()}, file=sys.stderr)
        with contextlib.suppress(ApiError):
            info["jt_bytes"] = len(str(await kube.get(jt_status.removesuffix("/status"))))
    finally:
        info["loadavg_end"] = os.getloadavg()
        await kube.close()
        await cp.astop()
    return costs, info


def report(costs: dict[str, list[float]], info: dict[str, Any], args: argparse.Namespace) -> str:
    rows = []
    for name, xs in costs.items():
        rows.append(f"| {name} | {min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f} |")
    la0, la1 = info["loadavg_start"], info["loadavg_end"]
    return "\n".join(
        [
            "## API server cost per request",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
            f"{la0[0]:.2f} at start, {la1[0]:.2f} at end. Local kube-apiserver {info.get('apiserver', '?')} + etcd "
            f"(envtest). kube-apiserver + etcd CPU (from /proc) per request, {args.n} requests of a kind one after "
            f"another, {args.rounds} rounds (min / median / max of the rounds). The Job and the status are the ones a "
            "real controller process wrote for one ConfigMap change.",
            "",
            "| request | API server + etcd CPU per request, ms |",
            "|---|---|",
            *rows,
            "",
            "Per Job, jobtrigger sends the Job create and the status write (Events: about 0.06 per Job at 100/s, "
            "folded); the floor sends only its minimal Job. A JobTrigger is a custom resource: the server handles it "
            "as unstructured JSON and validates it against the CRD schema, so its status write costs two to three "
            "times a ConfigMap PATCH.",
            "",
            "Run: `.venv/bin/python -m benchmarks.request_cost` (writes this section).",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="requests per kind and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="20 requests per kind, one round; writes nothing")
    args = p.parse_args()
    if args.quick:
        args.n, args.rounds = 20, 1
    t0 = time.monotonic()
    costs, info = asyncio.run(main_async(args))
    text = report(costs, info, args)
    print(text)
    print(f"took {time.monotonic() - t0:.0f} s", file=sys.stderr)
    if not args.quick:
        write_section("API server cost per request", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
