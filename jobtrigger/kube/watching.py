"""List-then-watch of one resource scope that survives the real world (after kopf's watching.py and client-go's
reflector).

- LIST (paginated) gives the state and a resourceVersion; WATCH continues from it with bookmarks on.
- The server ends a watch after ``timeoutSeconds``; we re-watch from the last seen resourceVersion (bookmarks keep
  it fresh), so a quiet scope costs one request per few minutes and no LIST.
- ``410 Gone`` / ``Expired`` (in the response or as an ERROR event): relist and *diff* the new list against what
  was known, so changes (and deletions) that happened during the gap are reported, not lost.
- A stream that stays silent past the inactivity timeout (no event, no bookmark) is treated as dead and re-opened;
  transport errors reconnect with capped exponential backoff.

The watcher keeps only a *summary* per object (``summarize`` decides what: a few hashes, a pod's state), never
the object itself, and calls ``on_change(key, old, new)`` only when a summary changed, so status churn that no
trigger looks at costs no work downstream.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from jobtrigger.kube.client import JSON, ApiError, KubeClient

log = logging.getLogger(__name__)

S = TypeVar("S")
#: (namespace or "", name)
ObjectKey = tuple[str, str]


@dataclass
class WatchStats:
    lists: int = 0
    relists_410: int = 0
    watches: int = 0
    reconnects: int = 0
    events: int = 0
    bookmarks: int = 0
    inactivity_restarts: int = 0


class Watcher(Generic[S]):
    """Keeps ``objects`` (key -> summary) in sync with one list/watch path."""

    def __init__(
        self,
        kube: KubeClient,
        path: str,
        *,
        summarize: Callable[[JSON], S | None],
        on_change: Callable[[ObjectKey, S | None, S | None], None],
        on_synced: Callable[[], None] | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = 300,
        inactivity_timeout: float | None = None,
        page_size: int = 500,
        max_backoff: float = 30.0,
        name: str = "",
        on_restart: Callable[[str], None] | None = None,
        on_error: Callable[[ApiError], None] | None = None,
    ):
        self.kube = kube
        self.path = path
        self.summarize = summarize
        self.on_change = on_change
        self.on_synced = on_synced
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        # the server closes a watch after watch_timeout (bookmarks come more often), so silence well past that
        # means the connection is dead (half-open TCP, a proxy that dropped it) and must be re-opened
        self.inactivity_timeout = inactivity_timeout if inactivity_timeout is not None else watch_timeout + 60.0
        self.page_size = page_size
        self.max_backoff = max_backoff
        self.name = name or path
        self.on_restart = on_restart
        self.on_error = on_error
        self.objects: dict[ObjectKey, S] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.stats = WatchStats()
        #: the last failure, until a LIST or WATCH succeeds again (shown in JobTrigger conditions)
        self.last_error: ApiError | None = None

    def _selectors(self) -> dict[str, Any]:
        return {"labelSelector": self.label_selector or None, "fieldSelector": self.field_selector or None}

    def _set(self, key: ObjectKey, new: S | None) -> None:
        old = self.objects.get(key)
        if new is None:
            if key in self.objects:
                del self.objects[key]
        else:
            self.objects[key] = new
        if old != new:
            self.on_change(key, old, new)

    async def relist(self) -> None:
        """LIST everything and report the difference to what was known."""
        seen: dict[ObjectKey, S] = {}
        cont: str | None = None
        rv = ""
        while True:
            page = await self.kube.get(self.path, limit=self.page_size, **{"continue": cont}, **self._selectors())
            self.stats.lists += 1
            for item in page.get("items") or []:
                s = self.summarize(item)
                if s is not None:
                    seen[_key(item)] = s
            meta = page.get("metadata") or {}
            rv = meta.get("resourceVersion") or rv
            cont = meta.get("continue") or None
            if not cont:
                break
        for key in [k for k in self.objects if k not in seen]:
            self._set(key, None)
        for key, s in seen.items():
            self._set(key, s)
        self.resource_version = rv
        self.last_error = None
        if not self.synced.is_set():
            self.synced.set()
            if self.on_synced is not None:
                self.on_synced()

    async def run(self) -> None:
        """Run until cancelled. Never raises for API or transport errors."""
        backoff = 0.5
        need_list = True
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                await self._watch_once()
                self.last_error = None  # a stream that ended normally (timeoutSeconds) was healthy
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except _Gone:
                self.stats.relists_410 += 1
                self._restarted("410")
                log.info("watch expired, relisting", extra={"watch": self.name})
                need_list = True
            except _Inactive:
                self.stats.inactivity_restarts += 1
                self._restarted("inactivity")
                log.warning("watch silent too long, reconnecting", extra={"watch": self.name})
            except ApiError as e:
                self.stats.reconnects += 1
                changed = self.last_error is None or (self.last_error.status, self.last_error.message) != (
                    e.status,
                    e.message,
                )
                self.last_error = e
                if changed and self.on_error is not None:
                    self.on_error(e)
                self._restarted("error")
                if e.status == 410:
                    need_list = True
                    continue
                log.warning(
                    "watch failed, retrying",
                    extra={"watch": self.name, "status": e.status, "error": e.message, "backoff": backoff},
                )
                if e.status in (401, 403, 404):
                    # a permission or a kind that went away: listing again reports it (and deletions)
                    need_list = True
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # a bug must not kill the watch silently forever
                self.stats.reconnects += 1
                self._restarted("error")
                log.exception("unexpected watch failure", extra={"watch": self.name})
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _restarted(self, why: str) -> None:
        if self.on_restart is not None:
            self.on_restart(why)

    async def _watch_once(self) -> None:
        self.stats.watches += 1
        query = {
            "resourceVersion": self.resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": self.watch_timeout,
            **self._selectors(),
        }
        try:
            stream = self.kube.watch_lines(self.path, query, inactivity_timeout=self.inactivity_timeout)
            async for event in stream:
                self._handle(event)
        except ApiError as e:
            if e.status == 410:
                raise _Gone() from e
            if e.status == 0 and "Timeout" in e.reason:
                raise _Inactive() from e
            raise

    def _handle(self, event: JSON) -> None:
        etype = event.get("type")
        if self.last_error is not None and etype != "ERROR":
            self.last_error = None  # the stream works again
        obj = event.get("object") or {}
        if etype == "ERROR":
            if obj.get("code") == 410 or obj.get("reason") in ("Expired", "Gone"):
                raise _Gone()
            raise ApiError(int(obj.get("code") or 500), str(obj.get("reason") or ""), obj, "WATCH", self.path)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if etype == "BOOKMARK":
            self.stats.bookmarks += 1
        elif etype in ("ADDED", "MODIFIED"):
            self.stats.events += 1
            self._set(_key(obj), self.summarize(obj))
        elif etype == "DELETED":
            self.stats.events += 1
            self._set(_key(obj), None)
        if rv:
            self.resource_version = rv


class _Gone(Exception):
    pass


class _Inactive(Exception):
    pass


def _key(obj: JSON) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


class _Routed(MutableMapping[ObjectKey, S]):
    """The objects of several per-namespace watchers as one mapping, routed by the key's namespace."""

    def __init__(self, by_ns: dict[str | None, Watcher[S]]):
        self._by_ns = by_ns

    def _owner(self, key: ObjectKey) -> Watcher[S] | None:
        return self._by_ns.get(key[0]) or self._by_ns.get(None)

    def __getitem__(self, key: ObjectKey) -> S:
        w = self._owner(key)
        if w is None:
            raise KeyError(key)
        return w.objects[key]

    def __setitem__(self, key: ObjectKey, value: S) -> None:
        w = self._owner(key)
        if w is None:
            raise KeyError(key)
        w.objects[key] = value

    def __delitem__(self, key: ObjectKey) -> None:
        w = self._owner(key)
        if w is None:
            raise KeyError(key)
        del w.objects[key]

    def __iter__(self) -> Iterator[ObjectKey]:
        for w in self._by_ns.values():
            yield from w.objects

    def __len__(self) -> int:
        return sum(len(w.objects) for w in self._by_ns.values())


class WatcherGroup(Generic[S]):
    """One :class:`Watcher` per namespace (or one cluster-wide, namespace ``None``) behaving as one: a controller
    limited to a few namespaces needs only namespaced RBAC (Roles), never a cluster-wide list."""

    def __init__(self, namespaces: list[str | None], make: Callable[[str | None], Watcher[S]]):
        self.watchers: dict[str | None, Watcher[S]] = {ns: make(ns) for ns in namespaces}
        self.objects: MutableMapping[ObjectKey, S] = _Routed(self.watchers)

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.watchers.values()))

    async def wait_synced(self) -> None:
        for w in self.watchers.values():
            await w.synced.wait()

    @property
    def stats(self) -> WatchStats:
        total = WatchStats()
        for w in self.watchers.values():
            for f in vars(total):
                setattr(total, f, getattr(total, f) + getattr(w.stats, f))
        return total
