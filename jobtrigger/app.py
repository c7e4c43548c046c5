"""Process wiring: API client, controller, the HTTP endpoints (/metrics, /healthz, /readyz) and signals.

SIGTERM/SIGINT stop taking new work, let workers finish the keys they hold (bounded by ``shutdown_timeout``),
cancel the watches and exit 0. Because Job names are deterministic, anything cut short is redone, not duplicated,
by the next process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jobtrigger import metrics, tracing
from jobtrigger.kube.client import KubeClient
from jobtrigger.kube.leader import LeaderElector, LeaseConfig
from jobtrigger.reactor.controller import Controller, Settings
from jobtrigger.reactor.writebehind import flush_deferred
from jobtrigger.shards.membership import Membership, ShardConfig, debug_state

log = logging.getLogger(__name__)


def count_request(verb: str, resource: str, code: int) -> None:
    metrics.API_REQUESTS.labels(verb, resource, str(code)).inc()


async def _http(
    controller: Controller, elector: LeaderElector | None, host: str, port: int, membership: Membership | None = None
) -> web.AppRunner:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if elector is not None and not elector.is_leader.is_set():
            return web.Response(text="ok (standby: not the leader)")
        if not controller.ready.is_set():
            return web.Response(status=503, text="watches not synced")
        problems = controller.watch_problems()
        if problems:
            return web.Response(status=503, text="watches failing: " + "; ".join(problems))
        return web.Response(text="ok")

    async def shard(_: web.Request) -> web.Response:
        if membership is None:
            return web.json_response({"sharding": False}, status=404)
        return web.json_response(debug_state(membership))

    app = web.Application()
    app.router.add_get("/debug/shard", shard)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def _membership(kube: KubeClient, controller: Controller, cfg: ShardConfig) -> Membership:
    """Wire the shard membership to the controller: its gate, the keys it knows, enqueueing, draining."""

    def split(key: str) -> tuple[str, str]:
        ns, _, name = key.partition("/")
        return ns, name

    def gained(keys: list[str]) -> None:
        for k in keys:
            controller.queue.add(split(k))

    m = Membership(
        kube,
        cfg,
        keys=lambda: [f"{k[0]}/{k[1]}" for k in controller.triggers.objects],
        on_gained=gained,
        drain=controller.drain,
    )

    def owns(key: tuple[str, str]) -> bool:
        k = f"{key[0]}/{key[1]}"
        if m.allowed(k):
            return True
        m.refused(k)
        return False

    controller.owns = owns
    controller.shard_identity = cfg.identity
    return m


async def run_controller(
    settings: Settings,
    *,
    kubeconfig: str | None = None,
    http_host: str = "0.0.0.0",
    http_port: int = 8080,
    shutdown_timeout: float = 10.0,
    stop: asyncio.Event | None = None,
    lease: LeaseConfig | None = None,
    shard: ShardConfig | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set). With ``lease``, only while holding the leader Lease.

    Returns the exit code: 0 after a clean stop, 1 if leadership was lost (the process should restart)."""
    tracing.setup_from_env()  # only if the OTEL_* environment asks for traces
    kube = await KubeClient.from_config(kubeconfig)
    kube.on_request = count_request
    controller = Controller(kube, settings)
    metrics.WATCHES.set_function(controller.watch_count)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    elector = LeaderElector(kube, lease) if lease is not None else None
    membership = _membership(kube, controller, shard) if shard is not None else None
    runner = await _http(controller, elector, http_host, http_port, membership) if http_port >= 0 else None
    stopper = loop.create_task(stop.wait())
    task: asyncio.Task[None] | None = None
    keeper: asyncio.Task[None] | None = None
    freezer: asyncio.Task[None] | None = None
    rc = 0
    # the Lease (leader or shard) is handed over early only once no sync can still be sending a request: the
    # workers finished (drained) or the controller ended on its own. A sync cut off by cancellation may have sent
    # a Job create that the server has yet to apply, so otherwise the Lease is left to expire, like after a crash
    quiet = False
    try:
        if elector is not None:
            log.info(
                "waiting for the leader lease", extra={"lease": elector.cfg.name, "identity": elector.cfg.identity}
            )
            acquiring = loop.create_task(elector.acquire())
            await asyncio.wait({acquiring, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not acquiring.done():
                acquiring.cancel()
                return 0
            metrics.LEADER.set(1)
            # from now on every request of this process is bounded by the time the Lease is proven
            kube.deadline = elector.remaining
            keeper = loop.create_task(elector.keep())
        if membership is not None:
            await membership.join()
            # every request of this process is bounded by the time its shard Lease is proven
            kube.deadline = membership.remaining
            keeper = loop.create_task(membership.run())
        task = loop.create_task(controller.run(), name="controller")
        freezer = loop.create_task(_freeze_when_ready(controller))
        waiting: set[asyncio.Task[Any]] = {task, stopper} | ({keeper} if keeper else set())
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            quiet = True  # the controller ended: no worker runs
            task.result()  # surface a crash
        if keeper is not None and keeper.done():
            log.error("lease lost: stopping so that only the replica that takes over creates Jobs")
            rc = 1
        log.info("shutting down")
        drained = await controller.queue.drain_and_shutdown(shutdown_timeout if rc == 0 else 0)
        quiet = quiet or drained
        if drained and rc == 0:
            # run records deferred by write-behind: written now, so the next controller need not read them back
            # from the Jobs (it would, correctly, but a status that is current at once is what kubectl users expect)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(shutdown_timeout):
                    written = await flush_deferred(controller)
                    log.info("deferred status writes flushed", extra={"jobtriggers": written})
        if not drained:
            log.warning(
                "shutdown timeout: unfinished keys will be redone by the next controller; the lease is left to "
                "expire, since a cut-off sync may still have a request on its way"
            )
        if membership is not None and quiet:
            # no worker runs any more: give the share away now, before the slower clean-up (Event flush); the
            # renewal loop ends first, so it cannot write the Lease again after the delete
            if keeper is not None and not keeper.done():
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            kube.deadline = None
            await membership.leave()
        return rc
    finally:
        for t in (task, keeper, stopper, freezer):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        quiet = quiet or task is None  # the controller never started
        if elector is not None:
            if quiet:
                kube.deadline = None  # releasing is allowed (and harmless) even when the proof ran out
                await elector.release()
            metrics.LEADER.set(0)
        if membership is not None and quiet:
            kube.deadline = None  # no worker ran when we stopped: deleting our Lease lets the others take over now
            await membership.leave()
        if runner is not None:
            await runner.cleanup()
        await kube.close()
        tracing.shutdown()  # flushes the spans still buffered
        log.info("stopped")


async def _freeze_when_ready(controller: Controller) -> None:
    """Once the caches are listed, move everything alive to the garbage collector's permanent generation
    (``gc.freeze``): a full collection then scans only what came later, instead of pausing every worker for tens
    of milliseconds over the whole cache (measured: the tail of the Event→Job latency, docs/benchmarks.md)."""
    await controller.ready.wait()
    gc.collect()
    gc.freeze()
