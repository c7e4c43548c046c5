"""The control plane itself: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK on free loopback
ports, each in its own work dir (see :mod:`jobtrigger.envtest`)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml

from jobtrigger.envtest import kwok
from jobtrigger.envtest.base import (
    _POLL_S,
    _PORT_RETRIES,
    _T,
    USER_AGENT,
    EnvtestError,
    _PortInUse,
)
from jobtrigger.envtest.binaries import (
    Binaries,
    _binary_minor_version,
    find_binaries,
)
from jobtrigger.envtest.procs import (
    _free_ports,
    _make_pki,
    _Proc,
    _stop_proc,
    _tail,
)

log = logging.getLogger("jobtrigger.envtest")

# Every ControlPlane that was started and not yet stopped; stopped at interpreter exit as a safety net.
_LIVE: set[ControlPlane] = set()


# ----------------------------------------------------------------------------------------------------
# the control plane


@dataclass(eq=False)
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler, KWOK) on free loopback ports.

    Use as ``with ControlPlane() as cp:`` / ``async with ControlPlane() as cp:`` or call :meth:`start` and
    :meth:`stop` (sync; :meth:`astart`/:meth:`astop` run them in a thread). Start takes about 4 s.
    """

    with_controller_manager: bool = True
    #: kube-scheduler and KWOK with one fake Node (when both binaries exist); needs the controller manager
    with_kwok: bool = True
    binaries: Binaries | None = None  # None: find_binaries() (which may build them)
    start_timeout: float = 60.0
    keep_work_dir: bool = field(default_factory=lambda: os.environ.get("JOBTRIGGER_KEEP_ENVTEST") == "1")
    extra_apiserver_flags: list[str] = field(default_factory=list)

    #: seconds from start() to etcd /health, and from apiserver launch to /readyz ok (set by start())
    timings: dict[str, float] = field(default_factory=dict, init=False)

    _work_dir: Path | None = field(default=None, init=False, repr=False)
    _token: str = field(default="", init=False, repr=False)
    _etcd_port: int = field(default=0, init=False, repr=False)
    _etcd_peer_port: int = field(default=0, init=False, repr=False)
    _api_port: int = field(default=0, init=False, repr=False)
    _kwok_port: int = field(default=0, init=False, repr=False)
    _minor: int = field(default=0, init=False, repr=False)
    _version: str = field(default="", init=False, repr=False)
    _procs: dict[str, _Proc] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    # ---- public read-only state ----------------------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        return self._require(self._work_dir)

    @property
    def kubeconfig_path(self) -> Path:
        return self.work_dir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        return self.work_dir / "pki" / "ca.crt"

    @property
    def token(self) -> str:
        return self._require(self._token or None)

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self._require(self._api_port or None)}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self._require(self._etcd_port or None)}"

    @property
    def version(self) -> str:
        """gitVersion reported by the running server's /version, e.g. ``v1.20.2``."""
        return self._require(self._version or None)

    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.popen.poll() is None for p in self._procs.values())

    @property
    def has_controller_manager(self) -> bool:
        """True when kube-controller-manager runs (Jobs get pods, GC and namespace deletion work)."""
        return "kube-controller-manager" in self._procs

    @property
    def has_kwok(self) -> bool:
        """True when kube-scheduler and KWOK run: pods tolerating :data:`KWOK_TOLERATION` get a node lifecycle."""
        return "kwok" in self._procs and "kube-scheduler" in self._procs

    @property
    def minor(self) -> int:
        """Minor version of the kube-apiserver binary (20 for v1.20.2)."""
        return self._require(self._minor or None)

    def log_path(self, name: str) -> Path:
        """Log file of a component: ``etcd``, ``kube-apiserver``, ``kube-controller-manager``, ``kube-scheduler``,
        ``kwok``."""
        return self.work_dir / "logs" / f"{name}.log"

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.popen.pid if proc is not None else None

    def exited(self) -> list[str]:
        """Names of started components that are no longer running."""
        return [name for name, p in self._procs.items() if p.popen.poll() is not None]

    # ---- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Create work dir and PKI, start etcd and kube-apiserver (waits for /readyz), maybe the KCM."""
        with self._lock:
            if self._procs:
                raise EnvtestError("control plane already started")
            if self.binaries is None:
                self.binaries = find_binaries()
            self._minor = _binary_minor_version(self.binaries.kube_apiserver)
            self._token = secrets.token_hex(24)
            self._work_dir = Path(tempfile.mkdtemp(prefix="jobtrigger-envtest-"))
            _LIVE.add(self)
            try:
                _make_pki(self.work_dir / "pki", self._token)
                (self.work_dir / "logs").mkdir()
                for attempt in range(1, _PORT_RETRIES + 1):
                    try:
                        self._start_processes()
                        break
                    except _PortInUse:
                        self._stop_processes()
                        if attempt == _PORT_RETRIES:
                            raise
                        log.info("a picked port was taken; retrying with new ports")
            except BaseException:
                self.stop()
                raise
            log.info(
                "envtest %s ready at %s in %.2fs (work dir %s)",
                self._version,
                self.server_url,
                self.timings.get("total_s", 0.0),
                self.work_dir,
            )
            return self

    def stop(self) -> None:
        """Stop KCM, apiserver, etcd (SIGTERM, SIGKILL after 5 s) and remove the work dir (idempotent)."""
        with self._lock:
            self._stop_processes()
            _LIVE.discard(self)
            if self._work_dir is not None:
                if self.keep_work_dir:
                    log.info("keeping envtest work dir %s", self._work_dir)
                else:
                    shutil.rmtree(self._work_dir, ignore_errors=True)
                self._work_dir = None

    def stop_apiserver(self, grace: float = 1.0) -> None:
        """Stop kube-apiserver only: SIGTERM, then SIGKILL after ``grace`` s.

        On SIGTERM the apiserver closes its listener at once (new connections are refused) but keeps
        serving open watches (KCM's, the controller's) for many seconds, so a short grace ends them with a
        connection reset, like a crashed or rolled apiserver.
        """
        with self._lock:
            proc = self._procs.pop("kube-apiserver", None)
            if proc is None:
                raise EnvtestError("kube-apiserver is not running")
            _stop_proc(proc, grace)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again after :meth:`stop_apiserver` (same port, same etcd, same token)."""
        with self._lock:
            if "kube-apiserver" in self._procs:
                raise EnvtestError("kube-apiserver is already running")
            if "etcd" not in self._procs:
                raise EnvtestError("control plane is not started")
            t0 = time.monotonic()
            self._launch("kube-apiserver", self._apiserver_cmd(), append=True)
            self._wait_apiserver_ready()
            self.timings["restart_apiserver_s"] = time.monotonic() - t0

    def restart_apiserver(self, grace: float = 1.0) -> None:
        """Stop and start kube-apiserver only (same port, same etcd): breaks every watch and connection.

        Data survives (it lives in etcd); kube-controller-manager reconnects by itself.
        """
        with self._lock:
            self.stop_apiserver(grace)
            self.start_apiserver()

    async def astart(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    async def arestart_apiserver(self, grace: float = 1.0) -> None:
        await asyncio.to_thread(self.restart_apiserver, grace)

    async def astop_apiserver(self, grace: float = 1.0) -> None:
        await asyncio.to_thread(self.stop_apiserver, grace)

    async def astart_apiserver(self) -> None:
        await asyncio.to_thread(self.start_apiserver)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    # ---- internals -----------------------------------------------------------------------------------------

    @staticmethod
    def _require(value: _T | None) -> _T:
        if value is None:
            raise EnvtestError("control plane is not started")
        return value

    def _bins(self) -> Binaries:
        return self._require(self.binaries)

    def _start_processes(self) -> None:
        self._etcd_port, self._etcd_peer_port, self._api_port, self._kwok_port = _free_ports(4)
        self._write_kubeconfig()
        t0 = time.monotonic()
        shutil.rmtree(self.work_dir / "etcd-data", ignore_errors=True)
        self._launch("etcd", self._etcd_cmd())
        self._wait("etcd", self._etcd_healthy)
        t1 = time.monotonic()
        self._launch("kube-apiserver", self._apiserver_cmd())
        self._wait_apiserver_ready()
        t2 = time.monotonic()
        self.timings.update(etcd_ready_s=t1 - t0, apiserver_ready_s=t2 - t1)
        bins = self._bins()
        kcm = bins.kube_controller_manager
        if self.with_controller_manager:
            if kcm is None:
                log.warning("kube-controller-manager not found next to kube-apiserver; Jobs will get no pods")
            else:
                self._launch("kube-controller-manager", self._kcm_cmd(kcm))
        if self.with_kwok and self.with_controller_manager and kcm is not None:
            if bins.kube_scheduler is None or bins.kwok is None:
                log.warning("kube-scheduler or kwok not found next to kube-apiserver; pods will stay Pending")
            else:
                self._launch("kube-scheduler", self._scheduler_cmd(bins.kube_scheduler))
                self._launch("kwok", kwok.kwok_cmd(self, bins.kwok))
                kwok.create_kwok_node(self)
                self._wait("kwok", lambda: kwok.kwok_node_ready(self))
        self.timings["total_s"] = time.monotonic() - t0

    def _stop_processes(self) -> None:
        # Fixed order: the clients first (their watches would hold a terminating apiserver open), etcd last.
        for name in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                _stop_proc(proc)

    def _etcd_cmd(self) -> list[str]:
        client, peer = f"http://127.0.0.1:{self._etcd_port}", f"http://127.0.0.1:{self._etcd_peer_port}"
        return [
            str(self._bins().etcd),
            "--name=envtest",
            f"--data-dir={self.work_dir / 'etcd-data'}",
            "--logger=zap",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=envtest={peer}",
            "--unsafe-no-fsync",
        ]

    def _apiserver_cmd(self) -> list[str]:
        pki = self.work_dir / "pki"
        cmd = [
            str(self._bins().kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self._api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            # pods/log and friends go to the node's "kubelet" (KWOK's server on 127.0.0.1): by address, not name
            "--kubelet-preferred-address-types=InternalIP",
        ]
        if self._minor < 24:  # deprecated in 1.20, removed in 1.24
            cmd.append("--insecure-port=0")
        return cmd + self.extra_apiserver_flags

    def _kcm_cmd(self, kcm: Path) -> list[str]:
        pki = self.work_dir / "pki"
        cmd = [
            str(kcm),
            f"--kubeconfig={self.kubeconfig_path}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--controllers=*",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
        ]
        if _binary_minor_version(kcm) < 24:  # insecure serving port; the flag was removed in 1.24
            cmd.append("--port=0")
        return cmd

    def _scheduler_cmd(self, scheduler: Path) -> list[str]:
        cmd = [
            str(scheduler),
            f"--kubeconfig={self.kubeconfig_path}",
            f"--authentication-kubeconfig={self.kubeconfig_path}",
            f"--authorization-kubeconfig={self.kubeconfig_path}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
        ]
        if _binary_minor_version(scheduler) < 23:  # insecure serving port; the flag was removed in 1.23
            cmd.append("--port=0")
        return cmd

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {"server": self.server_url, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [{"name": "envtest-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "envtest",
                    "context": {"cluster": "envtest", "user": "envtest-admin", "namespace": "default"},
                }
            ],
            "current-context": "envtest",
        }
        self.kubeconfig_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig_path.chmod(0o600)

    def _launch(self, name: str, cmd: list[str], *, append: bool = False) -> None:
        log_file = open(self.log_path(name), "ab" if append else "wb")  # noqa: SIM115 - closed by _stop_proc
        log.debug("starting %s: %s", name, " ".join(cmd))
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=self.work_dir,
            start_new_session=True,  # a Ctrl-C in the terminal must not kill them before stop() runs
        )
        self._procs[name] = _Proc(name=name, popen=popen, log_file=log_file)

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        """Poll ``ready()`` until it returns a truthy value; fail fast if the process dies."""
        deadline = time.monotonic() + self.start_timeout
        proc = self._procs[name]
        while True:
            if ready():
                return
            code = proc.popen.poll()
            if code is not None:
                tail = _tail(self.log_path(name))
                if "address already in use" in tail:
                    raise _PortInUse(f"{name}: port taken")
                raise EnvtestError(f"{name} exited with code {code}; last log lines:\n{tail}")
            if time.monotonic() > deadline:
                raise EnvtestError(
                    f"{name} not ready after {self.start_timeout:.0f}s; last log lines:\n{_tail(self.log_path(name))}"
                )
            time.sleep(_POLL_S)

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                body = json.loads(resp.read())
        except (OSError, ValueError):
            return False
        return isinstance(body, dict) and body.get("health") == "true"

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET on the apiserver with the CA and bearer token (not curl: see USER_AGENT)."""
        return self._request("GET", path, timeout=timeout)

    def _request(self, method: str, path: str, body: object = None, timeout: float = 5.0) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        req = urllib.request.Request(
            self.server_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _apiserver_ready(self) -> bool:
        try:
            status, body = self._get("/readyz")
        except OSError:
            return False
        return status == 200 and body.strip() == b"ok"

    def _wait_apiserver_ready(self) -> None:
        self._wait("kube-apiserver", self._apiserver_ready)
        status, body = self._get("/version")
        if status != 200:
            raise EnvtestError(f"/version returned HTTP {status}: {body[:200]!r}")
        self._version = str(json.loads(body)["gitVersion"])


@atexit.register
def _stop_all() -> None:
    for cp in list(_LIVE):
        with contextlib.suppress(Exception):
            cp.stop()
