"""CEL rules (``x-kubernetes-validations``) for the CRD: the helper the models use, and the bounds the API server's
cost estimator needs. The rules themselves sit next to the fields they check, in :mod:`jobtrigger.api.models`."""

from __future__ import annotations

from pydantic.config import JsonDict

#: Longest cooldown the controller accepts (366 days, as ``validation.MAX_DURATION``), as a Go duration for CEL.
MAX_DURATION_GO = "8784h"
#: Default of ``spec.output.keepVersions`` (the CRD default; a CEL rule allows only this value without ``versioned``).
DEFAULT_KEEP_VERSIONS = 5
#: Upper bounds on lists that CEL rules run on: the API server estimates a rule's cost from the largest possible
#: number of evaluations, and rejects the CRD when nested unbounded lists make that number astronomical.
MAX_WATCH = 256
MAX_EXPRESSIONS = 64
CEL = "x-kubernetes-validations"


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` rule (CEL), checked by API servers that know CEL (1.25+; ``fieldPath`` and
    ``reason`` 1.28+); older servers drop the keyword. Every rule repeats a check of
    :mod:`jobtrigger.api.validation` (or, marked as such in docs/api.md, one that is only useful at admission)."""
    out: JsonDict = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out
