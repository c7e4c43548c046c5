"""Shared pod watches for pod-state triggers: one watch per (namespace, label selector), server-side selector.

Every JobTrigger with the same namespace and selector shares one watch, whose cache holds a small
:class:`~jobtrigger.triggers.pods.PodSummary` per pod. A watch event is turned into transitions for each
interested JobTrigger (:func:`~jobtrigger.triggers.pods.transitions`) and put into that JobTrigger's *inbox*; the
worker drains the inbox and runs one Job per transition (the Job name is the transition's occurrence key).

A JobTrigger's first look at a scope — a new JobTrigger, or any JobTrigger after a controller restart — does not
come from events but from the cache: :func:`~jobtrigger.triggers.pods.existing` with the JobTrigger's persisted
watermark, so transitions that happened while nobody watched are recovered with the same occurrence keys.
The inbox is memory only: a crash loses it, and the watermark (advanced only after the inbox was processed)
brings it back on the next start.

What the first look must *not* bring back is an occurrence that was already handled (run, or consumed by
``Forbid``) and whose Job is gone (pruned, replaced, never created): ``handled`` holds those occurrence keys, loaded
from ``status.podHandled`` at the first look and persisted with the watermark, trimmed to what a first look
could still return (see :func:`jobtrigger.triggers.pods.replayable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from jobtrigger.kube.client import KubeClient
from jobtrigger.kube.watching import ObjectKey, Watcher
from jobtrigger.triggers import pods
from jobtrigger.triggers.pods import PodSummary, Transition

log = logging.getLogger(__name__)

TriggerKey = tuple[str, str]


@dataclass(frozen=True)
class PodScope:
    namespace: str
    selector: str  # labelSelector query


@dataclass
class _Scope:
    key: PodScope
    watcher: Watcher[PodSummary]
    task: asyncio.Task[None]
    interests: dict[TriggerKey, frozenset[str]] = field(default_factory=dict)


class PodWatches:
    def __init__(
        self,
        kube: KubeClient,
        enqueue: Callable[[TriggerKey], None],
        *,
        watch_timeout: int = 300,
        inactivity_timeout: float | None = None,
        on_restart: Callable[[str], None] | None = None,
    ):
        self.kube = kube
        self.enqueue = enqueue
        self.watch_timeout = watch_timeout
        self.inactivity_timeout = inactivity_timeout
        self.on_restart = on_restart
        self.scopes: dict[PodScope, _Scope] = {}
        self._by_trigger: dict[TriggerKey, PodScope] = {}
        #: transitions waiting to be run, per JobTrigger, in arrival order, unique by occurrence
        self.inbox: dict[TriggerKey, dict[str, Transition]] = {}
        #: JobTriggers that took their first look at their scope (see module docstring)
        self.initialized: set[TriggerKey] = set()
        #: occurrence keys handled (run or consumed) that a first look could still return, per JobTrigger
        self.handled: dict[TriggerKey, set[str]] = {}

    def set_interest(self, trigger: TriggerKey, scope: PodScope | None, when: Iterable[str] = ()) -> None:
        old = self._by_trigger.get(trigger)
        if old is not None and old != scope:
            s = self.scopes[old]
            s.interests.pop(trigger, None)
            self._forget(trigger)
            if not s.interests:
                s.task.cancel()
                del self.scopes[old]
            del self._by_trigger[trigger]
        if scope is None:
            self._forget(trigger)
            return
        s = self.scopes.get(scope) or self._start(scope)
        s.interests[trigger] = frozenset(when)
        self._by_trigger[trigger] = scope

    def _forget(self, trigger: TriggerKey) -> None:
        self.initialized.discard(trigger)
        self.inbox.pop(trigger, None)
        self.handled.pop(trigger, None)

    def _start(self, scope: PodScope) -> _Scope:
        def on_change(key: ObjectKey, old: PodSummary | None, new: PodSummary | None) -> None:
            s = self.scopes.get(scope)
            if s is None or not s.watcher.synced.is_set():
                return  # the initial list: JobTriggers take their first look from the cache instead
            for trigger, when in s.interests.items():
                if trigger not in self.initialized:
                    continue
                found = pods.transitions(old, new, key=key, when=when)
                if found:
                    box = self.inbox.setdefault(trigger, {})
                    for t in found:
                        box.setdefault(t.occurrence, t)
                    self.enqueue(trigger)

        def on_synced() -> None:
            s = self.scopes.get(scope)
            for trigger in list(s.interests if s else ()):
                self.enqueue(trigger)

        name = f"pods/{scope.namespace}/{scope.selector}"
        watcher: Watcher[PodSummary] = Watcher(
            self.kube,
            f"/api/v1/namespaces/{scope.namespace}/pods",
            summarize=pods.summarize,
            on_change=on_change,
            on_synced=on_synced,
            on_error=lambda _e: on_synced(),
            label_selector=scope.selector,
            watch_timeout=self.watch_timeout,
            inactivity_timeout=self.inactivity_timeout,
            name=name,
            on_restart=self.on_restart,
        )
        task = asyncio.get_running_loop().create_task(watcher.run(), name=f"watch {name}")
        s = _Scope(scope, watcher, task)
        self.scopes[scope] = s
        return s

    def remove(self, trigger: TriggerKey) -> None:
        self.set_interest(trigger, None)

    def synced(self, trigger: TriggerKey) -> bool:
        scope = self._by_trigger.get(trigger)
        return scope is None or self.scopes[scope].watcher.synced.is_set()

    def errors(self, trigger: TriggerKey) -> list[str]:
        scope = self._by_trigger.get(trigger)
        e = self.scopes[scope].watcher.last_error if scope else None
        return (
            []
            if e is None or scope is None
            else [f"cannot list/watch pods in namespace {scope.namespace}: {e.status} {e.message}"]
        )

    def current(self, trigger: TriggerKey) -> dict[ObjectKey, PodSummary]:
        scope = self._by_trigger.get(trigger)
        return dict(self.scopes[scope].watcher.objects) if scope else {}

    def take(self, trigger: TriggerKey) -> list[Transition]:
        return list(self.inbox.pop(trigger, {}).values())

    def put_back(self, trigger: TriggerKey, transitions: Iterable[Transition]) -> None:
        """Return unprocessed transitions to the front of the inbox (before anything that arrived meanwhile)."""
        box = {t.occurrence: t for t in transitions}
        for occ, t in self.inbox.get(trigger, {}).items():
            box.setdefault(occ, t)
        self.inbox[trigger] = box

    def cached_pods(self) -> int:
        return sum(len(s.watcher.objects) for s in self.scopes.values())

    async def close(self) -> None:
        for s in self.scopes.values():
            s.task.cancel()
        for s in self.scopes.values():
            with contextlib.suppress(asyncio.CancelledError):
                await s.task
        self.scopes.clear()
