"""Checks the CRD schema cannot express (without CEL, which Kubernetes 1.20 silently ignores). No I/O.

Each error names the field the way ``kubectl explain`` does (``spec.triggers.resources.watch[1].fields[0]``), so
the condition message and the Warning Event point the user at the line to fix.

Parsing and validation are *total*: whatever JSON the API server stores (the Job template is
``x-kubernetes-preserve-unknown-fields``, and an object may predate a stricter schema) ends in either a valid model
or a list of :class:`SpecError`, never an exception. Before anything reads the free-form Job template, its shape is
checked as far as the controller relies on it (:func:`job_template_errors`), so building the Job
(:func:`jobtrigger.jobs.builder.build_job`) cannot fail on a spec that passed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from jobtrigger.api.models import JobTrigger, JobTriggerSpec, LabelSelector
from jobtrigger.triggers import schedule
from jobtrigger.triggers.fields import InvalidPath, compile_path

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_DURATION = timedelta(days=366)  # a longer cooldown is a typo, and datetime arithmetic would overflow
# label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue)
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


@dataclass(frozen=True)
class SpecError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def parse_duration(text: str) -> timedelta:
    """Go-style duration (``90s``, ``5m``, ``1h30m``, ``250ms``); raises ValueError."""
    text = text.strip()
    pos, seconds = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m)")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} is longer than the maximum of {MAX_DURATION.days * 24}h")
    return timedelta(seconds=seconds)


def parse_jobtrigger(obj: Any) -> tuple[JobTrigger | None, list[SpecError]]:
    """Parse with the models, then run :func:`validate_spec`; errors instead of exceptions."""
    try:
        jt = JobTrigger.model_validate(obj)
    except ValidationError as e:
        return None, [SpecError(_loc(err["loc"]), err["msg"]) for err in e.errors()]
    return jt, validate_spec(jt.spec)


def _describe(value: Any) -> str:
    """What was found instead, short enough for a condition message: ``a string ('aaa…')``, ``a list (1 item)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, list | dict):
        kind, noun = ("a list", "item") if isinstance(value, list) else ("an object", "key")
        return f"{kind} ({len(value)} {noun}{'' if len(value) == 1 else 's'})"
    if isinstance(value, str):
        return f"a string ({value if len(value) <= 40 else value[:39] + '…'!r})"
    try:
        text = repr(value)
    except ValueError:  # an integer beyond Python's int-to-str digit limit
        text = "…"
    return f"{'a number' if isinstance(value, int | float) else 'a value'} ({text[:40]})"


def _as_object(value: Any, where: str, errors: list[SpecError]) -> dict[str, Any] | None:
    """``value`` if it is an object; null/absent is an empty object; anything else is an error (None)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    errors.append(SpecError(where, f"must be an object, not {_describe(value)}"))
    return None


def _objects(value: Any, where: str, errors: list[SpecError]) -> list[tuple[str, dict[str, Any]]]:
    """The items of a list of objects (null/absent: none), each with its field path; other shapes are errors."""
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(SpecError(where, f"must be a list of objects, not {_describe(value)}"))
        return []
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append((f"{where}[{i}]", item))
        else:
            errors.append(SpecError(f"{where}[{i}]", f"must be an object, not {_describe(item)}"))
    return out


def job_template_errors(job_spec: dict[str, Any]) -> list[SpecError]:
    """The shape of ``spec.jobTemplate.spec`` as far as the controller reads or changes it: the pod template and its
    metadata/labels, the pod spec, containers (at least one, each named) and init containers, their ``env``
    (``name``, ``valueFrom``), ``envFrom`` and ``volumeMounts``, and ``volumes`` (``projected.sources``). Everything
    else is the API server's business (dry run of the Job)."""
    errors: list[SpecError] = []
    where = "spec.jobTemplate.spec.template"
    template = _as_object(job_spec.get("template"), where, errors)
    if template is None:
        return errors
    meta = _as_object(template.get("metadata"), f"{where}.metadata", errors)
    if meta is not None:
        _as_object(meta.get("labels"), f"{where}.metadata.labels", errors)
    pod = _as_object(template.get("spec"), f"{where}.spec", errors)
    if pod is None:
        return errors
    where = f"{where}.spec"
    containers = pod.get("containers")
    if containers is None or containers == []:
        errors.append(SpecError(f"{where}.containers", "at least one container"))
    regular = _objects(containers, f"{where}.containers", errors)
    for path, container in regular:
        name = container.get("name")
        if not isinstance(name, str) or not name:
            errors.append(SpecError(f"{path}.name", f"a container needs a name, not {_describe(name)}"))
    for path, container in [*_objects(pod.get("initContainers"), f"{where}.initContainers", errors), *regular]:
        for env_path, env in _objects(container.get("env"), f"{path}.env", errors):
            if not isinstance(env.get("name"), str):
                errors.append(SpecError(f"{env_path}.name", f"must be a string, not {_describe(env.get('name'))}"))
            _as_object(env.get("valueFrom"), f"{env_path}.valueFrom", errors)
        _objects(container.get("envFrom"), f"{path}.envFrom", errors)
        _objects(container.get("volumeMounts"), f"{path}.volumeMounts", errors)
    for path, volume in _objects(pod.get("volumes"), f"{where}.volumes", errors):
        projected = _as_object(volume.get("projected"), f"{path}.projected", errors)
        if projected is not None:
            _objects(projected.get("sources"), f"{path}.projected.sources", errors)
    return errors


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(object)"


def _label_errors(key: str, values: list[str], where: str) -> list[SpecError]:
    errors = []
    if len(key) > 316 or not _LABEL_KEY.match(key):
        errors.append(SpecError(where, f"invalid label key {key!r}"))
    for v in values:
        if not _LABEL_VALUE.match(v):
            errors.append(SpecError(where, f"invalid label value {v!r} (at most 63 of [A-Za-z0-9-_.])"))
    return errors


def _selector_errors(sel: LabelSelector, where: str) -> list[SpecError]:
    errors = []
    for k, v in (sel.match_labels or {}).items():
        errors += _label_errors(k, [v], f"{where}.matchLabels")
    for i, req in enumerate(sel.match_expressions or []):
        f = f"{where}.matchExpressions[{i}]"
        errors += _label_errors(req.key, list(req.values or []), f)
        if req.operator in ("In", "NotIn") and not req.values:
            errors.append(SpecError(f"{f}.values", f"operator {req.operator} needs at least one value"))
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            errors.append(SpecError(f"{f}.values", f"operator {req.operator} takes no values"))
    if not sel.match_labels and not sel.match_expressions:
        errors.append(SpecError(where, "an empty selector would match every object; name the labels to match"))
    return errors


def validate_spec(spec: JobTriggerSpec) -> list[SpecError]:
    errors: list[SpecError] = []
    t = spec.triggers
    if not (t.resources or t.pods or t.schedule or t.manual):
        errors.append(SpecError("spec.triggers", "set at least one of resources, pods, schedule, manual"))
    if t.resources:
        try:
            parse_duration(t.resources.cooldown)
        except ValueError as e:
            errors.append(SpecError("spec.triggers.resources.cooldown", str(e)))
        for i, w in enumerate(t.resources.watch):
            where = f"spec.triggers.resources.watch[{i}]"
            if (w.name is None) == (w.selector is None):
                errors.append(SpecError(where, "set exactly one of name and selector"))
            if w.selector is not None:
                errors += _selector_errors(w.selector, f"{where}.selector")
            for j, path in enumerate(w.fields or []):
                if path.strip() == "*":
                    continue
                try:
                    compile_path(path)
                except InvalidPath as e:
                    errors.append(SpecError(f"{where}.fields[{j}]", str(e)))
                except RecursionError:  # the JMESPath parser recurses per nesting level
                    errors.append(SpecError(f"{where}.fields[{j}]", "JMESPath expression nested too deeply"))
            if w.mount is not None:
                if (w.api_version, w.kind) not in (("v1", "Secret"), ("v1", "ConfigMap")):
                    errors.append(SpecError(f"{where}.mount", "only a v1 Secret or ConfigMap can be mounted"))
                elif w.name is None:
                    errors.append(SpecError(f"{where}.mount", "mount needs a watched object by name"))
    if t.pods:
        errors += _selector_errors(t.pods.selector, "spec.triggers.pods.selector")
    if t.schedule:
        # expression and zone checked separately, so both errors are reported at once
        for field, cron, zone in (("cron", t.schedule.cron, None), ("timeZone", "@daily", t.schedule.time_zone)):
            try:
                schedule.parse(cron, zone)
            except schedule.InvalidSchedule as e:
                errors.append(SpecError(f"spec.triggers.schedule.{field}", str(e).split(": ", 1)[1]))
    errors += job_template_errors(spec.job_template.spec)
    return errors
