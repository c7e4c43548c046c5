"""Which parts of an object count as a change, and their hashes.

A watched object is reduced to one short hash per configured JMESPath expression; only these hashes are cached and
persisted (``status.resourceHashes``), never the object itself (a Secret's data never stays in memory).

The persisted hashes are *keyed* (HMAC-SHA256 with a secret only the controller reads, :class:`HashKey`): whoever
may read a JobTrigger but not the Secret it watches cannot test guesses of a low-entropy value against its status.
Without a key (``key=None``) the hash is the plain SHA-256 prefix of earlier releases, kept for migrating a status
written by them (see :mod:`jobtrigger.reactor.sync.on_resources`).

``*`` (the default) means the whole object without the noise that changes on its own: ``metadata`` except labels
and annotations (resourceVersion, managedFields, generation, timestamps, uid...), ``status``, and the
``kubectl.kubernetes.io/last-applied-configuration`` annotation. JMESPath paths address the object as the API
returns it, e.g. ``data``, ``data.key``, ``spec.replicas``, ``spec.template.spec.containers[*].image``; a name with
dashes or dots needs quotes: ``data."app.conf"``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class HashKey:
    """The secret the persisted field hashes are keyed with, and its public id (recorded in status next to the
    hashes, so a controller knows which key, if any, a baseline was written with)."""

    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("a hash key needs at least 16 bytes")

    @property
    def id(self) -> str:
        return hmac.new(self.secret, b"jobtrigger.dev/hash-key-id", hashlib.sha256).hexdigest()[:12]


def hash_value(value: Any, key: HashKey | None = None) -> str:
    """Stable short hash of a JSON value (key order does not matter; absent and null hash alike); keyed (HMAC)
    when ``key`` is given."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    if key is None:
        return hashlib.sha256(data).hexdigest()[:16]
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()[:16]


def hash_paths(obj: Mapping[str, Any], paths: Iterable[str], key: HashKey | None = None) -> dict[str, str]:
    """One hash per path for ``obj`` (keyed with ``key``)."""
    out: dict[str, str] = {}
    for path in paths:
        if path == WHOLE_OBJECT:
            out[path] = hash_value(significant(obj), key)
        else:
            try:
                value = compile_path(path).search(obj)
            except jmespath.exceptions.JMESPathError as e:
                # e.g. a function applied to the wrong type on this object: hash the error, so the object is
                # neither dropped (which would look like a deletion) nor crashing the watch
                value = {"jmespathError": type(e).__name__}  # not str(e): it quotes the value
            out[path] = hash_value(value, key)
    return out
