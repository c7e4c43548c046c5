"""Processes, ports and PKI of the test control plane."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from jobtrigger.envtest.base import (
    _STOP_GRACE_S,
    EnvtestError,
)

log = logging.getLogger("jobtrigger.envtest")


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
