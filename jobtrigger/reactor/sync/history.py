"""After the triggers: the JobTrigger's Jobs, their output hand-off (exactly once per Job, marked on the Job) and
pruning by the history limits (never before the output is written)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING

from jobtrigger import metrics
from jobtrigger.api.models import API_VERSION, JobTrigger, OutputSpec
from jobtrigger.jobs import output
from jobtrigger.jobs.builder import ANNOTATION_OUTPUT
from jobtrigger.kube.client import JSON, ApiError
from jobtrigger.reactor.jobcache import DEFAULT_HISTORY, JOBS_PATH, JobSummary

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync

log = logging.getLogger(__name__)

#: a versioned output target whose planned <name>-vN another writer created meanwhile is re-planned this often
VERSION_REPLANS = 3


async def run_jobs(s: Sync, jt: JobTrigger) -> None:
    jobs = s.ctl.jobs_of(s.key)
    last = s.status.get("lastJobName")
    if last in jobs:
        s.status["lastJobStatus"] = jobs[last].state
    if jt.spec.output is not None:
        for name, summary in sorted(jobs.items(), key=lambda kv: (kv[1].created, kv[0])):
            if summary.state != "Active" and not summary.output:
                await persist_output(s, jt, name, summary)
        # re-read (the output marks are in the cache now); a Job that finished while we wrote the others has
        # no mark yet and is kept out of pruning below, so even successfulJobsHistoryLimit 0 never deletes a
        # Job before its output was persisted (its watch event brings it back to the next sync)
        jobs = s.ctl.jobs_of(s.key)
    prunable = {n: j for n, j in jobs.items() if jt.spec.output is None or j.output}
    active = sorted((j.created, n, j.uid) for n, j in jobs.items() if j.state == "Active")
    # Jobs just created and not yet seen by the Job watch are active too: listing them now saves the status
    # write the watch event would otherwise cause
    active += [("~", n, u) for n, u in sorted(s.ctl.created_pending(s.key).items()) if n not in jobs]
    s.status["active"] = [{"name": n, "uid": u} for _, n, u in active] or None
    spec = jt.spec
    limits = {
        "Succeeded": spec.successful_jobs_history_limit
        if spec.successful_jobs_history_limit is not None
        else (spec.history or DEFAULT_HISTORY),
        "Failed": spec.failed_jobs_history_limit
        if spec.failed_jobs_history_limit is not None
        else (spec.history or DEFAULT_HISTORY),
    }
    doomed: list[str] = []
    for state, limit in limits.items():
        finished = sorted((j.created, n) for n, j in prunable.items() if j.state == state)
        doomed += [name for _, name in finished[: max(0, len(finished) - limit)]]
    if doomed and s.ctl.write_behind.behind(s.key):
        # the status is behind: a restart would read the deferred runs back from the newest Jobs' baseline
        # annotations, so no Job goes before the status has them. This sync writes it; the next one prunes
        s.deferrable = False
        s.requeue = True
        return
    if doomed:
        s.deferrable = False  # as before write-behind: the deletes and the status write in one sync
    for name in doomed:
        try:
            await s.ctl.kube.delete(f"{JOBS_PATH}/namespaces/{s.ns}/jobs/{name}")
            metrics.JOBS_DELETED.inc()
            log.info("job pruned", extra={"jobtrigger": f"{s.ns}/{s.name}", "job": name})
        except ApiError as e:
            if e.status != 404:
                raise


async def persist_output(s: Sync, jt: JobTrigger, job: str, summary: JobSummary) -> None:
    """Write a finished Job's output (termination messages, files or logs) to Secrets/ConfigMaps, then mark
    the Job (annotation ``jobtrigger.dev/output``) so it is done exactly once."""
    out = jt.spec.output
    assert out is not None
    kube = s.ctl.kube
    succeeded = summary.state == "Succeeded"
    result = "skipped"
    problems: list[str] = []
    if succeeded or out.write_on_failure:
        try:
            pods = (await kube.get(f"/api/v1/namespaces/{s.ns}/pods", labelSelector=f"job-name={job}")).get(
                "items"
            ) or []
        except ApiError as e:
            if e.status != 403:
                raise
            pods = []
            problems.append(f"cannot list the Job's pods: {e.message}")
        logs = {}
        for pod, container in output.log_requests(out, pods):
            try:
                logs[(pod, container)] = await s.ctl.read_log(s.ns, pod, container, out.max_bytes + 1)
            except ApiError as e:
                problems.append(f"logs of {pod}/{container}: {e.message}")
        collected = output.collect(out, pods, logs)
        problems += collected.errors
        resource = "secrets" if out.kind == "Secret" else "configmaps"
        base = f"/api/v1/namespaces/{s.ns}/{resource}"
        owner = {
            "apiVersion": API_VERSION,
            "kind": "JobTrigger",
            "name": s.name,
            "uid": s.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        written = 0
        for target, data in sorted(collected.targets.items()):
            for attempt in range(VERSION_REPLANS + 1):
                try:
                    written += await write_target(s, out, base, target, data, owner, job, succeeded, problems)
                    break
                except ApiError as e:
                    if out.versioned and e.k8s_reason == "AlreadyExists" and attempt < VERSION_REPLANS:
                        continue  # another writer took the version we planned: list again, take the next one
                    transient = e.status in (0, 429) or e.status >= 500
                    if transient or (e.status == 409 and e.k8s_reason != "AlreadyExists"):
                        raise  # transient or an update race: retry the sync
                    # e.g. 403 (the chart's output.enabled is false) or 422: report it, do not retry forever
                    problems.append(f"{target}: {e.status} {e.message}")
        result = "failed" if problems and not written else "written" if written else "skipped"
        if problems:
            await s.ctl.events.emit(s.obj, "Warning", "OutputFailed", f"Job {job}: {'; '.join(problems)}")
            s.record({"lastOutputError": f"Job {job}: {'; '.join(problems)}"[:1024]})
        else:
            s.record({"lastOutputError": None})
            if written:
                await s.ctl.events.emit(s.obj, "Normal", "OutputWritten", f"Job {job}: output written")
    try:
        await kube.merge_patch(
            f"{JOBS_PATH}/namespaces/{s.ns}/jobs/{job}",
            {"metadata": {"annotations": {ANNOTATION_OUTPUT: result}}},
        )
    except ApiError as e:
        if e.status != 403:
            raise
        # not allowed to mark the Job (the chart's output.enabled is false): remember it in memory only
        s.record({"lastOutputError": f"Job {job}: cannot record the output state: {e.message}"[:1024]})
    s.ctl.jobs.objects[(s.ns, job)] = dataclasses.replace(summary, output=result)


async def write_target(
    s: Sync,
    out: OutputSpec,
    base: str,
    target: str,
    data: dict[str, str],
    owner: JSON,
    job: str,
    succeeded: bool,
    problems: list[str],
) -> int:
    """Plan and apply the writes of one output target; returns how many objects were written."""
    kube = s.ctl.kube
    existing = (await kube.get(base, labelSelector=output.label_selector(target))).get("items") or []
    actions = output.plan(
        out,
        target=target,
        data=data,
        existing=existing,
        owner_ref=owner,
        job_name=job,
        trigger_name=s.name,
        succeeded=succeeded,
    )
    written = 0
    for a in actions:
        if a.verb == "create" and a.body is not None:
            await kube.create(base, a.body)
            written += 1
        elif a.verb == "replace" and a.body is not None:
            await kube.request("PUT", f"{base}/{a.name}", body=a.body)
            written += 1
        elif a.verb == "delete":
            with contextlib.suppress(ApiError):
                await kube.delete(f"{base}/{a.name}")
        elif a.error:
            problems.append(f"{a.name}: {a.reason}")
    return written
