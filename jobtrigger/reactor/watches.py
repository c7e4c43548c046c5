"""Shared watches for resource-change triggers: one watch per (kind, namespace scope), whatever the number of
JobTriggers that look at it.

Each JobTrigger registers *interests* (a kind in a namespace, a name or a label selector, the JMESPath fields it
cares about). Interests are grouped by scope; each scope runs one :class:`~jobtrigger.kube.watching.Watcher`
whose per-object summary is the object's labels plus one hash per field path any interest in the scope needs.
A server-side selector is used when it narrows the scope for every interest in it (a single name → field
selector ``metadata.name``; a single label selector → ``labelSelector``); otherwise the scope is watched whole and
matched locally. When the interests of a scope change, its watch is restarted (relist), which costs one LIST.

When an object's summary changes, every JobTrigger whose interest matches the object (before or after) and whose
fields changed is marked dirty in the work queue; the worker then compares the cache with the persisted baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from jobtrigger.api.models import LabelSelector
from jobtrigger.kube.client import GVR, JSON, KubeClient
from jobtrigger.kube.watching import ObjectKey, Watcher
from jobtrigger.triggers.fields import HashKey, hash_paths
from jobtrigger.triggers.selectors import matches, to_query

log = logging.getLogger(__name__)

TriggerKey = tuple[str, str]  # (namespace, name) of a JobTrigger


@dataclass(frozen=True)
class ScopeKey:
    gvr: GVR
    namespace: str | None  # None: cluster-scoped kind (or all namespaces)


@dataclass(frozen=True)
class Interest:
    scope: ScopeKey
    name: str | None
    selector: LabelSelector | None
    paths: tuple[str, ...]

    def matches(self, key: ObjectKey, labels: Mapping[str, str]) -> bool:
        if self.name is not None:
            return key[1] == self.name
        return self.selector is not None and matches(self.selector, labels)


@dataclass(frozen=True)
class Summary:
    uid: str
    labels: tuple[tuple[str, str], ...]
    hashes: tuple[tuple[str, str], ...]  # (path, hash) for every path the scope needs

    def hash_map(self) -> dict[str, str]:
        return dict(self.hashes)


@dataclass
class Scope:
    key: ScopeKey
    interests: dict[TriggerKey, list[Interest]] = field(default_factory=dict)
    watcher: Watcher[Summary] | None = None
    task: asyncio.Task[None] | None = None
    config: tuple[tuple[str, ...], str | None, str | None] | None = None  # paths, labelSel, fieldSel
    _index: tuple[dict[str, list[TriggerKey]], list[TriggerKey]] | None = None  # see candidates()

    def candidates(self, name: str) -> list[tuple[TriggerKey, list[Interest]]]:
        """The JobTriggers an event for object ``name`` may concern: those naming it, and those with a selector
        (an index, so an event in a scope shared by thousands of JobTriggers by name costs a lookup)."""
        by_name: dict[str, list[TriggerKey]] = {}
        by_selector: list[TriggerKey] = []
        if self._index is None:
            for trigger, lst in self.interests.items():
                for i in lst:
                    if i.name is None:
                        by_selector.append(trigger)
                    else:
                        by_name.setdefault(i.name, []).append(trigger)
            self._index = (by_name, by_selector)
        by_name, by_selector = self._index
        keys = dict.fromkeys([*by_name.get(name, []), *by_selector])
        return [(k, self.interests[k]) for k in keys if k in self.interests]

    def wanted_config(self) -> tuple[tuple[str, ...], str | None, str | None]:
        all_interests = [i for lst in self.interests.values() for i in lst]
        paths = tuple(sorted({p for i in all_interests for p in i.paths}))
        names = {i.name for i in all_interests if i.name is not None}
        selectors = {to_query(i.selector) for i in all_interests if i.selector is not None}
        label_sel = field_sel = None
        if len(names) == 1 and not selectors:
            field_sel = f"metadata.name={next(iter(names))}"
        elif len(selectors) == 1 and not names:
            label_sel = next(iter(selectors))
        return paths, label_sel, field_sel

    @property
    def synced(self) -> bool:
        return self.watcher is not None and self.watcher.synced.is_set()


class ResourceWatches:
    def __init__(
        self,
        kube: KubeClient,
        enqueue: Callable[[TriggerKey], None],
        *,
        watch_timeout: int = 300,
        inactivity_timeout: float | None = None,
        on_restart: Callable[[str, str], None] | None = None,
        hash_key: HashKey | None = None,
    ):
        self.kube = kube
        self.enqueue = enqueue
        self.hash_key = hash_key  # the cached (and so the persisted) field hashes are keyed with it
        self.watch_timeout = watch_timeout
        self.inactivity_timeout = inactivity_timeout
        self.on_restart = on_restart
        self.scopes: dict[ScopeKey, Scope] = {}
        self._by_trigger: dict[TriggerKey, set[ScopeKey]] = defaultdict(set)

    # ------------------------------------------------------------------ registration

    def set_interests(self, trigger: TriggerKey, interests: Iterable[Interest]) -> None:
        """Replace the interests of one JobTrigger; start, restart or stop scope watches as needed."""
        wanted: dict[ScopeKey, list[Interest]] = defaultdict(list)
        for i in interests:
            wanted[i.scope].append(i)
        for sk in self._by_trigger.get(trigger, set()) - set(wanted):
            scope = self.scopes[sk]
            scope.interests.pop(trigger, None)
            scope._index = None
            self._reconfigure(scope)
        for sk, lst in wanted.items():
            scope = self.scopes.setdefault(sk, Scope(sk))
            if scope.interests.get(trigger) != lst:
                scope.interests[trigger] = lst
                scope._index = None
                self._reconfigure(scope)
        self._by_trigger[trigger] = set(wanted)
        if not wanted:
            self._by_trigger.pop(trigger, None)

    def remove(self, trigger: TriggerKey) -> None:
        self.set_interests(trigger, [])

    def _reconfigure(self, scope: Scope) -> None:
        if not scope.interests:
            self._stop(scope)
            self.scopes.pop(scope.key, None)
            return
        config = scope.wanted_config()
        if config == scope.config:
            return
        self._stop(scope)
        scope.config = config
        paths, label_sel, field_sel = config
        sk = scope.key

        def summarize(obj: JSON) -> Summary | None:
            meta = obj.get("metadata") or {}
            try:
                hashes = hash_paths(obj, paths, self.hash_key)
            except Exception:  # a JMESPath runtime error on odd data must not stop the watch
                log.exception("hashing failed", extra={"object": meta.get("name")})
                return None
            return Summary(
                uid=meta.get("uid", ""),
                labels=tuple(sorted((meta.get("labels") or {}).items())),
                hashes=tuple(sorted(hashes.items())),
            )

        def on_change(key: ObjectKey, old: Summary | None, new: Summary | None) -> None:
            self._dispatch(scope, key, old, new)

        def on_synced() -> None:
            for trigger in list(scope.interests):
                self.enqueue(trigger)

        name = f"{sk.gvr.resource}.{sk.gvr.group or 'core'}/{sk.namespace or '*'}"
        scope.watcher = Watcher(
            self.kube,
            sk.gvr.path(sk.namespace),
            summarize=summarize,
            on_change=on_change,
            on_synced=on_synced,
            label_selector=label_sel,
            field_selector=field_sel,
            watch_timeout=self.watch_timeout,
            inactivity_timeout=self.inactivity_timeout,
            name=name,
            on_restart=self._restart_hook(name),
            on_error=lambda _e: on_synced(),  # let the JobTriggers report the failure in their status
        )
        scope.task = asyncio.get_running_loop().create_task(scope.watcher.run(), name=f"watch {name}")
        log.info("watch started", extra={"watch": name, "labelSelector": label_sel, "fieldSelector": field_sel})

    def _restart_hook(self, name: str) -> Callable[[str], None] | None:
        hook = self.on_restart
        if hook is None:
            return None
        return lambda why: hook(name, why)

    def _stop(self, scope: Scope) -> None:
        if scope.task is not None:
            scope.task.cancel()
        scope.task = None
        scope.watcher = None
        scope.config = None

    async def close(self) -> None:
        tasks = [s.task for s in self.scopes.values() if s.task is not None]
        for s in self.scopes.values():
            self._stop(s)
        self.scopes.clear()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # ------------------------------------------------------------------ events

    def _dispatch(self, scope: Scope, key: ObjectKey, old: Summary | None, new: Summary | None) -> None:
        old_labels = dict(old.labels) if old else {}
        new_labels = dict(new.labels) if new else {}
        old_h = old.hash_map() if old else {}
        new_h = new.hash_map() if new else {}
        for trigger, interests in scope.candidates(key[1]):
            for i in interests:
                was, now = (
                    old is not None and i.matches(key, old_labels),
                    new is not None and i.matches(key, new_labels),
                )
                if was != now or (now and any(old_h.get(p) != new_h.get(p) for p in i.paths)):
                    self.enqueue(trigger)
                    break

    # ------------------------------------------------------------------ reads for the worker

    def synced(self, trigger: TriggerKey) -> bool:
        return all(self.scopes[sk].synced for sk in self._by_trigger.get(trigger, set()))

    def errors(self, trigger: TriggerKey) -> list[str]:
        """Why the trigger's watches are not working (e.g. 403: the controller's RBAC lacks list/watch)."""
        out = []
        for sk in sorted(self._by_trigger.get(trigger, set()), key=str):
            w = self.scopes[sk].watcher
            if w is not None and w.last_error is not None:
                e = w.last_error
                where = f" in namespace {sk.namespace}" if sk.namespace else ""
                out.append(
                    f"cannot list/watch {sk.gvr.resource}.{sk.gvr.group or 'core'}{where}: {e.status} {e.message}"
                )
        return out

    def _matched(self, interest: Interest) -> list[tuple[ObjectKey, Summary]]:
        scope = self.scopes.get(interest.scope)
        if scope is None or scope.watcher is None:
            return []
        if interest.name is not None:
            # by name: one lookup, not a scan of the scope (a namespace watch may hold thousands of objects)
            key = (interest.scope.namespace or "", interest.name)
            candidates = [(key, scope.watcher.objects[key])] if key in scope.watcher.objects else []
        else:
            candidates = list(scope.watcher.objects.items())
        return [(key, summary) for key, summary in candidates if interest.matches(key, dict(summary.labels))]

    def matching(self, interest: Interest) -> dict[ObjectKey, dict[str, str]]:
        """Objects the interest matches now, with the hashes of its paths."""
        out: dict[ObjectKey, dict[str, str]] = {}
        for key, summary in self._matched(interest):
            h = summary.hash_map()
            out[key] = {p: h[p] for p in interest.paths if p in h}
        return out

    def labels(self, interest: Interest) -> dict[ObjectKey, dict[str, str]]:
        """Objects the interest matches now, with their labels."""
        return {key: dict(summary.labels) for key, summary in self._matched(interest)}

    def cached_objects(self) -> int:
        return sum(len(s.watcher.objects) for s in self.scopes.values() if s.watcher is not None)
