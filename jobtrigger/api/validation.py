"""Checks the CRD schema cannot express (without CEL, which Kubernetes 1.20 silently ignores). No I/O.

Each error names the field the way ``kubectl explain`` does (``spec.triggers.resources.watch[1].fields[0]``), so
the condition message and the Warning Event point the user at the line to fix.
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


def parse_jobtrigger(obj: dict[str, Any]) -> tuple[JobTrigger | None, list[SpecError]]:
    """Parse with the models, then run :func:`validate_spec`; errors instead of exceptions."""
    try:
        jt = JobTrigger.model_validate(obj)
    except ValidationError as e:
        return None, [SpecError(_loc(err["loc"]), err["msg"]) for err in e.errors()]
    return jt, validate_spec(jt.spec)


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
    template_spec = spec.job_template.spec
    pod_spec = (template_spec.get("template") or {}).get("spec") or {}
    if not pod_spec.get("containers"):
        errors.append(SpecError("spec.jobTemplate.spec.template.spec.containers", "at least one container"))
    return errors
