"""Process wiring: API client, controller, the HTTP endpoints (/metrics, /healthz, /readyz) and signals.

SIGTERM/SIGINT stop taking new work, let workers finish the keys they hold (bounded by ``shutdown_timeout``),
cancel the watches and exit 0. Because Job names are deterministic, anything cut short is redone, not duplicated,
by the next process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from jobtrigger import metrics
from jobtrigger.kube.client import KubeClient
from jobtrigger.reactor.controller import Controller, Settings

log = logging.getLogger(__name__)


def _count_request(verb: str, resource: str, code: int) -> None:
    metrics.API_REQUESTS.labels(verb, resource, str(code)).inc()


async def _http(controller: Controller, host: str, port: int) -> web.AppRunner:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if controller.ready.is_set():
            return web.Response(text="ok")
        return web.Response(status=503, text="watches not synced")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_controller(
    settings: Settings,
    *,
    kubeconfig: str | None = None,
    http_host: str = "0.0.0.0",
    http_port: int = 8080,
    shutdown_timeout: float = 10.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set)."""
    kube = await KubeClient.from_config(kubeconfig)
    kube.on_request = _count_request
    controller = Controller(kube, settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runner = await _http(controller, http_host, http_port) if http_port >= 0 else None
    task = loop.create_task(controller.run(), name="controller")
    stopper = loop.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # surface a crash
        log.info("shutting down")
        drained = await controller.queue.drain_and_shutdown(shutdown_timeout)
        if not drained:
            log.warning("shutdown timeout: unfinished keys will be redone by the next controller")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        stopper.cancel()
        if runner is not None:
            await runner.cleanup()
        await kube.close()
        log.info("stopped")
