"""Validation beyond the schema, in the order a sync needs it: discovery of watched kinds and namespace rules,
the ConfigMaps/Secrets the template references, the server-side dry run of the Job template (once per
generation), and what an invalid JobTrigger reports (``Ready=False`` naming the field, an Event)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jobtrigger import metrics
from jobtrigger.api.models import JobTrigger, LabelSelector
from jobtrigger.api.validation import SpecError
from jobtrigger.jobs import output
from jobtrigger.jobs.builder import Occurrence, build_job, config_references
from jobtrigger.kube.client import ApiError
from jobtrigger.kube.discovery import UnknownKind
from jobtrigger.reactor.jobcache import JOBS_PATH
from jobtrigger.reactor.sync import conditions
from jobtrigger.reactor.watches import Interest, ScopeKey
from jobtrigger.triggers.fields import normalize_paths

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync

log = logging.getLogger(__name__)

UNKNOWN_KIND_RETRY = 30.0  # seconds: a CRD may be installed later; discovery is re-fetched at most every few seconds


async def interests(s: Sync, jt: JobTrigger) -> tuple[list[list[Interest]], list[SpecError], str]:
    """Resolve each watched kind via discovery and check namespaces (K8)."""
    out: list[list[Interest]] = []
    errors: list[SpecError] = []
    reason = "InvalidSpec"
    rt = jt.spec.triggers.resources
    for i, w in enumerate(rt.watch if rt else []):
        where = f"spec.triggers.resources.watch[{i}]"
        try:
            gvr = await s.ctl.discovery.resolve(w.api_version, w.kind)
        except UnknownKind as e:
            errors.append(SpecError(where, str(e)))
            reason = "UnknownKind"
            out.append([])
            continue
        if gvr.namespaced:
            namespace = w.namespace or s.ns
            if namespace != s.ns and not s.ctl.settings.allow_cross_namespace:
                errors.append(
                    SpecError(
                        f"{where}.namespace",
                        f"namespace {namespace!r} is not the JobTrigger's namespace {s.ns!r}; the "
                        "controller does not allow cross-namespace references (--allow-cross-namespace)",
                    )
                )
                reason = "Forbidden"
        else:
            if w.namespace:
                errors.append(SpecError(f"{where}.namespace", f"{w.kind} is cluster-scoped; namespace must be empty"))
            namespace = None
        if w.mount is not None and namespace != s.ns:
            errors.append(
                SpecError(f"{where}.mount", "only an object in the JobTrigger's own namespace can be mounted")
            )
        scope = ScopeKey(gvr, namespace)
        out.append([Interest(scope, w.name, w.selector, normalize_paths(w.fields))])
    pt = jt.spec.triggers.pods
    if pt is not None and pt.namespace and pt.namespace != s.ns and not s.ctl.settings.allow_cross_namespace:
        errors.append(
            SpecError(
                "spec.triggers.pods.namespace",
                f"namespace {pt.namespace!r} is not the JobTrigger's namespace {s.ns!r}; the controller does "
                "not allow cross-namespace references (--allow-cross-namespace)",
            )
        )
        reason = "Forbidden"
    return out, errors, reason


async def config_interests(s: Sync, jt: JobTrigger) -> list[list[Interest]]:
    """One interest per ConfigMap/Secret the Job template references (their data and binaryData)."""
    if not jt.spec.rerun_on_config_change:
        return []
    out = []
    paths = normalize_paths(["data", "binaryData"])
    for kind, name in config_references(jt.spec.job_template.spec):
        gvr = await s.ctl.discovery.resolve("v1", kind)
        scope = ScopeKey(gvr, s.ns)
        # the object itself, and the versions of a versioned output of that name (a new version = a change)
        family = LabelSelector(match_labels={output.LABEL_OUTPUT_OF: output.label_value(name)})
        out.append([Interest(scope, name, None, paths), Interest(scope, None, family, paths)])
    return out


async def job_template(s: Sync, jt: JobTrigger) -> list[SpecError]:
    """Server-side dry run of a Job built from the template, once per generation."""
    cached = s.ctl._validated.get(s.key)
    if cached is not None and cached[:2] == (s.uid, s.generation):
        return cached[2]
    job = build_job(
        trigger_name=s.name,
        namespace=s.ns,
        trigger_uid=s.uid,
        spec=jt.spec,
        occurrence=Occurrence("resources", "dry-run", "validation"),
    )
    errors: list[SpecError] = []
    try:
        await s.ctl.kube.create(f"{JOBS_PATH}/namespaces/{s.ns}/jobs", job, dryRun="All")
    except ApiError as e:
        if e.status in (400, 422):
            details = (e.body.get("details") or {}).get("causes") or []
            msgs = [f"{c.get('field', '')}: {c.get('message', '')}" for c in details] or [e.message]
            errors = [SpecError("spec.jobTemplate", m.replace("spec.", "spec.jobTemplate.spec.", 1)) for m in msgs]
        elif e.status != 409:
            raise
    s.ctl._validated[s.key] = (s.uid, s.generation, errors)
    return errors


async def invalid(s: Sync, reason: str, errors: list[SpecError]) -> None:
    s.ctl.resource_watches.remove(s.key)
    s.ctl.pod_watches.remove(s.key)
    message = "; ".join(str(e) for e in errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
    changed = conditions.condition(s, "False", reason, message)
    s.status["observedGeneration"] = s.generation
    if changed:
        metrics.INVALID.labels(reason).inc()
        await s.ctl.events.emit(s.obj, "Warning", reason, message)
        log.warning("invalid JobTrigger", extra={"jobtrigger": f"{s.ns}/{s.name}", "error": message})
    await conditions.write_status(s)
    if reason == "UnknownKind":
        # the CRD may be installed later: look again (discovery is re-fetched at most every few seconds)
        s.ctl.queue.add_after(s.key, UNKNOWN_KIND_RETRY)
