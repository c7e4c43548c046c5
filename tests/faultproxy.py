"""A TCP proxy in front of the real kube-apiserver, for faults the server itself cannot produce.

It forwards bytes untouched (TLS passes through; the server certificate is for 127.0.0.1, so clients pointed at the
proxy still verify it). ``blackhole()`` makes every open connection silently dead — nothing is forwarded any more
and nothing is closed, as after a NAT timeout or a half-open TCP path — and holds new connections until
``restore()``. Connections that were blackholed stay dead for good; only new ones work after ``restore()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web


class FaultProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._conns: set[_Conn] = set()
        self.connections_total = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._conns):
            c.close()
        if self._server is not None:
            await self._server.wait_closed()

    def blackhole(self) -> None:
        self._open.clear()
        for c in list(self._conns):
            c.dead = True

    def restore(self) -> None:
        self._open.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        await self._open.wait()
        try:
            up_r, up_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        conn = _Conn(writer, up_w)
        self._conns.add(conn)
        try:
            await asyncio.gather(conn.pipe(reader, up_w), conn.pipe(up_r, writer))
        finally:
            self._conns.discard(conn)
            conn.close()

    def kubeconfig_via_proxy(self, kubeconfig: str, out: Path) -> str:
        """A copy of ``kubeconfig`` whose server URL points at the proxy."""
        return kubeconfig_via(kubeconfig, self.port, out)


def kubeconfig_via(kubeconfig: str, port: int, out: Path) -> str:
    """A copy of ``kubeconfig`` whose server URL is ``https://127.0.0.1:<port>`` (a proxy in front of the server)."""
    cfg = yaml.safe_load(Path(kubeconfig).read_text())
    for cluster in cfg["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    out.write_text(yaml.safe_dump(cfg))
    return str(out)


class _Conn:
    def __init__(self, down: asyncio.StreamWriter, up: asyncio.StreamWriter):
        self.down = down
        self.up = up
        self.dead = False

    async def pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await src.read(65536)
                if not data:
                    break
                if self.dead:
                    continue  # swallowed: the path is dead but nobody is told
                dst.write(data)
                await dst.drain()
        if not self.dead:
            with contextlib.suppress(OSError):
                dst.close()

    def close(self) -> None:
        for w in (self.down, self.up):
            with contextlib.suppress(OSError, RuntimeError):
                w.close()


class HttpFaultProxy:
    """An HTTPS proxy in front of the real kube-apiserver that answers some requests itself with an error
    (``429 Too Many Requests``, ``503``), as an overloaded or throttling API server would; everything else,
    watch streams included, is forwarded. It serves with the API server's own certificate (SAN 127.0.0.1), so
    clients keep verifying against the suite's CA.

    ``inject`` decides per request: return an HTTP status to fail it with, or None to forward it.
    """

    def __init__(self, upstream: str, *, cert: Path, key: Path, ca: Path):
        self.upstream = upstream.rstrip("/")
        self.cert, self.key, self.ca = cert, key, ca
        self.inject: Callable[[str, str], int | None] = lambda method, path: None
        #: requests for which this returns True are held, never forwarded nor answered (a request "on its way")
        self.hold: Callable[[str, str], bool] = lambda method, path: False
        self.held = 0
        self.injected: dict[int, int] = {}
        self.forwarded = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> int:
        client_ssl = ssl.create_default_context(cafile=str(self.ca))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # open watch streams must not hold up stop() (aiohttp waits 60 s for handlers by default)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(str(self.cert), str(self.key))
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    @classmethod
    def in_front_of(cls, control_plane: Any) -> HttpFaultProxy:
        """A proxy for the suite's own control plane, serving with its API server's certificate."""
        pki = control_plane.ca_path.parent
        return cls(
            control_plane.server_url, cert=pki / "apiserver.crt", key=pki / "apiserver.key", ca=control_plane.ca_path
        )

    def kubeconfig_via_proxy(self, kubeconfig: str, out: Path) -> str:
        """A copy of ``kubeconfig`` whose server URL points at the proxy (once started)."""
        return kubeconfig_via(kubeconfig, self.port, out)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.hold(request.method, request.path):
            self.held += 1
            await asyncio.Event().wait()  # until the client gives up or the proxy stops
        status = self.inject(request.method, request.path)
        if status is not None:
            self.injected[status] = self.injected.get(status, 0) + 1
            await request.read()
            reason = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(status, "InternalError")
            body = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": f"injected {status}",
                "reason": reason,
                "code": status,
            }
            return web.json_response(body, status=status, headers={"Retry-After": "1"})
        self.forwarded += 1
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=await request.read()
        ) as up:
            resp = web.StreamResponse(
                status=up.status, headers={k: v for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP}
            )
            await resp.prepare(request)
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
            return resp


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
