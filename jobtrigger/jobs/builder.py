"""Turn a JobTrigger's template plus one occurrence into a ``batch/v1`` Job manifest. No I/O.

The Job name is derived from the occurrence (the JobTrigger's uid plus what happened), like the CronJob
controller derives it from the scheduled time: creating the same occurrence twice is an ``AlreadyExists`` that the
controller treats as success, which is what makes "exactly one Job per occurrence" survive restarts.

Everything the Job needs to know about why it runs is added as annotations on the Job and as ``JOBTRIGGER_*``
environment variables in every container; the pod template's own metadata passes through untouched.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from jobtrigger.api.models import API_VERSION, KIND, JobTriggerSpec
from jobtrigger.jobs.output import prepare_pod_spec

LABEL_OWNER = "jobtrigger.dev/owner"
LABEL_TRIGGER = "jobtrigger.dev/trigger"
LABEL_AFFECTED_POD = "jobtrigger.dev/affected-pod"  # pod triggers (ExtendedJob's affected-pod)
ANNOTATION_REASON = "jobtrigger.dev/reason"
ANNOTATION_OCCURRENCE = "jobtrigger.dev/occurrence"
ANNOTATION_OBJECTS = "jobtrigger.dev/objects"
ANNOTATION_RUN_REQUESTED = "jobtrigger.dev/run-requested"
ANNOTATION_OUTPUT = "jobtrigger.dev/output"  # on the Job: its output was handled (written|skipped|failed)
ANNOTATION_CREATED = "jobtrigger.dev/created"  # ms precision; orders Jobs created within one second
#: resource/config runs: the baseline the Job ran for, so that a run whose status write was deferred (write-behind)
#: or lost in a crash is read back from its Job (reactor/sync/on_resources.py)
ANNOTATION_BASELINE = "jobtrigger.dev/baseline"
ENV_PREFIX = "JOBTRIGGER_"
MAX_OBJECTS = 50  # changed objects listed in the annotation / env var
MAX_NAME = 63  # Job names become a pod label value (job-name), so 63, not 253


@dataclass(frozen=True)
class Mounted:
    """A Secret/ConfigMap mounted into every container (cert-watch)."""

    kind: str
    name: str
    volume_name: str
    mount_path: str
    read_only: bool = True


@dataclass(frozen=True)
class Occurrence:
    """One thing that happened and deserves exactly one Job."""

    trigger: str  # resources | pods | schedule | manual
    key: str  # unique per occurrence for this JobTrigger (seeds the Job name)
    reason: str  # one line for humans (Events, status, annotation)
    objects: tuple[dict[str, Any], ...] = ()  # [{apiVersion, kind, namespace, name, change, paths}]
    env: tuple[tuple[str, str], ...] = ()  # extra JOBTRIGGER_* variables
    labels: tuple[tuple[str, str], ...] = ()  # extra Job labels
    mounts: tuple[Mounted, ...] = field(default=())
    annotations: tuple[tuple[str, str], ...] = ()  # extra Job annotations (the resource baseline)


def job_name(trigger_name: str, trigger_uid: str, occurrence_key: str) -> str:
    """``<jobtrigger name>-<10 hex>``; deterministic per (JobTrigger uid, occurrence)."""
    digest = hashlib.sha256(f"{trigger_uid}/{occurrence_key}".encode()).hexdigest()[:10]
    prefix = trigger_name[: MAX_NAME - len(digest) - 1].rstrip("-.")
    return f"{prefix}-{digest}"


def build_job(
    *,
    trigger_name: str,
    namespace: str,
    trigger_uid: str,
    spec: JobTriggerSpec,
    occurrence: Occurrence,
    created: str = "",
    renames: dict[tuple[str, str], str] | None = None,
) -> dict[str, Any]:
    name = job_name(trigger_name, trigger_uid, occurrence.key)
    tmeta = spec.job_template.metadata
    labels = dict(tmeta.labels or {}) if tmeta else {}
    labels[LABEL_OWNER] = trigger_name
    labels[LABEL_TRIGGER] = occurrence.trigger
    labels.update(occurrence.labels)
    annotations = dict(tmeta.annotations or {}) if tmeta else {}
    annotations[ANNOTATION_REASON] = occurrence.reason
    annotations[ANNOTATION_OCCURRENCE] = occurrence.key
    if created:
        annotations[ANNOTATION_CREATED] = created
    for key, value in occurrence.env:  # JOBTRIGGER_SCHEDULED_TIME -> jobtrigger.dev/scheduled-time, ...
        annotations["jobtrigger.dev/" + key.removeprefix(ENV_PREFIX).lower().replace("_", "-")] = value
    if occurrence.objects:
        annotations[ANNOTATION_OBJECTS] = objects_json(occurrence.objects)
    annotations.update(occurrence.annotations)

    job_spec = copy.deepcopy(spec.job_template.spec)
    # the shape was checked by validation.job_template_errors; a null (YAML `metadata:` alone) counts as absent
    template = _child(job_spec, "template", {})
    # pods findable by owner (`kubectl logs -l jobtrigger.dev/owner=NAME`); the rest of the metadata is untouched
    _child(_child(template, "metadata", {}), "labels", {})[LABEL_OWNER] = trigger_name
    pod_spec = _child(template, "spec", {})
    pod_spec.setdefault("restartPolicy", "Never")
    if renames:
        rename_references(job_spec, renames)
    if spec.output is not None:
        prepare_pod_spec(pod_spec, spec.output)  # termination messages carry the output (no sidecar)

    env = context_env(trigger_name, namespace, occurrence)
    containers = [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]
    for container in containers:
        existing = {e.get("name") for e in container.get("env") or []}
        container["env"] = [
            *(container.get("env") or []),
            *({"name": k, "value": v} for k, v in env if k not in existing),
        ]
    for m in occurrence.mounts:
        source = {"secret": {"secretName": m.name}} if m.kind == "Secret" else {"configMap": {"name": m.name}}
        volumes = _child(pod_spec, "volumes", [])
        if not any(v.get("name") == m.volume_name for v in volumes):
            volumes.append({"name": m.volume_name, **source})
        for container in containers:
            mounts = _child(container, "volumeMounts", [])
            if not any(vm.get("name") == m.volume_name for vm in mounts):
                mounts.append({"name": m.volume_name, "mountPath": m.mount_path, "readOnly": m.read_only})

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": trigger_name,
                    "uid": trigger_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": job_spec,
    }


def _child(parent: dict[str, Any], key: str, empty: Any) -> Any:
    """``parent[key]``, set to ``empty`` when absent or null."""
    if parent.get(key) is None:
        parent[key] = empty
    return parent[key]


def objects_json(objects: tuple[dict[str, Any], ...]) -> str:
    """The changed objects as JSON, at most ``MAX_OBJECTS`` (annotations are limited to 256 KiB in total)."""
    listed: list[dict[str, Any]] = list(objects[:MAX_OBJECTS])
    if len(objects) > MAX_OBJECTS:
        listed.append({"truncated": len(objects) - MAX_OBJECTS})
    return json.dumps(listed, separators=(",", ":"))


def context_env(trigger_name: str, namespace: str, occurrence: Occurrence) -> list[tuple[str, str]]:
    """The ``JOBTRIGGER_*`` variables (documented in docs/api.md)."""
    env = [
        ("JOBTRIGGER_NAME", trigger_name),
        ("JOBTRIGGER_NAMESPACE", namespace),
        ("JOBTRIGGER_TRIGGER", occurrence.trigger),
        ("JOBTRIGGER_REASON", occurrence.reason),
        ("JOBTRIGGER_OCCURRENCE", occurrence.key),
    ]
    if occurrence.objects:
        first = occurrence.objects[0]
        env += [
            ("JOBTRIGGER_OBJECT_API_VERSION", str(first.get("apiVersion", ""))),
            ("JOBTRIGGER_OBJECT_KIND", str(first.get("kind", ""))),
            ("JOBTRIGGER_OBJECT_NAMESPACE", str(first.get("namespace") or "")),
            ("JOBTRIGGER_OBJECT_NAME", str(first.get("name", ""))),
            (
                "JOBTRIGGER_CHANGED_PATHS",
                ",".join(sorted({p for o in occurrence.objects for p in o.get("paths", [])})),
            ),
            ("JOBTRIGGER_OBJECTS", objects_json(occurrence.objects)),
        ]
    env += list(occurrence.env)
    return env


def _ref_slots(job_spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """Every place a pod template names a ConfigMap or Secret: ``(kind, dict holding the name, name key)``."""
    pod = (job_spec.get("template") or {}).get("spec") or {}
    slots: list[tuple[str, dict[str, Any], str]] = []
    for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if isinstance(vf.get("configMapKeyRef"), dict):
                slots.append(("ConfigMap", vf["configMapKeyRef"], "name"))
            if isinstance(vf.get("secretKeyRef"), dict):
                slots.append(("Secret", vf["secretKeyRef"], "name"))
        for ef in c.get("envFrom") or []:
            if isinstance(ef.get("configMapRef"), dict):
                slots.append(("ConfigMap", ef["configMapRef"], "name"))
            if isinstance(ef.get("secretRef"), dict):
                slots.append(("Secret", ef["secretRef"], "name"))
    for v in pod.get("volumes") or []:
        if isinstance(v.get("configMap"), dict):
            slots.append(("ConfigMap", v["configMap"], "name"))
        if isinstance(v.get("secret"), dict):
            slots.append(("Secret", v["secret"], "secretName"))
        for src in (v.get("projected") or {}).get("sources") or []:
            if isinstance(src.get("configMap"), dict):
                slots.append(("ConfigMap", src["configMap"], "name"))
            if isinstance(src.get("secret"), dict):
                slots.append(("Secret", src["secret"], "name"))
    return slots


def rename_references(job_spec: dict[str, Any], renames: dict[tuple[str, str], str]) -> None:
    """Point references at other objects, e.g. a versioned output ``creds`` at its newest ``creds-v7``."""
    for kind, holder, key in _ref_slots(job_spec):
        new = renames.get((kind, str(holder.get(key))))
        if new:
            holder[key] = new


def config_references(job_spec: dict[str, Any]) -> list[tuple[str, str]]:
    """The ConfigMaps and Secrets a Job template uses: ``[(kind, name)]``, sorted, from env ``valueFrom``,
    ``envFrom``, volumes and projected volume sources (``rerunOnConfigChange`` watches these)."""
    return sorted(
        {
            (kind, name)
            for kind, holder, key in _ref_slots(job_spec)
            if isinstance(name := holder.get(key), str) and name
        }
    )
