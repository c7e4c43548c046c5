"""A real, throw-away Kubernetes control plane for tests and demos ("envtest" style).

This module owns the lifecycle of a local control plane made of real upstream binaries:

* ``etcd`` (Debian's ``etcd-server``),
* ``kube-apiserver`` (v1.20.2, built offline by ``hack/build-envtest.sh``),
* optionally ``kube-controller-manager``, so that the real Job controller, garbage collector and
  namespace controller drive objects exactly like in a cluster.

There is no scheduler and no kubelet: pods never run. Tests play the kubelet by patching pod status
through the ``/status`` subresource. We deliberately use the real API server instead of a fake API:
admission, validation, defaulting, resourceVersions, watch semantics (bookmarks, 410 Expired) and the
Job controller are exactly what the controller meets in production, so a passing integration test
means something.

Every :class:`ControlPlane` gets its own temporary work dir (PKI, token file, kubeconfig, etcd data,
process logs) and its own free loopback ports, so several control planes (a test session and a
running demo, say) can coexist.

Binaries are looked up in this order:

1. ``$KUBEBUILDER_ASSETS`` (a folder holding ``kube-apiserver`` and ``etcd``, optionally
   ``kube-controller-manager``), as with controller-runtime's envtest;
2. ``$JOBTRIGGER_ENVTEST_DIR/bin`` (default ``~/.cache/jobtrigger/envtest/1.20.2/bin``); when that
   is missing, ``hack/build-envtest.sh`` from the source checkout builds it (about 4 minutes, once).

Command line: ``python -m jobtrigger.envtest up`` starts a control plane, prints
``export KUBECONFIG=...`` and keeps it running until SIGINT/SIGTERM.

Environment: ``JOBTRIGGER_KEEP_ENVTEST=1`` keeps the work dir (logs, etcd data) after
:meth:`ControlPlane.stop`; ``JOBTRIGGER_TEST_KUBECONFIG`` makes the test suite use an existing
cluster instead (see :func:`existing_kubeconfig`).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self, TypeVar

import yaml

__all__ = [
    "DEFAULT_ENVTEST_VERSION",
    "Binaries",
    "ControlPlane",
    "EnvtestError",
    "default_envtest_dir",
    "existing_kubeconfig",
    "find_binaries",
    "main",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_ENVTEST_VERSION = "1.20.2"
USER_AGENT = "jobtrigger-envtest/1"  # never curl/Wget: the 1.20 apiserver pretty-prints for those (see docs)
_STOP_GRACE_S = 5.0
_POLL_S = 0.1
_PORT_RETRIES = 3

# Every ControlPlane that was started and not yet stopped; stopped at interpreter exit as a safety net.
_LIVE: set[ControlPlane] = set()


class EnvtestError(RuntimeError):
    """The control plane could not be obtained or started."""


class _PortInUse(EnvtestError):
    """A picked port was taken between picking and binding; start() retries with fresh ports."""


# ----------------------------------------------------------------------------------------------------
# binaries


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables."""

    kube_apiserver: Path
    etcd: Path
    kube_controller_manager: Path | None


def default_envtest_dir() -> Path:
    """Folder that contains ``bin/`` ($JOBTRIGGER_ENVTEST_DIR or ~/.cache/jobtrigger/envtest/1.20.2)."""
    env = os.environ.get("JOBTRIGGER_ENVTEST_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "jobtrigger" / "envtest" / DEFAULT_ENVTEST_VERSION


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_folder(folder: Path) -> Binaries | None:
    apiserver, kcm, etcd = folder / "kube-apiserver", folder / "kube-controller-manager", folder / "etcd"
    if not _executable(apiserver):
        return None
    if not _executable(etcd):
        found = shutil.which("etcd")
        if found is None:
            return None
        etcd = Path(found)
    return Binaries(kube_apiserver=apiserver, etcd=etcd, kube_controller_manager=kcm if _executable(kcm) else None)


def _build() -> None:
    script = _repo_root() / "hack" / "build-envtest.sh"
    if not script.is_file():
        raise EnvtestError(
            "kube-apiserver/etcd binaries not found and hack/build-envtest.sh is not available next to the "
            f"jobtrigger package (looked for {script}). Either set KUBEBUILDER_ASSETS to a folder holding "
            "kube-apiserver, etcd (and optionally kube-controller-manager), put them into "
            f"{default_envtest_dir() / 'bin'} (or set JOBTRIGGER_ENVTEST_DIR), or run "
            "hack/build-envtest.sh from a jobtrigger source checkout."
        )
    dest = default_envtest_dir()
    dest.mkdir(parents=True, exist_ok=True)
    # Serialize concurrent builds (a test session and a demo starting at the same time).
    with open(dest / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _from_folder(dest / "bin") is not None:
            return
        log.warning("envtest binaries missing; running %s (about 4 minutes, once)", script)
        proc = subprocess.run(["bash", str(script)], check=False)
        if proc.returncode != 0:
            raise EnvtestError(f"{script} failed with exit code {proc.returncode}")


def find_binaries(*, build: bool = True) -> Binaries:
    """Locate kube-apiserver, etcd and (optionally) kube-controller-manager; build them if missing."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        found = _from_folder(Path(assets).expanduser())
        if found is None:
            raise EnvtestError(f"KUBEBUILDER_ASSETS={assets} does not contain executable kube-apiserver and etcd")
        return found
    folder = default_envtest_dir() / "bin"
    found = _from_folder(folder)
    if found is None and build:
        _build()
        found = _from_folder(folder)
    if found is None:
        raise EnvtestError(f"no kube-apiserver/etcd in {folder}; run hack/build-envtest.sh")
    return found


def _binary_minor_version(binary: Path) -> int:
    """Minor version of a Kubernetes component from ``<binary> --version`` ("Kubernetes v1.20.2")."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False)
    m = re.search(r"v1\.(\d+)", out.stdout + out.stderr)
    if m is None:
        raise EnvtestError(f"cannot parse the version of {binary}: {out.stdout!r} {out.stderr!r}")
    return int(m.group(1))


# ----------------------------------------------------------------------------------------------------
# helpers


def existing_kubeconfig() -> str | None:
    """Kubeconfig of an existing cluster to test against instead (opt-in via $JOBTRIGGER_TEST_KUBECONFIG)."""
    return os.environ.get("JOBTRIGGER_TEST_KUBECONFIG") or None


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback TCP ports (all sockets are held open together so the ports differ)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _openssl(command: str, cwd: Path) -> None:
    """Run ``openssl <command>`` (whitespace-separated arguments, none containing spaces) in ``cwd``."""
    proc = subprocess.run(["openssl", *command.split()], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EnvtestError(f"openssl {command} failed: {proc.stderr.strip()}")


def _make_pki(pki: Path, token: str) -> None:
    """CA, apiserver serving cert (SAN 127.0.0.1/localhost), service-account keypair, static token file."""
    if shutil.which("openssl") is None:
        raise EnvtestError("the openssl command is needed for the envtest PKI (apt-get install openssl)")
    pki.mkdir(parents=True)
    _openssl(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=jt-envtest-ca",
        pki,
    )
    _openssl("req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver", pki)
    (pki / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "IP:127.0.0.1,IP:10.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 "
        "-extfile ext.cnf",
        pki,
    )
    _openssl("genrsa -out sa.key 2048", pki)
    _openssl("rsa -in sa.key -pubout -out sa.pub", pki)
    (pki / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
    for key in ("ca.key", "apiserver.key", "sa.key", "tokens.csv"):
        (pki / key).chmod(0o600)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_file: IO[bytes]


def _stop_proc(proc: _Proc, grace: float = _STOP_GRACE_S) -> None:
    p = proc.popen
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.info("%s (pid %d) still running %.1fs after SIGTERM; sending SIGKILL", proc.name, p.pid, grace)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()
    proc.log_file.close()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------------------------------
# the control plane


@dataclass(eq=False)
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager) on free loopback ports, in a temporary work dir.

    Use as ``with ControlPlane() as cp:`` / ``async with ControlPlane() as cp:`` or call :meth:`start` and
    :meth:`stop` (sync; :meth:`astart`/:meth:`astop` run them in a thread). Start takes about 4 s.
    """

    with_controller_manager: bool = True
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

    def log_path(self, name: str) -> Path:
        """Log file of a component: ``etcd``, ``kube-apiserver`` or ``kube-controller-manager``."""
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
        self._etcd_port, self._etcd_peer_port, self._api_port = _free_ports(3)
        self._write_kubeconfig()
        t0 = time.monotonic()
        shutil.rmtree(self.work_dir / "etcd-data", ignore_errors=True)
        self._launch("etcd", self._etcd_cmd())
        self._wait("etcd", self._etcd_healthy)
        t1 = time.monotonic()
        self._launch("kube-apiserver", self._apiserver_cmd())
        self._wait_apiserver_ready()
        t2 = time.monotonic()
        self.timings.update(etcd_ready_s=t1 - t0, apiserver_ready_s=t2 - t1, total_s=t2 - t0)
        kcm = self._bins().kube_controller_manager
        if self.with_controller_manager:
            if kcm is None:
                log.warning("kube-controller-manager not found next to kube-apiserver; Jobs will get no pods")
            else:
                self._launch("kube-controller-manager", self._kcm_cmd(kcm))

    def _stop_processes(self) -> None:
        # Fixed order: KCM first (its watches would hold a terminating apiserver open), etcd last.
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
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
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        req = urllib.request.Request(
            self.server_url + path,
            headers={
                "Authorization": f"Bearer {self.token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
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


# ----------------------------------------------------------------------------------------------------
# command line


@contextlib.contextmanager
def _until_signal() -> Iterator[threading.Event]:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    """``python -m jobtrigger.envtest up [--no-controller-manager]``: run a control plane until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m jobtrigger.envtest", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd + kube-apiserver (+ kube-controller-manager) and wait for Ctrl-C")
    up.add_argument("--no-controller-manager", action="store_true", help="do not start kube-controller-manager")
    up.add_argument("--keep", action="store_true", help="keep the work dir (logs, etcd data) on exit")
    up.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    cp = ControlPlane(with_controller_manager=not args.no_controller_manager)
    if args.keep:
        cp.keep_work_dir = True
    with _until_signal() as stop:
        try:
            cp.start()
        except EnvtestError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        try:
            t = cp.timings
            print(
                f"# kube-apiserver {cp.version} at {cp.server_url} "
                f"(etcd {t['etcd_ready_s']:.2f}s + apiserver {t['apiserver_ready_s']:.2f}s; "
                f"controller-manager: {'yes' if cp.has_controller_manager else 'no'}); "
                f"logs in {cp.work_dir / 'logs'}",
                file=sys.stderr,
            )
            print(cp.kubeconfig_path)
            print(f"export KUBECONFIG={cp.kubeconfig_path}", flush=True)
            print("# press Ctrl-C to stop", file=sys.stderr)
            while not stop.wait(1.0):
                if not cp.running:
                    print(f"error: {', '.join(cp.exited())} exited; see {cp.work_dir / 'logs'}", file=sys.stderr)
                    cp.keep_work_dir = True
                    return 1
        finally:
            cp.stop()
    print("# stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
