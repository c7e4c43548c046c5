"""The real `jobtrigger controller` process: endpoints, metrics, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import aiohttp

from benchmarks.common import controller_argv
from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import (
    create_cm,
    create_jt,
    free_port,
    patch_cm,
    wait_for,
    wait_jobs,
    wait_ready,
)


async def test_controller_process_serves_metrics_and_stops_on_sigterm(
    kube: KubeClient, kubeconfig: str, namespace: str
) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *controller_argv(kubeconfig, namespace, port),
        "--log-format",
        "json",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, "/readyz 200", timeout=30)
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200

            await create_cm(kube, namespace, "cfg", {"a": "1"})
            await create_jt(
                kube,
                namespace,
                "t",
                {"resources": {"cooldown": "0s", "watch": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}]}},
            )
            await wait_ready(kube, namespace, "t")
            await patch_cm(kube, namespace, "cfg", {"data": {"a": "2"}})
            await wait_jobs(kube, namespace, "t", 1)

            async def metrics() -> str | None:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                ok = 'jobtrigger_jobs_created_total{result="created",trigger="resources"} 1.0' in text
                return text if ok else None

            text = await wait_for(metrics, "jobs_created metric")
            assert "jobtrigger_event_to_job_seconds_count" in text
            assert 'jobtrigger_api_requests_total{code="201",resource="jobs",verb="POST"}' in text
            assert "jobtrigger_queue_depth" in text
            assert 'jobtrigger_jobtriggers{reason="Watching"} 1.0' in text

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 15)
        assert rc == 0
        assert time.monotonic() - t0 < 12
        assert proc.stderr is not None
        logs = (await proc.stderr.read()).decode()
        assert '"msg": "job created"' in logs and '"msg": "stopped"' in logs
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_run_subcommand_sets_the_request_annotation(kube: KubeClient, kubeconfig: str, namespace: str) -> None:
    await create_jt(kube, namespace, "errand", {"manual": {}})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobtrigger.cli",
        "run",
        "errand",
        "-n",
        namespace,
        "--kubeconfig",
        kubeconfig,
        "--token",
        "tok-1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"tok-1" in out
    jt = await kube.get(f"/apis/jobtrigger.dev/v1alpha1/namespaces/{namespace}/jobtriggers/errand")
    assert jt["metadata"]["annotations"]["jobtrigger.dev/run-requested"] == "tok-1"

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobtrigger.cli",
        "run",
        "missing",
        "-n",
        namespace,
        "--kubeconfig",
        kubeconfig,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 1 and b"not found" in err
