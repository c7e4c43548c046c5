"""Persisted Job output (rows E5, Q2, Q4, Q5): termination messages, JSON files, logs -> Secrets/ConfigMaps.

The Job's pods run on the KWOK node (`finish_job_pods`): KWOK terminates their containers with the termination
messages a test asks for, the real Job controller completes the Job, and `pods/log` goes through kube-apiserver to
KWOK's kubelet endpoint, which serves a fixed log line for every container. Without KWOK (an existing cluster)
the tests write the termination messages into pod status and replace `Controller.read_log` (the documented seam).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from jobtrigger.envtest import KWOK_LOG_LINE
from jobtrigger.kube.client import ApiError, KubeClient
from tests.integration.conftest import Runner, create_jt, finish_job_pods, get_jt, wait_for, wait_jobs, wait_ready
from tests.integration.events import wait_event
from tests.integration.test_concurrency import request_run


async def run_and_finish(
    kube: KubeClient, ns: str, owner: str, token: str, messages: dict[str, str], phase: str = "Succeeded"
) -> str:
    before = {j["metadata"]["name"] for j in (await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs"))["items"]}
    await request_run(kube, ns, owner, token)

    async def new_job() -> str | None:
        jobs = (await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs"))["items"]
        fresh = [j["metadata"]["name"] for j in jobs if j["metadata"]["name"] not in before]
        return fresh[0] if fresh else None

    job = await wait_for(new_job, f"Job for {token}")
    await finish_job_pods(kube, ns, job, phase, messages)

    async def handled() -> str | None:
        try:
            got = await kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/{job}")
        except ApiError as e:
            return "pruned" if e.status == 404 else None
        return (got["metadata"].get("annotations") or {}).get("jobtrigger.dev/output")

    await wait_for(handled, f"output of {job} handled", timeout=30)
    return job


def template(*containers: str) -> dict[str, Any]:
    pod = {"containers": [{"name": c, "image": "busybox"} for c in containers]}
    return {"spec": {"backoffLimit": 0, "template": {"spec": pod}}}


async def test_termination_message_to_configmap(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(
        kube,
        namespace,
        "t",
        {"manual": {}},
        jobTemplate=template("main", "side"),
        output={"source": "TerminationMessage", "kind": "ConfigMap", "name": "result", "labels": {"team": "a"}},
        successfulJobsHistoryLimit=0,  # the Job is deleted once it succeeded - after its output was written
    )
    await wait_ready(kube, namespace, "t")
    job = await run_and_finish(kube, namespace, "t", "one", {"main": "hello", "side": "world"})
    cm = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/result")
    assert cm["data"] == {"main": "hello", "side": "world"}
    assert cm["metadata"]["labels"]["team"] == "a"
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "JobTrigger"
    assert job in cm["metadata"]["annotations"]["jobtrigger.dev/output-source"]

    async def pruned() -> bool:
        try:
            await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}")
        except ApiError as e:
            return e.status == 404
        return False

    await wait_for(pruned, "Job deleted after its output was persisted (history 0)")


async def test_files_to_versioned_secrets(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(
        kube,
        namespace,
        "t",
        {"manual": {}},
        jobTemplate=template("main"),
        output={
            "source": "Files",
            "kind": "Secret",
            "name": "x",
            "versioned": True,
            "keepVersions": 2,
            "outputMap": {"main": {"creds.json": "db-creds"}},
        },
    )
    await wait_ready(kube, namespace, "t")
    job = (await kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs"))["items"]
    assert job == []

    def files(password: str) -> dict[str, str]:
        return {"main": json.dumps({"creds.json": {"user": "app", "password": password}})}

    await run_and_finish(kube, namespace, "t", "r1", files("p1"))
    s1 = await kube.get(f"/api/v1/namespaces/{namespace}/secrets/db-creds-v1")
    assert base64.b64decode(s1["data"]["password"]).decode() == "p1"
    assert s1["immutable"] is True
    assert s1["metadata"]["labels"]["jobtrigger.dev/output-version"] == "1"
    await run_and_finish(kube, namespace, "t", "r2", files("p1"))  # identical: not re-versioned
    await run_and_finish(kube, namespace, "t", "r3", files("p2"))
    await run_and_finish(kube, namespace, "t", "r4", files("p3"))
    names = sorted(
        s["metadata"]["name"]
        for s in (
            await kube.get(f"/api/v1/namespaces/{namespace}/secrets", labelSelector="jobtrigger.dev/output-of=db-creds")
        )["items"]
    )
    assert names == ["db-creds-v2", "db-creds-v3"]  # keepVersions 2: v1 cleaned up


async def test_failed_job_output_and_errors(kube: KubeClient, namespace: str, runner: Runner) -> None:
    await create_jt(
        kube,
        namespace,
        "t",
        {"manual": {}},
        jobTemplate=template("main"),
        output={"source": "Files", "kind": "ConfigMap", "name": "out"},
    )
    await wait_ready(kube, namespace, "t")
    await run_and_finish(kube, namespace, "t", "fail", {"main": json.dumps({"a.json": {"k": "v"}})}, "Failed")
    try:
        await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/out-main-a")
        raise AssertionError("a failed Job's output must not be written without writeOnFailure")
    except ApiError as e:
        assert e.status == 404
    await run_and_finish(kube, namespace, "t", "bad", {"main": "not json"})

    async def error() -> str | None:
        return (await get_jt(kube, namespace, "t"))["status"].get("lastOutputError")

    assert "main" in await wait_for(error, "status.lastOutputError")
    await wait_event(kube, namespace, "t", "OutputFailed")  # written in the background: wait, never assert at once


async def test_logs(kube: KubeClient, namespace: str, runner: Runner, kwok: bool) -> None:
    """source: Logs. On KWOK through the real pods/log API; otherwise through the read_log seam."""
    assert runner.controller is not None
    calls: list[tuple[str, str]] = []

    async def fake_log(ns: str, pod: str, container: str, limit: int) -> str:
        calls.append((pod, container))
        return f"log of {container}\n"

    if not kwok:
        runner.controller.read_log = fake_log
    await create_jt(
        kube,
        namespace,
        "t",
        {"manual": {}},
        jobTemplate=template("main"),
        output={"source": "Logs", "kind": "ConfigMap", "name": "logs"},
    )
    await wait_ready(kube, namespace, "t")
    await run_and_finish(kube, namespace, "t", "x", {})
    cm = await kube.get(f"/api/v1/namespaces/{namespace}/configmaps/logs")
    if kwok:
        assert cm["data"] == {"main": f"{KWOK_LOG_LINE}\n"}
    else:
        assert cm["data"] == {"main": "log of main\n"} and calls and calls[0][1] == "main"


async def test_consumers_get_the_newest_version_and_rerun_on_a_new_one(
    kube: KubeClient, namespace: str, runner: Runner
) -> None:
    """QuarksJob Q3/Q5: a Job that references the versioned output `db-creds` gets the newest `db-creds-vN`, and a
    new version re-runs it (rerunOnConfigChange)."""
    await create_jt(
        kube,
        namespace,
        "producer",
        {"manual": {}},
        jobTemplate=template("main"),
        output={
            "source": "Files",
            "kind": "Secret",
            "name": "x",
            "versioned": True,
            "outputMap": {"main": {"creds.json": "db-creds"}},
        },
    )
    await wait_ready(kube, namespace, "producer")
    await run_and_finish(kube, namespace, "producer", "r1", {"main": json.dumps({"creds.json": {"p": "1"}})})
    consumer = {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "use", "image": "busybox", "volumeMounts": [{"name": "c", "mountPath": "/c"}]}
                    ],
                    "volumes": [{"name": "c", "secret": {"secretName": "db-creds"}}],
                }
            },
        }
    }
    await create_jt(
        kube, namespace, "consumer", {"schedule": {"cron": "@once"}}, jobTemplate=consumer, rerunOnConfigChange=True
    )

    def secret_of(job: dict[str, Any]) -> str:
        return str(job["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"])

    jobs = await wait_jobs(kube, namespace, "consumer", 1)
    assert secret_of(jobs[0]) == "db-creds-v1"
    await wait_ready(kube, namespace, "consumer")
    await run_and_finish(kube, namespace, "producer", "r2", {"main": json.dumps({"creds.json": {"p": "2"}})})
    jobs = await wait_jobs(kube, namespace, "consumer", 2)
    assert secret_of(jobs[1]) == "db-creds-v2"
    assert jobs[1]["metadata"]["labels"]["jobtrigger.dev/trigger"] == "config"
    # without rerunOnConfigChange the newest version is looked up when the Job is built
    await create_jt(kube, namespace, "plain", {"schedule": {"cron": "@once"}}, jobTemplate=consumer)
    assert secret_of((await wait_jobs(kube, namespace, "plain", 1))[0]) == "db-creds-v2"
