"""The controller's own credentials: never logged, never handed to the Jobs it creates.

The real ``jobtrigger controller`` process runs with nothing but a ServiceAccount token in its kubeconfig (the
legacy token Secret before 1.24, else the TokenRequest API) and the namespaced rules of a least-privilege Role, at
``--log-level debug`` (every library's debug output included). It serves a JobTrigger that works (a ConfigMap
change -> a Job) and one whose watch is refused (403: the error path logs the API server's answer). Afterwards
neither the log, nor the Job, nor the JobTriggers' status or Events contain the token; the Job's pod template gets
no ServiceAccount, token mount or env it did not ask for.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from jobtrigger.envtest import ControlPlane
from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    CONTROLLER_RULES,
    condition,
    create_cm,
    create_jt,
    free_port,
    grant_role,
    patch_cm,
    wait_for,
    wait_jobs,
    wait_ready,
)
from tests.integration.test_helm_install import _sa_kubeconfig, _sa_token


async def test_the_controllers_token_is_neither_logged_nor_given_to_jobs(
    kube: KubeClient, kubeconfig: str, control_plane: ControlPlane | None, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    await kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "jobtrigger"}})
    await grant_role(kube, ns, f"system:serviceaccount:{ns}:jobtrigger", CONTROLLER_RULES)  # no Secrets
    token, how = await _sa_token(kube, control_plane, ns, "jobtrigger")
    assert len(token) > 20, how
    sa_kubeconfig = _sa_kubeconfig(kubeconfig, token, ns, tmp_path / "sa-kubeconfig")
    port = free_port()
    log_path = tmp_path / "controller.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobtrigger.cli", "controller", "--kubeconfig", str(sa_kubeconfig),
            "--namespace", ns, "--http-addr", f"127.0.0.1:{port}", "--log-level", "debug", "--log-format", "json",
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                assert proc.returncode is None, log_path.read_text(errors="replace")
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, "/readyz 200", timeout=30)

        await create_cm(kube, ns, "cfg", {"a": "1"})
        watch = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]
        await create_jt(kube, ns, "ok", {"resources": {"cooldown": "0s", "watch": watch}})
        await create_jt(
            kube, ns, "nope", {"resources": {"watch": [{"apiVersion": "v1", "kind": "Secret", "name": "s"}]}}
        )
        await wait_ready(kube, ns, "ok")
        refused = condition(await wait_ready(kube, ns, "nope", "False"))
        assert refused is not None and "403" in refused["message"]  # the refused path ran
        await patch_cm(kube, ns, "cfg", {"data": {"a": "2"}})
        [job] = await wait_jobs(kube, ns, "ok", 1)

        # --- never in Jobs: the pod template has what the JobTrigger's template had, and no credential
        pod = job["spec"]["template"]["spec"]
        for field in ("serviceAccountName", "serviceAccount", "automountServiceAccountToken", "volumes"):
            assert field not in pod, f"the controller added {field}: {pod.get(field)!r}"
        [container] = pod["containers"]
        assert "volumeMounts" not in container and "envFrom" not in container
        assert all(e["name"].startswith("JOBTRIGGER_") for e in container.get("env") or [])
        assert token not in json.dumps(job)
        for name in ("ok", "nope"):
            assert token not in json.dumps(
                await kube.get(f"/apis/jobtrigger.dev/v1alpha1/namespaces/{ns}/jobtriggers/{name}")
            )
        events = await kube.get(f"/api/v1/namespaces/{ns}/events")
        assert token not in json.dumps(events)

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    # --- never logged: not the token, not a part of it, no Authorization header
    log = log_path.read_text(errors="replace")
    assert '"levelname": "DEBUG"' in log or '"level": "debug"' in log.lower(), log[-2000:]  # debug output is there
    assert "403" in log and "forbidden" in log, "the refused watch was logged"
    assert token not in log
    for i in range(0, len(token) - 16, 8):
        assert token[i : i + 16] not in log, "a part of the token is in the log"
    assert "Bearer" not in log and "authorization" not in log.lower()
