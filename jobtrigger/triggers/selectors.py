"""Label selectors: local matching and the server-side query string (same semantics as apimachinery)."""

from __future__ import annotations

from collections.abc import Mapping

from jobtrigger.api.models import LabelSelector


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    for k, v in (selector.match_labels or {}).items():
        if labels.get(k) != v:
            return False
    for req in selector.match_expressions or []:
        values = set(req.values or [])
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def to_query(selector: LabelSelector) -> str:
    """``app=web,tier in (a,b),!legacy`` — the ``labelSelector`` query parameter."""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for req in selector.match_expressions or []:
        vals = ",".join(sorted(req.values or []))
        if req.operator == "In":
            parts.append(f"{req.key} in ({vals})")
        elif req.operator == "NotIn":
            parts.append(f"{req.key} notin ({vals})")
        elif req.operator == "Exists":
            parts.append(req.key)
        else:
            parts.append(f"!{req.key}")
    return ",".join(parts)
