"""The run gate: one occurrence -> at most one Job, under the concurrency policy and the controller-wide cap.

The Job name is derived from the occurrence, so ``AlreadyExists`` means "done"; a cap reservation never outlives
a failed create."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from jobtrigger import metrics, tracing
from jobtrigger.api.models import JobTrigger
from jobtrigger.jobs import output
from jobtrigger.jobs.builder import Mounted, Occurrence, build_job, config_references
from jobtrigger.jobs.builder import job_name as make_job_name
from jobtrigger.kube.client import JSON, ApiError
from jobtrigger.reactor.jobcache import JOBS_PATH
from jobtrigger.timefmt import rfc3339_ms

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync

log = logging.getLogger(__name__)


async def renames(s: Sync, jt: JobTrigger) -> dict[tuple[str, str], str]:
    """Template references to a versioned output ``X`` -> its newest ``X-vN`` (QuarksJob's versioned secrets).
    From the watch cache with ``rerunOnConfigChange`` (the families are watched anyway); otherwise one
    labelled LIST per kind, only when the template references ConfigMaps/Secrets."""
    out: dict[tuple[str, str], str] = {}
    if s.config_interests:
        for name_interest, family in s.config_interests:
            objs = [
                {"metadata": {"name": key[1], "labels": labels}}
                for key, labels in s.ctl.resource_watches.labels(family).items()
            ]
            newest = output.newest_version(objs)
            if newest and name_interest.name:
                out[(name_interest.scope.gvr.kind, name_interest.name)] = newest
        return out
    refs = config_references(jt.spec.job_template.spec)
    for kind in sorted({k for k, _ in refs}):
        names = {output.label_value(n): n for k, n in refs if k == kind}
        resource = "secrets" if kind == "Secret" else "configmaps"
        selector = f"{output.LABEL_OUTPUT_OF} in ({','.join(sorted(names))})"
        try:
            got = await s.ctl.kube.get(f"/api/v1/namespaces/{s.ns}/{resource}", labelSelector=selector)
        except ApiError as e:
            if e.status == 403:
                continue  # not allowed to list them: references stay as written
            raise
        families: dict[str, list[JSON]] = defaultdict(list)
        for obj in got.get("items") or []:
            value = ((obj.get("metadata") or {}).get("labels") or {}).get(output.LABEL_OUTPUT_OF)
            if value in names:
                families[names[value]].append(obj)
        for name, objs in families.items():
            newest = output.newest_version(objs)
            if newest:
                out[(kind, name)] = newest
    return out


async def run(s: Sync, jt: JobTrigger, occurrence: Occurrence) -> bool:
    """Run an occurrence under the concurrency policy. Returns False if it must wait (``Queue``): the caller
    then keeps the occurrence unconsumed, so it runs exactly once when the active Job has finished.

    - Allow: run. Forbid: consume without running (counted, Event). Replace: delete the active Jobs, run.
    - Queue: wait while a Job is active; what arrived meanwhile coalesces into one run.
    """
    name = job_name(s, occurrence)
    active = [n for n in s.ctl.active_jobs(s.key) if n != name]
    policy = jt.spec.concurrency_policy
    if active and policy == "Forbid":
        metrics.SKIPPED.labels("forbid").inc()
        msg = f"skipped ({occurrence.reason}): Job {active[0]} is still active (concurrencyPolicy Forbid)"
        await s.ctl.events.emit(s.obj, "Normal", "RunSkipped", msg)
        s.status["lastSkipped"] = {"time": rfc3339_ms(s.now), "reason": msg}
        return True
    if active and policy == "Queue":
        metrics.SKIPPED.labels("queued").inc()
        s.pending(f"queued behind active Job {active[0]} (concurrencyPolicy Queue)")
        return False
    cap = s.ctl.settings.max_active_jobs
    reserved = False
    if cap and policy != "Replace":
        if s.ctl.total_active() >= cap:
            metrics.SKIPPED.labels("cap").inc()
            s.pending(f"waiting: {cap} Jobs active controller-wide (--max-active-jobs)")
            s.ctl.capped.add(s.key)
            return False
        # reserve the slot before any await, so parallel workers cannot all pass the check
        reserved = name not in s.ctl.created_pending(s.key) and name not in s.ctl.jobs_of(s.key)
        s.ctl.note_created(s.key, name)
    done = False
    try:
        if active and policy == "Replace":
            await replace(s, active)
        await create_job(s, jt, occurrence)
        done = True
    finally:
        if reserved and not done:
            # whatever failed between the reservation and the create (a LIST for renames, a delete, the
            # create itself): no Job of that name exists because of us, so release the slot; a phantom
            # reservation would count against the cap and block Queue/Forbid until the process restarts
            s.ctl.forget_active(s.key, name)
    return True


async def replace(s: Sync, active: list[str]) -> None:
    s.deferrable = False  # a sync that deletes Jobs writes its status at once (see history.run_jobs)
    for job in active:
        try:
            await s.ctl.kube.delete(f"{JOBS_PATH}/namespaces/{s.ns}/jobs/{job}")
        except ApiError as e:
            if e.status != 404:
                raise
        metrics.JOBS_DELETED.inc()
        s.ctl.forget_active(s.key, job)
        await s.ctl.events.emit(s.obj, "Normal", "JobReplaced", f"Deleted active Job {job} (concurrencyPolicy Replace)")


def job_name(s: Sync, occurrence: Occurrence) -> str:
    return make_job_name(s.name, s.uid, occurrence.key)


async def create_job(s: Sync, jt: JobTrigger, occurrence: Occurrence) -> None:
    trace = _trace(s, occurrence)
    if trace is not None:  # the Job's own work can join the trace (annotation and env TRACEPARENT)
        occurrence = dataclasses.replace(occurrence, env=(*occurrence.env, ("TRACEPARENT", trace.traceparent)))
    job = build_job(
        trigger_name=s.name,
        namespace=s.ns,
        trigger_uid=s.uid,
        spec=jt.spec,
        occurrence=dataclasses.replace(occurrence, mounts=s.mounts),
        created=rfc3339_ms(s.now),
        renames=await renames(s, jt) if config_references(jt.spec.job_template.spec) else None,
    )
    name = job["metadata"]["name"]
    created = True
    uid = ""
    span = trace.child("job.create", time.monotonic(), **{"k8s.job.name": name}) if trace is not None else None
    try:
        made = await s.ctl.kube.create(f"{JOBS_PATH}/namespaces/{s.ns}/jobs", job)
        uid = str((made.get("metadata") or {}).get("uid") or "")
    except ApiError as e:
        if e.status != 409:
            metrics.JOBS_CREATED.labels(occurrence.trigger, "error").inc()
            await s.ctl.events.emit(s.obj, "Warning", "JobCreateFailed", f"Job {name}: {e.message}")
            raise
        created = False  # this occurrence already has its Job (a retry after a crash or lost status write)
    finally:
        if span is not None:
            span.set_attribute("jobtrigger.job.created", created)
            span.end()
    if trace is not None:
        trace.root.set_attribute("k8s.job.name", name)
    s.ctl.note_created(s.key, name, uid)
    arrival, s.arrival = s.arrival, None
    if created:
        metrics.JOBS_CREATED.labels(occurrence.trigger, "created").inc()
        if arrival is not None:
            metrics.EVENT_TO_JOB.labels(occurrence.trigger).observe(time.monotonic() - arrival)
        extra = {"jobtrigger": f"{s.ns}/{s.name}", "job": name, "reason": occurrence.reason}
        if trace is not None:
            extra["trace_id"] = trace.trace_id
        log.info("job created", extra=extra)
        await s.ctl.events.emit(s.obj, "Normal", "JobCreated", f"Created Job {name}: {occurrence.reason}")
    else:
        metrics.JOBS_CREATED.labels(occurrence.trigger, "exists").inc()
    s.record(
        {
            "lastTriggeredTime": rfc3339_ms(s.now),
            "lastTriggerReason": occurrence.reason,
            "lastJobName": name,
            "lastJobStatus": "Active",
        }
    )


def _trace(s: Sync, occurrence: Occurrence) -> tracing.OccurrenceTrace | None:
    """Open the occurrence's trace (None while tracing is off): from the watch event, or the sync's start."""
    if not tracing.enabled():
        return None
    start = s.arrival if s.arrival is not None else s.started
    attributes = {
        "k8s.namespace.name": s.ns,
        "jobtrigger.name": s.name,
        "jobtrigger.trigger": occurrence.trigger,
        "jobtrigger.occurrence": occurrence.key,
        "jobtrigger.reason": occurrence.reason,
    }
    if occurrence.objects:
        attributes["jobtrigger.objects"] = ", ".join(
            f"{o.get('kind')}/{o.get('namespace') or ''}/{o.get('name')}" for o in occurrence.objects
        )
    trace = tracing.start_occurrence(start, attributes)
    if trace is None:
        return None
    if s.arrival is not None:
        trace.child("queue.wait", s.arrival, s.started)
    trace.child("sync", s.started, time.monotonic())
    s.traces.append(trace)
    return trace


def mounts(jt: JobTrigger) -> tuple[Mounted, ...]:
    """Watched Secrets/ConfigMaps to mount into every Job of this JobTrigger (whatever triggered it)."""
    rt = jt.spec.triggers.resources
    return tuple(
        Mounted(w.kind, w.name or "", w.mount.volume_name, w.mount.mount_path, w.mount.read_only)
        for w in (rt.watch if rt else [])
        if w.mount is not None and w.name
    )
