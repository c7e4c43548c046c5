"""A real, throw-away Kubernetes control plane for tests and demos ("envtest" style).

This module owns the lifecycle of a local control plane made of real upstream binaries:

* ``etcd``,
* ``kube-apiserver``,
* optionally ``kube-controller-manager``, so that the real Job controller, garbage collector and
  namespace controller drive objects exactly like in a cluster,
* optionally ``kube-scheduler`` and `KWOK <https://kwok.sigs.k8s.io>`_ with one fake Node, so that pods are
  scheduled and go through a node's lifecycle (Running/Ready, Job pods Succeeded or Failed) without a kubelet.

Two Kubernetes versions are supported, chosen by ``$JOBTRIGGER_K8S_VERSION``:

* ``1.37.2`` (the default, the newest release): everything built from Go modules by ``hack/build-k8s.sh``
  (kube-apiserver, kube-controller-manager, kube-scheduler, etcd 3.7.3, kwok 0.8.0);
* ``1.20.2`` (the oldest supported): kube-apiserver, kube-controller-manager and kube-scheduler built from
  Debian's source package with Debian's Go 1.19 by ``hack/build-envtest.sh``, Debian's etcd 3.4, the same kwok.

KWOK manages only the Node it is given (annotation ``kwok.x-k8s.io/node=fake``), and that Node carries the
taint ``kwok.x-k8s.io/node=fake:NoSchedule``: pods that tolerate it (:data:`KWOK_TOLERATION`) are scheduled
there and driven by the stages in ``jobtrigger/envtest_stages/kwok.yaml``; all other pods stay Pending, as on a
control plane without nodes, and tests may still set their status through the ``/status`` subresource.
We deliberately use the real API server instead of a fake API:
admission, validation, defaulting, resourceVersions, watch semantics (bookmarks, 410 Expired) and the
Job controller are exactly what the controller meets in production, so a passing integration test
means something.

Every :class:`ControlPlane` gets its own temporary work dir (PKI, token file, kubeconfig, etcd data,
process logs) and its own free loopback ports, so several control planes (a test session and a
running demo, say) can coexist.

Binaries are looked up in this order:

1. ``$KUBEBUILDER_ASSETS`` (a folder holding ``kube-apiserver`` and ``etcd``, optionally
   ``kube-controller-manager``, ``kube-scheduler`` and ``kwok``), as with controller-runtime's envtest;
2. ``$JOBTRIGGER_ENVTEST_DIR/bin`` (default ``~/.cache/jobtrigger/envtest/<version>/bin``); when a binary
   is missing there, the version's build script from the source checkout builds it (once; see docs/testing.md).

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
    "KWOK_LOG_LINE",
    "KWOK_NODE",
    "KWOK_TOLERATION",
    "OLDEST_K8S_VERSION",
    "Binaries",
    "ControlPlane",
    "EnvtestError",
    "default_envtest_dir",
    "existing_kubeconfig",
    "find_binaries",
    "k8s_version",
    "main",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: the Kubernetes version used unless $JOBTRIGGER_K8S_VERSION says otherwise (the newest one the project builds)
DEFAULT_ENVTEST_VERSION = "1.37.2"
#: the oldest version the project supports and tests (see docs/compatibility.md)
OLDEST_K8S_VERSION = "1.20.2"
#: the fake Node that KWOK manages, and the toleration a pod needs to be scheduled onto it
KWOK_NODE = "kwok-node-0"
KWOK_TOLERATION: dict[str, str] = {
    "key": "kwok.x-k8s.io/node",
    "operator": "Equal",
    "value": "fake",
    "effect": "NoSchedule",
}
_KWOK_STAGES = Path(__file__).resolve().parent / "envtest_stages" / "kwok.yaml"
#: what `kubectl logs` (pods/log) returns for any container on the KWOK node
KWOK_LOG_LINE = "log line from the KWOK node"
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
    kube_scheduler: Path | None = None
    kwok: Path | None = None


_OPTIONAL = ("kube-controller-manager", "kube-scheduler", "kwok")


def k8s_version() -> str:
    """The Kubernetes version to run: $JOBTRIGGER_K8S_VERSION, default :data:`DEFAULT_ENVTEST_VERSION`."""
    version = (os.environ.get("JOBTRIGGER_K8S_VERSION") or DEFAULT_ENVTEST_VERSION).removeprefix("v")
    if not re.fullmatch(r"1\.\d+\.\d+", version):
        raise EnvtestError(f"JOBTRIGGER_K8S_VERSION={version!r} is not a version like 1.37.2")
    return version


def default_envtest_dir(version: str | None = None) -> Path:
    """Folder that contains ``bin/`` ($JOBTRIGGER_ENVTEST_DIR or ~/.cache/jobtrigger/envtest/<version>)."""
    env = os.environ.get("JOBTRIGGER_ENVTEST_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "jobtrigger" / "envtest" / (version or k8s_version())


def _build_script(version: str) -> Path:
    """hack/build-envtest.sh for 1.20 (Debian's source package), hack/build-k8s.sh (Go modules) otherwise."""
    name = "build-envtest.sh" if version.startswith("1.20.") else "build-k8s.sh"
    return _repo_root() / "hack" / name


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_folder(folder: Path) -> Binaries | None:
    apiserver, etcd = folder / "kube-apiserver", folder / "etcd"
    if not _executable(apiserver):
        return None
    if not _executable(etcd):
        found = shutil.which("etcd")
        if found is None:
            return None
        etcd = Path(found)
    opt = {name: (folder / name if _executable(folder / name) else None) for name in _OPTIONAL}
    return Binaries(
        kube_apiserver=apiserver,
        etcd=etcd,
        kube_controller_manager=opt["kube-controller-manager"],
        kube_scheduler=opt["kube-scheduler"],
        kwok=opt["kwok"],
    )


def _build(version: str) -> None:
    script = _build_script(version)
    dest = default_envtest_dir(version)
    if not script.is_file():
        raise EnvtestError(
            f"Kubernetes {version} binaries not found and {script.name} is not available next to the jobtrigger "
            f"package (looked for {script}). Either set KUBEBUILDER_ASSETS to a folder holding kube-apiserver, etcd "
            f"(and optionally kube-controller-manager, kube-scheduler, kwok), put them into {dest / 'bin'} (or set "
            f"JOBTRIGGER_ENVTEST_DIR), or run hack/{script.name} from a jobtrigger source checkout."
        )
    dest.mkdir(parents=True, exist_ok=True)
    # Serialize concurrent builds (a test session and a demo starting at the same time).
    with open(dest / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _from_folder(dest / "bin") is not None:
            return
        log.warning("Kubernetes %s binaries missing; running %s (once; see docs/testing.md)", version, script)
        env = {**os.environ, "JOBTRIGGER_K8S_VERSION": version}
        proc = subprocess.run(["bash", str(script)], check=False, env=env)
        if proc.returncode != 0:
            raise EnvtestError(f"{script} failed with exit code {proc.returncode}")


def find_binaries(*, build: bool = True, version: str | None = None) -> Binaries:
    """Locate the binaries of ``version`` (default :func:`k8s_version`); build them if kube-apiserver or etcd is
    missing. A folder without kube-scheduler or kwok is used as it is (pods then stay Pending): `make test` and
    `make demo` run the build scripts, which complete it, but a test session never starts a long build for them."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        found = _from_folder(Path(assets).expanduser())
        if found is None:
            raise EnvtestError(f"KUBEBUILDER_ASSETS={assets} does not contain executable kube-apiserver and etcd")
        return found
    version = version or k8s_version()
    folder = default_envtest_dir(version) / "bin"
    found = _from_folder(folder)
    if found is None and build:
        _build(version)
        found = _from_folder(folder)
    if found is None:
        raise EnvtestError(f"no kube-apiserver/etcd in {folder}; run hack/{_build_script(version).name}")
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
                self._launch("kwok", self._kwok_cmd(bins.kwok))
                self._create_kwok_node()
                self._wait("kwok", self._kwok_node_ready)
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

    def _kwok_cmd(self, kwok: Path) -> list[str]:
        return [
            str(kwok),
            f"--kubeconfig={self.kubeconfig_path}",
            f"--config={_KWOK_STAGES}",
            f"--config={self._write_kwok_logs()}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            # KWOK's kubelet-like server (container logs) is the node's kubelet endpoint
            "--node-ip=127.0.0.1",
            f"--node-port={self._kwok_port}",
            f"--server-address=127.0.0.1:{self._kwok_port}",
        ]

    def _write_kwok_logs(self) -> Path:
        """A ClusterLogs config: every container on the KWOK node logs :data:`KWOK_LOG_LINE` (CRI log format)."""
        log_file = self.work_dir / "kwok-container.log"
        log_file.write_text(f"2026-01-01T00:00:00.000000000Z stdout F {KWOK_LOG_LINE}\n")
        config = self.work_dir / "kwok-logs.yaml"
        logs = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": "envtest"},
            "spec": {"selector": {}, "logs": [{"logsFile": str(log_file), "follow": False}]},
        }
        config.write_text(yaml.safe_dump(logs, sort_keys=False))
        return config

    def _create_kwok_node(self) -> None:
        """The fake Node KWOK manages: tainted, so only pods tolerating KWOK_TOLERATION are scheduled onto it."""
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": KWOK_NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": KWOK_NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {"taints": [{k: v for k, v in KWOK_TOLERATION.items() if k != "operator"}]},
        }
        status, body = self._request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise EnvtestError(f"creating Node {KWOK_NODE} returned HTTP {status}: {body[:300]!r}")

    def _kwok_node_ready(self) -> bool:
        try:
            status, body = self._get(f"/api/v1/nodes/{KWOK_NODE}")
        except OSError:
            return False
        if status != 200:
            return False
        conds = (json.loads(body).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)

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
    """``python -m jobtrigger.envtest up [--no-controller-manager] [--no-kwok]``: run a control plane until Ctrl-C.

    The version is $JOBTRIGGER_K8S_VERSION (default :data:`DEFAULT_ENVTEST_VERSION`).
    """
    parser = argparse.ArgumentParser(prog="python -m jobtrigger.envtest", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up", help="start etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler, kwok); wait for Ctrl-C"
    )
    up.add_argument("--no-controller-manager", action="store_true", help="do not start kube-controller-manager")
    up.add_argument("--no-kwok", action="store_true", help="do not start kube-scheduler and kwok")
    up.add_argument("--keep", action="store_true", help="keep the work dir (logs, etcd data) on exit")
    up.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    cp = ControlPlane(with_controller_manager=not args.no_controller_manager, with_kwok=not args.no_kwok)
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
                f"controller-manager: {'yes' if cp.has_controller_manager else 'no'}; "
                f"scheduler + kwok node {KWOK_NODE}: {'yes' if cp.has_kwok else 'no'}); "
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
