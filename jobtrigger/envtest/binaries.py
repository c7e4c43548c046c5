"""Where the control plane's binaries come from: $KUBEBUILDER_ASSETS, the per-version cache, or the version's build
script (hack/build-k8s.sh for the newest, hack/build-envtest.sh for the oldest)."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jobtrigger.envtest.base import (
    DEFAULT_ENVTEST_VERSION,
    EnvtestError,
)

log = logging.getLogger("jobtrigger.envtest")


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
