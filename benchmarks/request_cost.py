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
import copy
import os
import platform
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anyio

from benchmarks.common import controller_argv, free_port, write_section
from benchmarks.latency import jt_body, server_cpu
from jobtrigger.api.crd import crd
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient

NS = "cost"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _without_cel(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [_without_cel(v) for v in node]
    return node


def crd_variants() -> dict[str, dict[str, Any]]:
    """The CRD as committed and two cut-down copies, to tell what a JobTrigger write costs the server: its schema
    and CEL rules, or the custom-resource path itself (JSON, unstructured objects, managedFields)."""
    no_cel = _without_cel(crd())
    no_schema = copy.deepcopy(no_cel)
    for v in no_schema["spec"]["versions"]:
        v["schema"]["openAPIV3Schema"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"as committed": crd(), "without its CEL rules": no_cel, "without any schema": no_schema}


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


async def put_crd(kube: KubeClient, body: dict[str, Any]) -> None:
    """Replace the CRD and wait until the server serves it: a spec only the CEL rules refuse (dry run) and a status
    field only a schema prunes tell which variant is live."""
    name = body["metadata"]["name"]
    body = {**body, "metadata": {**body["metadata"]}}
    body["metadata"]["resourceVersion"] = (await kube.get(f"{CRD_PATH}/{name}"))["metadata"]["resourceVersion"]
    await kube.request("PUT", f"{CRD_PATH}/{name}", body=body)
    schema = body["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    want_cel, want_prune = "x-kubernetes-validations" in str(schema), "properties" in schema
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}"
    no_trigger = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "JobTrigger", "metadata": {"name": "probe"},
                  "spec": {"triggers": {}, "jobTemplate": jt_body(0)["spec"]["jobTemplate"]}}  # fmt: skip
    for _ in range(100):
        try:
            await kube.create(base, no_trigger, dryRun="All")
            cel = False
        except ApiError as e:
            if e.status != 422:
                raise
            cel = True
        got = await kube.merge_patch(f"{base}/t0/status", {"status": {"probeField": "x"}})
        prune = "probeField" not in (got.get("status") or {})
        if not prune:
            await kube.merge_patch(f"{base}/t0/status", {"status": {"probeField": None}})
        if (cel, prune) == (want_cel, want_prune):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the server did not take the CRD variant")


async def profile_status_writes(
    cp: ControlPlane, kube: KubeClient, path: str, status: dict[str, Any], out: str, seq: Any
) -> str:
    """A 10 s CPU profile of kube-apiserver while status writes run back to back (read it with
    ``go tool pprof -top -cum <kube-apiserver binary> <out>``)."""
    ssl_ctx = ssl.create_default_context(cafile=str(cp.ca_path))
    headers = {"Authorization": f"Bearer {cp.token}"}
    async with aiohttp.ClientSession() as http:
        prof = asyncio.ensure_future(
            http.get(f"{cp.server_url}/debug/pprof/profile?seconds=10", headers=headers, ssl=ssl_ctx)
        )
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10.5:
            await kube.merge_patch(path, {"status": {**status, "lastJobName": f"t0-{next(seq)}"}})
        async with await prof as r:
            r.raise_for_status()
            await anyio.Path(out).write_bytes(await r.read())
    return out


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
        floor_job: dict[str, Any] = {
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

        async def rounds(kinds: dict[str, Callable[[int], Awaitable[Any]]], fmt: str = "{}") -> None:
            for _ in range(args.rounds):
                for name, fn in kinds.items():
                    await asyncio.sleep(0.5)
                    s0 = server_cpu(cp)
                    for _ in range(args.n):
                        await fn(next(seq))
                    costs.setdefault(fmt.format(name), []).append(1000 * (server_cpu(cp) - s0) / args.n)
                print({k: round(v[-1], 2) for k, v in costs.items()}, file=sys.stderr)

        await rounds(kinds)
        if args.pprof:
            info["pprof"] = await profile_status_writes(cp, kube, jt_status, status, args.pprof, seq)
        # the same JobTrigger writes with the CRD cut down: what the schema and the CEL rules add
        jt_path = jt_status.removesuffix("/status")
        variant_kinds: dict[str, Callable[[int], Awaitable[Any]]] = {
            "status write": lambda i: kube.merge_patch(jt_status, {"status": {**status, "lastJobName": f"t0-{i}"}}),
            "annotation PATCH": lambda i: kube.merge_patch(jt_path, {"metadata": {"annotations": {"n": str(i)}}}),
        }
        for label, body in crd_variants().items():
            await put_crd(kube, body)
            await rounds(variant_kinds, f"JobTrigger {{}}, CRD {label}")
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
    med = {k: statistics.median(v) for k, v in costs.items()}
    cm = med["ConfigMap PATCH (the change)"]
    committed = med["JobTrigger status write, CRD as committed"]
    bare = med["JobTrigger status write, CRD without any schema"]
    nocel = med["JobTrigger status write, CRD without its CEL rules"]
    la0, la1 = info["loadavg_start"], info["loadavg_end"]
    return "\n".join(
        [
            "## API server cost per request",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
            f"{la0[0]:.2f} at start, {la1[0]:.2f} at end. Local kube-apiserver {info.get('apiserver', '?')} + etcd "
            f"(envtest). kube-apiserver + etcd CPU (from /proc) per request, {args.n} requests of a kind one after "
            f"another, {args.rounds} rounds (min / median / max of the rounds). The Job and the status are the ones a "
            "real controller process wrote for one ConfigMap change. The last six rows replace the CRD between "
            "rounds: as committed, with its CEL rules removed, and with no schema at all.",
            "",
            "| request | API server + etcd CPU per request, ms |",
            "|---|---|",
            *rows,
            "",
            "Per Job, jobtrigger sends the Job create and the status write (Events: about 0.06 per Job at 100/s, "
            "folded); the floor sends only its minimal Job. A JobTrigger is a custom resource, and its status write "
            f"costs the server {committed / cm:.1f} times a ConfigMap PATCH in this run (medians: {committed:.2f} "
            f"against {cm:.2f} ms). Without the CRD's CEL rules it costs {nocel:.2f} ms, without any schema "
            f"{bare:.2f} ms, still {bare / cm:.1f} times the PATCH: most of the cost is the custom-resource path "
            "itself (JSON instead of protobuf, unstructured objects, managedFields on every write; a kube-apiserver "
            "CPU profile, `--pprof`, is read in "
            "[concepts](concepts.md#what-a-job-costs-and-why-that-keeps-exactly-once)).",
            "",
            "Run: `.venv/bin/python -m benchmarks.request_cost` (writes this section; add `--pprof FILE` for the "
            "profile).",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300, help="requests per kind and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="20 requests per kind, one round; writes nothing")
    p.add_argument(
        "--pprof",
        metavar="FILE",
        help="also write a 10 s kube-apiserver CPU profile taken during status writes to FILE "
        "(read with: go tool pprof -top -cum <kube-apiserver binary> FILE)",
    )
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
