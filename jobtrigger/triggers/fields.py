"""Which parts of an object count as a change, and their hashes.

A watched object is reduced to one short hash per configured JMESPath expression; only these hashes are cached and
persisted (``status.resourceHashes``), never the object itself (a Secret's data never stays in memory).

``*`` (the default) means the whole object without the noise that changes on its own: ``metadata`` except labels
and annotations (resourceVersion, managedFields, generation, timestamps, uid...), ``status``, and the
``kubectl.kubernetes.io/last-applied-configuration`` annotation. JMESPath paths address the object as the API
returns it, e.g. ``data``, ``data.key``, ``spec.replicas``, ``spec.template.spec.containers[*].image``; a name with
dashes or dots needs quotes: ``data."app.conf"``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import jmespath
import jmespath.exceptions
from jmespath.parser import ParsedResult

WHOLE_OBJECT = "*"
NOISY_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


class InvalidPath(ValueError):
    pass


def normalize_paths(fields: Iterable[str] | None) -> tuple[str, ...]:
    """Sorted, de-duplicated paths; empty or ``["*"]`` means the whole object."""
    paths = sorted({f.strip() for f in (fields or []) if f.strip()})
    if not paths or WHOLE_OBJECT in paths:
        return (WHOLE_OBJECT,)
    return tuple(paths)


@lru_cache(maxsize=4096)
def compile_path(path: str) -> ParsedResult:
    """Compile a JMESPath expression; :class:`InvalidPath` explains a syntax error."""
    try:
        return jmespath.compile(path)
    except jmespath.exceptions.JMESPathError as e:
        raise InvalidPath(f"invalid JMESPath expression {path!r}: {e}") from e


def significant(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without metadata noise and status: what ``*`` hashes."""
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in NOISY_ANNOTATIONS}
    out: dict[str, Any] = {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    out["metadata"] = {"labels": meta.get("labels") or {}, "annotations": annotations}
    return out


def hash_value(value: Any) -> str:
    """Stable short hash of a JSON value (key order does not matter; absent and null hash alike)."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def hash_paths(obj: Mapping[str, Any], paths: Iterable[str]) -> dict[str, str]:
    """One hash per path for ``obj``."""
    out: dict[str, str] = {}
    for path in paths:
        if path == WHOLE_OBJECT:
            out[path] = hash_value(significant(obj))
        else:
            try:
                value = compile_path(path).search(obj)
            except jmespath.exceptions.JMESPathError as e:
                # e.g. a function applied to the wrong type on this object: hash the error, so the object is
                # neither dropped (which would look like a deletion) nor crashing the watch
                value = {"jmespathError": type(e).__name__}  # not str(e): it quotes the value
            out[path] = hash_value(value)
    return out
