"""A TCP proxy in front of the real kube-apiserver, for faults the server itself cannot produce.

It forwards bytes untouched (TLS passes through; the server certificate is for 127.0.0.1, so clients pointed at the
proxy still verify it). ``blackhole()`` makes every open connection silently dead — nothing is forwarded any more
and nothing is closed, as after a NAT timeout or a half-open TCP path — and holds new connections until
``restore()``. Connections that were blackholed stay dead for good; only new ones work after ``restore()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import yaml


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
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        for cluster in cfg["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
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
