"""Shards: what 1, 2 and 3 active replicas (``--shards``) each cost and carry, and how fast hand-overs are.

One local control plane, ``--jts`` JobTriggers spread over ``--namespaces`` namespaces, each watching its own
ConfigMap. For 1, 2 and 3 replicas (controller processes): wait until the replicas' ``/debug/shard`` sets cover every
JobTrigger without overlap; then per replica over an idle window: RSS, CPU, open watches
(``jobtrigger_watches``) and JobTriggers owned; then a burst (``--burst`` ConfigMaps changed at once, 50 PATCHes in
flight): Jobs/s, and CPU seconds of every replica and of kube-apiserver + etcd during it. With 2 and 3 replicas,
hand-over times: SIGKILL one replica (its JobTriggers move when its Lease expires: ``--lease-duration``), then
SIGTERM one (it stops, deletes its Lease, the others take over).

    .venv/bin/python -m benchmarks.shards          # writes its section of docs/benchmarks.md
    .venv/bin/python -m benchmarks.shards --quick  # 60 JobTriggers, 1 and 2 replicas, short windows; writes nothing
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from benchmarks.common import configmap_jobtrigger, controller_argv, cpu_seconds, free_port, write_section
from benchmarks.curve import spread
from benchmarks.latency import rss_kib, server_cpu
from jobtrigger.api.models import GROUP, PLURAL, VERSION
from jobtrigger.demo import install_crd
from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient

LEASE_NS = "shard-leases"
LEASE = ["--lease-duration", "15", "--renew-deadline", "10", "--retry-period", "2"]  # the defaults


class Proc:
    def __init__(self, kubeconfig: str, namespaces: list[str]):
        self.port = free_port()
        self.argv = controller_argv(
            kubeconfig, ",".join(namespaces), self.port, "--shards", "--leader-election-namespace", LEASE_NS,
            "--log-level", "warning", *LEASE,
        )  # fmt: skip
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def get(self, path: str) -> str | None:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
                http.get(f"http://127.0.0.1:{self.port}{path}") as r,
            ):
                return await r.text() if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def owned(self) -> set[str] | None:
        text = await self.get("/debug/shard")
        return set(json.loads(text)["owned"]) if text else None

    async def syncs(self) -> float:
        text = await self.get("/metrics") or ""
        return sum(float(m.group(1)) for m in re.finditer(r"^jobtrigger_syncs_total\{[^}]*\} (\S+)", text, re.M))

    async def watches(self) -> int:
        text = await self.get("/metrics") or ""
        m = re.search(r"^jobtrigger_watches (\S+)", text, re.M)
        return int(float(m.group(1))) if m else -1

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def split(procs: list[Proc], total: int, timeout: float) -> float:
    """Seconds until the replicas' owned sets cover ``total`` JobTriggers, each replica with a share, no overlap."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        sets = [await p.owned() for p in procs]
        if all(sets):
            union = set().union(*[s for s in sets if s])
            if len(union) == total and sum(len(s) for s in sets if s) == total:
                return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{len(procs)} replicas did not split {total} JobTriggers within {timeout:.0f}s")


async def quiet(procs: list[Proc], seconds: float, timeout: float = 300) -> None:
    """Wait until no replica has synced anything for ``seconds`` (the start-up and hand-over syncs are over)."""
    t0 = time.monotonic()
    last = [await p.syncs() for p in procs]
    still = time.monotonic()
    while time.monotonic() - still < seconds:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("the replicas kept syncing")
        await asyncio.sleep(0.5)
        now = [await p.syncs() for p in procs]
        if now != last:
            last, still = now, time.monotonic()


@dataclass
class Row:
    replicas: int
    owned: list[int] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    idle_cpu_pct: list[float] = field(default_factory=list)
    watches: list[int] = field(default_factory=list)
    burst_jobs_per_s: float = float("nan")
    burst_cpu_s: list[float] = field(default_factory=list)  # per replica during the burst
    burst_server_cpu_s: float = float("nan")
    burst_seconds: float = float("nan")
    sigkill_handover_s: float = float("nan")
    sigterm_handover_s: float = float("nan")


async def setup(kube: KubeClient, namespaces: list[str], jts: int) -> None:
    sem = asyncio.Semaphore(30)

    async def one(i: int) -> None:
        ns = namespaces[i % len(namespaces)]
        async with sem:
            await kube.create(f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": f"cm{i}"}, "data": {}})
            body = configmap_jobtrigger(f"t{i}", f"cm{i}", history=5)
            await kube.create(f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}", body)

    for ns in [*namespaces, LEASE_NS]:
        await kube.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    await asyncio.gather(*(one(i) for i in range(jts)))


async def jobs_total(kube: KubeClient, namespaces: list[str]) -> int:
    n = 0
    for ns in namespaces:
        n += len((await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs"))["items"])
    return n


async def measure(args: argparse.Namespace, cp: ControlPlane, kube: KubeClient, namespaces: list[str], r: int,
                  stamp: list[int]) -> Row:  # fmt: skip
    row = Row(r)
    kubeconfig = str(cp.kubeconfig_path)
    procs = [Proc(kubeconfig, namespaces) for _ in range(r)]
    try:
        took = await split(procs, args.jts, 300)
        print(f"{r} replica(s): split in {took:.1f}s", file=sys.stderr)
        await quiet(procs, args.settle)
        cpu0 = [cpu_seconds(p.proc.pid) for p in procs]
        t0 = time.monotonic()
        await asyncio.sleep(args.idle)
        dt = time.monotonic() - t0
        row.idle_cpu_pct = [100 * (cpu_seconds(p.proc.pid) - c) / dt for p, c in zip(procs, cpu0, strict=True)]
        row.rss_mib = [rss_kib(p.proc.pid) / 1024 for p in procs]
        row.watches = [await p.watches() for p in procs]
        row.owned = [len(await p.owned() or ()) for p in procs]
        # burst: change args.burst ConfigMaps at once
        before = await jobs_total(kube, namespaces)
        stamp[0] += 1
        sem = asyncio.Semaphore(50)

        async def change(i: int) -> None:
            async with sem:
                ns = namespaces[i % len(namespaces)]
                await kube.merge_patch(f"/api/v1/namespaces/{ns}/configmaps/cm{i}", {"data": {"v": f"b{stamp[0]}"}})

        c0, s0, t0 = [cpu_seconds(p.proc.pid) for p in procs], server_cpu(cp), time.monotonic()
        await asyncio.gather(*(change(i) for i in range(args.burst)))
        while await jobs_total(kube, namespaces) < before + args.burst:
            if time.monotonic() - t0 > 300:
                raise RuntimeError("burst: Jobs missing after 300 s")
            await asyncio.sleep(0.2)
        row.burst_seconds = time.monotonic() - t0
        row.burst_jobs_per_s = args.burst / row.burst_seconds
        row.burst_cpu_s = [cpu_seconds(p.proc.pid) - c for p, c in zip(procs, c0, strict=True)]
        row.burst_server_cpu_s = server_cpu(cp) - s0
        print(f"{r} replica(s): burst {row.burst_jobs_per_s:.0f} Jobs/s", file=sys.stderr)
        if r >= 2:
            victim = procs.pop(0)
            victim.stop(signal.SIGKILL)
            row.sigkill_handover_s = await split(procs, args.jts, 120)
            procs.append(Proc(kubeconfig, namespaces))  # back to r replicas for the SIGTERM hand-over
            await split(procs, args.jts, 300)
            leaver = procs.pop(0)
            t_term = time.monotonic()
            leaver.stop(signal.SIGTERM)
            await split(procs, args.jts, 120)
            row.sigterm_handover_s = time.monotonic() - t_term
            print(f"{r} replicas: hand-over {row.sigkill_handover_s:.1f}s after SIGKILL, "
                  f"{row.sigterm_handover_s:.1f}s after SIGTERM", file=sys.stderr)  # fmt: skip
    finally:
        for p in procs:
            p.stop()
    return row


async def main_async(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    cp = ControlPlane(with_controller_manager=False)
    await cp.astart()
    kube = await KubeClient.from_config(str(cp.kubeconfig_path))
    info: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    rows = []
    try:
        info["apiserver"] = (await kube.get("/version"))["gitVersion"]
        await install_crd(kube)
        namespaces = [f"shard-{i}" for i in range(args.namespaces)]
        await setup(kube, namespaces, args.jts)
        stamp = [0]
        for r in args.replica_list:
            rows.append(await measure(args, cp, kube, namespaces, r, stamp))
            with contextlib.suppress(ApiError):
                for ns in namespaces:
                    await kube.delete(f"/apis/batch/v1/namespaces/{ns}/jobs")
                # the SIGKILLed replica's Lease: the next stage's replicas would wait for it to expire
                await kube.delete(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases")
    finally:
        info["loadavg_end"] = os.getloadavg()
        await kube.close()
        await cp.astop()
    return rows, info


def report(rows: list[Row], info: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| replicas | JobTriggers owned per replica | RSS MiB per replica | idle CPU % of a core per replica | "
        "open watches per replica | burst Jobs/s | CPU s in the burst: replicas (sum) / API server + etcd | "
        "hand-over after SIGKILL s | after SIGTERM s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.replicas} | {spread([float(x) for x in r.owned])} | {spread(r.rss_mib, '{:.1f}')} | "
            f"{spread(r.idle_cpu_pct, '{:.2f}')} | {spread([float(x) for x in r.watches])} | "
            f"{r.burst_jobs_per_s:.0f} | {sum(r.burst_cpu_s):.1f} / {r.burst_server_cpu_s:.1f} | "
            f"{'—' if r.replicas < 2 else f'{r.sigkill_handover_s:.1f}'} | "
            f"{'—' if r.replicas < 2 else f'{r.sigterm_handover_s:.1f}'} |"
        )
    la0, la1 = info["loadavg_start"], info["loadavg_end"]
    return "\n".join(
        [
            "## Shards: 1, 2 and 3 active replicas",
            "",
            f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; load average "
            f"{la0[0]:.2f} at start, {la1[0]:.2f} at end. Local kube-apiserver {info.get('apiserver', '?')} + etcd "
            f"(envtest, no controller-manager), all processes on the same machine. {args.jts} JobTriggers in "
            f"{args.namespaces} namespaces, each watching its own ConfigMap; replicas with `--shards`, lease "
            f"duration / renew deadline / retry period {LEASE[1]} / {LEASE[3]} / {LEASE[5]} s. Per replica: "
            f"min / median / max. Idle window {args.idle:g} s, once no replica had synced anything for "
            f"{args.settle:g} s; burst: "
            f"{args.burst} ConfigMaps changed at once (50 PATCHes in flight), until every Job exists.",
            "",
            *lines,
            "",
            "Hand-over = from the signal until the remaining replicas' `/debug/shard` sets cover every JobTrigger "
            "again without overlap. After SIGKILL it is bounded below by the lease duration (the others must see the "
            "Lease expire); after SIGTERM the leaving replica drains, deletes its Lease, and the others take over at "
            "their next renewal (one retry period). Open watches: every replica watches the JobTriggers and the Jobs "
            f"of each of the {args.namespaces} namespaces, and the ConfigMaps of each namespace where it owns a "
            "JobTrigger (one shared watch per kind and namespace): with about "
            f"{args.jts // max(1, args.namespaces)} JobTriggers per namespace every replica owns some in each, "
            f"so {3 * args.namespaces} per replica whatever the number of replicas; the ConfigMap watches divide only "
            "where JobTriggers are few per namespace (docs/operations.md, Sizing).",
            "",
            "Run: `.venv/bin/python -m benchmarks.shards` (writes this section).",
        ]
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jts", type=int, default=3000)
    p.add_argument("--namespaces", type=int, default=30)
    p.add_argument("--replicas", default="1,2,3")
    p.add_argument("--idle", type=float, default=30.0)
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--burst", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="60 JobTriggers, 1 and 2 replicas; writes nothing")
    args = p.parse_args()
    if args.quick:
        args.jts, args.namespaces, args.replicas, args.idle, args.settle, args.burst = 60, 3, "1,2", 2, 1, 30
        LEASE[1::2] = ["4", "3", "0.5"]  # a SIGKILL hand-over waits for the lease: short ones in the smoke run
    args.replica_list = [int(x) for x in args.replicas.split(",")]
    rows, info = asyncio.run(main_async(args))
    text = report(rows, info, args)
    print(text)
    if not args.quick:
        write_section("Shards: 1, 2 and 3 active replicas", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
