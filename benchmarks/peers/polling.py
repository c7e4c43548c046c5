"""Peer: kube-changejob's approach in Python — poll each watched ConfigMap, hash ``data``, create a Job on change.

kube-changejob (nusnewob/kube-changejob) reconciles each ChangeTriggeredJob every ``--poll-interval`` (60 s
default): GET every listed resource, hash the selected fields, and create a Job (``generateName``) when a hash
differs from the one stored at the previous poll; the first poll is a baseline. Here each ConfigMap is one such
"ChangeTriggeredJob" with its own requeue loop, started at a random phase (requeues of independently created
objects are not aligned). Not reproduced: kube-changejob's per-poll dry-run Job create, status write and history
LIST — so the request count here is a lower bound for it.

    python -m benchmarks.peers.polling --namespace NS --selector jobtrigger-bench=watched --interval 5

Prints ``READY <n>`` once every ConfigMap has its baseline hash. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import signal
import sys

from kubernetes_asyncio import client, config


def digest(data: dict[str, str] | None) -> str:
    return hashlib.sha256(json.dumps(data or {}, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Baselines:
    """Which ConfigMaps have their first hash; ``all`` is set once every one has."""

    def __init__(self, names: list[str]):
        self.missing = set(names)
        self.all = asyncio.Event()
        if not self.missing:
            self.all.set()

    def add(self, name: str) -> None:
        self.missing.discard(name)
        if not self.missing:
            self.all.set()


async def poll_one(
    core: client.CoreV1Api, batch: client.BatchV1Api, ns: str, name: str, interval: float, image: str, ready: Baselines
) -> None:
    await asyncio.sleep(random.uniform(0, interval))
    last: str | None = None
    while True:
        try:
            cm = await core.read_namespaced_config_map(name, ns)
            h = digest(cm.data)
            if last is not None and h != last:
                job = {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {"generateName": f"{name}-", "labels": {"bench-peer": "polling", "bench-cm": name}},
                    "spec": {
                        "backoffLimit": 0,
                        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": image}]}},
                    },
                }
                await batch.create_namespaced_job(ns, job)
            last = h
            ready.add(name)
        except Exception as e:  # the next poll retries, as a requeue would
            print(f"poll {name}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        await asyncio.sleep(interval)  # RequeueAfter: counted from the end of the reconcile


async def main_async(args: argparse.Namespace) -> None:
    await config.load_kube_config()  # $KUBECONFIG
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with client.ApiClient() as api:
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        listed = await core.list_namespaced_config_map(args.namespace, label_selector=args.selector)
        names = [cm.metadata.name for cm in listed.items]
        ready = Baselines(names)
        tasks = [
            asyncio.create_task(poll_one(core, batch, args.namespace, n, args.interval, args.image, ready))
            for n in names
        ]
        waiter = asyncio.create_task(ready.all.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        print(f"READY {len(names)}", flush=True)
        await stopper
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--namespace", required=True)
    p.add_argument("--selector", default="jobtrigger-bench=watched", help="which ConfigMaps (read once at start)")
    p.add_argument("--interval", type=float, default=60.0, help="poll interval P in seconds (kube-changejob: 60)")
    p.add_argument("--image", default="busybox")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
