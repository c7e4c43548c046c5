"""The chart's ClusterRoles for people, on the real API server with real tokens.

The chart is ``helm install``-ed (``--skip-crds``, a unique release: its ClusterRoles are cluster-scoped). Each
"user" is a ServiceAccount whose token (the legacy token Secret before 1.24, else the TokenRequest API) is the only
credential in its kubeconfig, bound by a RoleBinding in the test namespace to exactly one role: one of the chart's
``<fullname>-view`` / ``-edit`` / ``-admin``, or the built-in ``view`` / ``edit`` that the chart's roles are
aggregated into (kube-controller-manager's clusterrole-aggregation controller does that). Every check is a real
request; ``jobtrigger run`` runs as a subprocess with the user's kubeconfig.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobtrigger.envtest import ControlPlane
from jobtrigger.jobs.builder import ANNOTATION_RUN_REQUESTED
from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import Runner, jt_path, wait_for, wait_jobs, wait_ready
from tests.integration.test_helm_install import _run, _sa_kubeconfig, _sa_token, helm_env
from tests.integration.test_helm_install import helm as helm  # the fixture (fetches helm if missing)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jobtrigger"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
#: a JobTrigger the users act on; a Job created from it runs `true`
MANUAL: dict[str, Any] = {"manual": {}}


@dataclass
class Release:
    name: str
    fullname: str
    namespace: str


@dataclass
class User:
    name: str
    client: KubeClient
    kubeconfig: Path


async def helm_cmd(helm: Path, kubeconfig: str, ns: str, tmp_path: Path, *args: str) -> str:
    rc, out = await _run([str(helm), *args, "--kubeconfig", kubeconfig, "--namespace", ns], helm_env(tmp_path))
    assert rc == 0, f"helm {' '.join(args)} failed:\n{out}"
    return out


@pytest.fixture
async def release(helm: Path, kubeconfig: str, namespace: str, tmp_path: Path) -> AsyncIterator[Release]:
    """The chart installed in the test namespace (namespaced mode), uninstalled afterwards."""
    name = f"jt-{secrets.token_hex(3)}"
    await helm_cmd(
        helm, kubeconfig, namespace, tmp_path, "install", name, str(CHART), "--skip-crds",
        "--set", f"watchNamespaces={{{namespace}}}",
    )  # fmt: skip
    try:
        yield Release(name, f"{name}-jobtrigger", namespace)
    finally:
        await _run([str(helm), "uninstall", name, "--kubeconfig", kubeconfig, "--namespace", namespace],
                   helm_env(tmp_path))  # fmt: skip


async def make_user(
    kube: KubeClient,
    control_plane: ControlPlane | None,
    kubeconfig: str,
    ns: str,
    name: str,
    cluster_role: str,
    tmp_path: Path,
) -> User:
    """A ServiceAccount ``name`` in ``ns`` bound (RoleBinding in ``ns``) to ``cluster_role`` only; its token alone."""
    await kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": name}})
    await kube.create(
        f"{RBAC}/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
    )
    token, _ = await _sa_token(kube, control_plane, ns, name)
    path = _sa_kubeconfig(kubeconfig, token, ns, tmp_path / f"kubeconfig-{name}")
    return User(name, await KubeClient.from_config(str(path)), path)


async def status_of(call: Any) -> int:
    """HTTP status of an awaitable API call (2xx -> 200)."""
    try:
        await call
    except ApiError as e:
        return e.status
    return 200


async def jobtrigger_run(user: User, ns: str, name: str, token: str) -> tuple[int, str]:
    """`jobtrigger run NAME -n NS --token TOKEN` with the user's kubeconfig, as a subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobtrigger.cli", "run", name, "-n", ns, "--token", token,
        "--kubeconfig", str(user.kubeconfig),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def jt_body(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "jobtrigger.dev/v1alpha1",
        "kind": "JobTrigger",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "triggers": MANUAL,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                        }
                    }
                }
            },
        },
    }


#: what each role may do (docs/rbac.md, "Roles for people"); anything not listed is refused
ROWS: dict[str, set[str]] = {
    "view": {"get", "list", "watch", "get-status"},
    "edit": {"get", "list", "watch", "get-status", "create", "update", "patch", "run", "delete"},
    "admin": {"get", "list", "watch", "get-status", "create", "update", "patch", "run", "delete", "deletecollection"},
}
EVERY_ACTION = sorted(
    set().union(*ROWS.values())
    | {"patch-status", "update-status", "list-all-namespaces", "create-job", "read-secrets", "create-pod"}
)


async def try_everything(kube: KubeClient, user: User, ns: str) -> dict[str, bool]:
    """action -> allowed, every one a real request as ``user`` (the objects it needs are made as admin)."""
    me = user.name
    u = user.client
    base = jt_path(ns)
    # a JobTrigger with a status, as the controller would have written it
    target = f"{me}-target"
    await kube.create(base, jt_body(ns, target))
    await kube.merge_patch(f"{base}/{target}/status", {"status": {"observedGeneration": 1}})
    got = await kube.get(f"{base}/{target}")
    rv = got["metadata"]["resourceVersion"]
    allowed: dict[str, bool] = {}

    async def check(action: str, call: Any) -> None:
        code = await status_of(call)
        assert code in (200, 403), f"{me} {action}: unexpected {code}"
        allowed[action] = code == 200

    await check("get", u.get(f"{base}/{target}"))
    await check("get-status", u.get(f"{base}/{target}/status"))
    await check("list", u.get(base))
    await check("watch", u.get(base, watch="true", resourceVersion=rv, timeoutSeconds="1"))
    await check("list-all-namespaces", u.get("/apis/jobtrigger.dev/v1alpha1/jobtriggers"))
    # a status in the body is dropped by the server (status subresource): checked by the caller
    await check("create", u.create(base, {**jt_body(ns, f"{me}-created"), "status": {"observedGeneration": 9}}))
    fresh = await kube.get(f"{base}/{target}")
    fresh["metadata"].setdefault("labels", {})["who"] = me
    await check("update", u.request("PUT", f"{base}/{target}", body=fresh))
    await check("patch", u.merge_patch(f"{base}/{target}", {"metadata": {"labels": {"patched": "yes"}}}))
    rc, out = await jobtrigger_run(user, ns, target, f"tok-{me}")
    assert rc in (0, 1), out
    allowed["run"] = rc == 0
    if rc == 0:
        annotations = (await kube.get(f"{base}/{target}"))["metadata"]["annotations"]
        assert annotations[ANNOTATION_RUN_REQUESTED] == f"tok-{me}"
    else:
        assert "forbidden" in out, out
    # the status: never written by people (the controller alone has jobtriggers/status patch)
    await check("patch-status", u.merge_patch(f"{base}/{target}/status", {"status": {"observedGeneration": 7}}))
    fresh = await kube.get(f"{base}/{target}")
    fresh["status"] = {"observedGeneration": 8}
    await check("update-status", u.request("PUT", f"{base}/{target}/status", body=fresh))
    # what the roles do not reach: Jobs, pods and Secrets directly
    job = {"metadata": {"name": f"{me}-job"}, "spec": jt_body(ns, "x")["spec"]["jobTemplate"]["spec"]}
    await check("create-job", u.create(f"/apis/batch/v1/namespaces/{ns}/jobs", job))
    pod = {"metadata": {"name": f"{me}-pod"}, "spec": job["spec"]["template"]["spec"]}
    await check("create-pod", u.create(f"/api/v1/namespaces/{ns}/pods", pod))
    await check("read-secrets", u.get(f"/api/v1/namespaces/{ns}/secrets"))
    await check("delete", u.delete(f"{base}/{target}"))
    # deletecollection on a label only this user's objects carry
    await kube.create(base, {**jt_body(ns, f"{me}-c"), "metadata": {"name": f"{me}-c", "labels": {"owner": me}}})
    await check("deletecollection", u.request("DELETE", base, query={"labelSelector": f"owner={me}"}))
    assert set(allowed) == set(EVERY_ACTION)
    return allowed


@pytest.mark.parametrize("role", list(ROWS))
async def test_each_chart_role_can_do_exactly_its_row(
    kube: KubeClient,
    control_plane: ControlPlane | None,
    kubeconfig: str,
    release: Release,
    tmp_path: Path,
    role: str,
) -> None:
    ns = release.namespace
    user = await make_user(kube, control_plane, kubeconfig, ns, f"u-{role}", f"{release.fullname}-{role}", tmp_path)
    try:
        allowed = await try_everything(kube, user, ns)
    finally:
        await user.client.close()
    assert {a for a, ok in allowed.items() if ok} == ROWS[role], allowed
    # a status sent through the main resource by an editor is dropped by the server (status subresource)
    if role != "view":
        status = (await kube.get(jt_path(ns, f"u-{role}-created"))).get("status")
        assert not status, status


async def test_jobtrigger_run_with_edit_runs_a_job_the_user_could_not_create(
    kube: KubeClient,
    control_plane: ControlPlane | None,
    kubeconfig: str,
    release: Release,
    tmp_path: Path,
) -> None:
    """Privilege equivalence: an editor may not create Jobs, but the Job of its JobTrigger is created for it."""
    ns = release.namespace
    user = await make_user(kube, control_plane, kubeconfig, ns, "editor", f"{release.fullname}-edit", tmp_path)
    runner = Runner(kubeconfig, ns)
    await runner.start()
    try:
        await user.client.create(jt_path(ns), jt_body(ns, "errand"))
        await wait_ready(kube, ns, "errand")
        job = {"metadata": {"name": "direct"}, "spec": jt_body(ns, "x")["spec"]["jobTemplate"]["spec"]}
        assert await status_of(user.client.create(f"/apis/batch/v1/namespaces/{ns}/jobs", job)) == 403
        rc, out = await jobtrigger_run(user, ns, "errand", "tok-1")
        assert rc == 0 and "tok-1" in out, out
        [created] = await wait_jobs(kube, ns, "errand", 1)
        assert created["metadata"]["ownerReferences"][0]["name"] == "errand"
    finally:
        await runner.stop()
        await user.client.close()


async def test_builtin_edit_and_view_get_jobtrigger_rights_by_aggregation(
    kube: KubeClient,
    control_plane: ControlPlane | None,
    kubeconfig: str,
    release: Release,
    tmp_path: Path,
    helm: Path,
) -> None:
    ns = release.namespace
    for builtin, suffix in (("view", "view"), ("edit", "edit"), ("admin", "admin")):
        role = await kube.get(f"{RBAC}/clusterroles/{release.fullname}-{suffix}")
        assert role["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{builtin}"] == "true"

    async def aggregated(builtin: str, verb: str) -> bool:
        rules = (await kube.get(f"{RBAC}/clusterroles/{builtin}")).get("rules") or []
        return any(
            "jobtrigger.dev" in r.get("apiGroups", [])
            and "jobtriggers" in r.get("resources", [])
            and verb in r["verbs"]
            for r in rules
        )

    # kube-controller-manager's clusterrole-aggregation controller copies the rules into the built-in roles
    await wait_for(lambda: aggregated("edit", "create"), "jobtriggers create aggregated into edit", timeout=30)
    await wait_for(lambda: aggregated("admin", "deletecollection"), "deletecollection aggregated into admin", 30)
    await wait_for(lambda: aggregated("view", "list"), "jobtriggers list aggregated into view", timeout=30)
    assert not await aggregated("view", "create")

    editor = await make_user(kube, control_plane, kubeconfig, ns, "ns-editor", "edit", tmp_path)
    viewer = await make_user(kube, control_plane, kubeconfig, ns, "ns-viewer", "view", tmp_path)
    try:
        await editor.client.create(jt_path(ns), jt_body(ns, "by-editor"))
        rc, out = await jobtrigger_run(editor, ns, "by-editor", "tok-e")
        assert rc == 0, out
        jt = await viewer.client.get(jt_path(ns, "by-editor"))
        assert jt["metadata"]["annotations"][ANNOTATION_RUN_REQUESTED] == "tok-e"
        assert await status_of(viewer.client.get(jt_path(ns, "by-editor") + "/status")) == 200
        assert await status_of(viewer.client.create(jt_path(ns), jt_body(ns, "by-viewer"))) == 403
        rc, out = await jobtrigger_run(viewer, ns, "by-editor", "tok-v")
        assert rc == 1 and "forbidden" in out, out
        # the built-in edit still cannot write the status
        patch = editor.client.merge_patch(jt_path(ns, "by-editor") + "/status", {"status": {"observedGeneration": 3}})
        assert await status_of(patch) == 403
    finally:
        await editor.client.close()
        await viewer.client.close()


async def test_no_aggregation_leaves_the_builtin_roles_alone(
    kube: KubeClient, helm: Path, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    """userRoles.aggregate=false: the roles exist for your own bindings, without aggregate-to-* labels."""
    name = f"jt-{secrets.token_hex(3)}"
    await helm_cmd(
        helm, kubeconfig, namespace, tmp_path, "install", name, str(CHART), "--skip-crds",
        "--set", f"watchNamespaces={{{namespace}}}", "--set", "userRoles.aggregate=false",
    )  # fmt: skip
    try:
        for suffix in ("view", "edit", "admin"):
            role = await kube.get(f"{RBAC}/clusterroles/{name}-jobtrigger-{suffix}")
            assert not [k for k in role["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/aggregate")]
    finally:
        await helm_cmd(helm, kubeconfig, namespace, tmp_path, "uninstall", name)
    for suffix in ("view", "edit", "admin"):  # uninstall removes them
        assert await status_of(kube.get(f"{RBAC}/clusterroles/{name}-jobtrigger-{suffix}")) == 404
