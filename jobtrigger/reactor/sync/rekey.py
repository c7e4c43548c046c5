"""Re-keying a persisted baseline: a status written with another hash key (a rotation) or with none (a release
before keyed hashes) is translated into the current key's hashes, without a spurious run and without losing a
change that happened meanwhile.

The watch cache holds hashes under the current key only, so the old ones cannot be compared with it. Instead the
watched objects are read once from the API server, and every field is hashed under both keys from the *same*
read: where the old hash equals the baseline's, the field had not changed and its new hash becomes the baseline;
where it differs, the field changed since the last run and keeps a hash that matches nothing, so the ordinary
comparison with the cache reports exactly that change and runs once. A change made after the read is newer than
the translated baseline and is seen by the same comparison. The cost is one read per watched entry, once per
JobTrigger and key change.

A baseline written with a key the controller no longer has cannot be verified: it is replaced by the current
state without a run (and a Warning Event says so), as after a change of the watch list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobtrigger.api.models import ResourceHash
from jobtrigger.kube.client import JSON, ApiError
from jobtrigger.reactor.watches import Interest
from jobtrigger.triggers.fields import HashKey, hash_paths
from jobtrigger.triggers.selectors import to_query

if TYPE_CHECKING:
    from jobtrigger.reactor.sync.core import Sync

#: stands for "changed since the baseline" in a translated baseline: no real hash equals it
CHANGED = "changed-before-rekey"


def key_id(key: HashKey | None) -> str | None:
    return key.id if key is not None else None


def needed(s: Sync) -> bool:
    """Whether the persisted baselines were written with another key than the current one."""
    return bool(s.old_status.get("hashKeyID") != key_id(s.ctl.settings.hash_key))


def old_key(s: Sync) -> tuple[bool, HashKey | None]:
    """(known, key) the persisted baselines were written with; ``known`` False: a key this controller lacks."""
    stored = s.old_status.get("hashKeyID")
    if stored is None:
        return True, None  # unkeyed (before keyed hashes)
    previous = s.ctl.settings.previous_hash_key
    if previous is not None and previous.id == stored:
        return True, previous
    return False, None


async def translate(s: Sync, interests: list[list[Interest]], entries: list[JSON]) -> list[JSON] | None:
    """``entries`` (a persisted baseline) under the current key; None when the old key is unknown."""
    known, old = old_key(s)
    if not known:
        return None
    new = s.ctl.settings.hash_key
    read: dict[tuple[str, str, str | None, str], JSON] = {}
    for lst in interests:
        for interest in lst:
            for obj in await _read(s, interest):
                meta = obj.get("metadata") or {}
                gvr = interest.scope.gvr
                read[(gvr.api_version, gvr.kind, meta.get("namespace") or None, meta.get("name", ""))] = obj
    out = []
    for entry in entries:
        rh = ResourceHash.model_validate(entry)
        current = read.get((rh.api_version, rh.kind, rh.namespace, rh.name))
        fields = []
        for f in rh.fields:
            translated = CHANGED  # deleted, or changed since the baseline
            if current is not None and hash_paths(current, [f.path], old)[f.path] == f.hash:
                translated = hash_paths(current, [f.path], new)[f.path]
            fields.append({"path": f.path, "hash": translated})
        out.append({**entry, "fields": fields})
    return out


async def _read(s: Sync, interest: Interest) -> list[JSON]:
    path = interest.scope.gvr.path(interest.scope.namespace)
    if interest.name is not None:
        try:
            return [await s.ctl.kube.get(f"{path}/{interest.name}")]
        except ApiError as e:
            if e.status == 404:
                return []
            raise
    query = {"labelSelector": to_query(interest.selector)} if interest.selector is not None else {}
    return list((await s.ctl.kube.get(path, **query)).get("items") or [])
