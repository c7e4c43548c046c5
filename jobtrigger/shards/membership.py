"""Shard membership on ``coordination.k8s.io/v1`` Leases, and which JobTriggers this replica may work on.

Every replica holds a Lease of its own (``<group>-<identity>``, label ``jobtrigger.dev/shard-group``), renewed every
``retry_period``, and watches the others'. A peer is *live* while this replica has seen its ``renewTime`` change
within the peer's ``leaseDurationSeconds``, timed on this replica's monotonic clock when it saw the change (as
client-go's leader election does: no comparison of two machines' clocks, so clock skew does not matter).

Each Lease also carries the **published view** of its holder (annotation ``jobtrigger.dev/shard-view``): the
members it computes ownership over. Ownership is rendezvous hashing over a view (:mod:`.ring`). Replica X works on
JobTrigger k only when

1. X owns k in the view X has published, and
2. no live peer Y owns k in the view Y has published.

A replica publishes a new view only **after** it stopped working on every JobTrigger that view takes away (no sync
of it running, its watches closed), and starts on what the new view gives it only after a **consistent read** of the
peers' Leases that follows its own publication. Two replicas that publish at the same time therefore cannot both
miss each other (etcd is linearizable): at least one of them sees the other's claim and waits. So two replicas never
work on one JobTrigger at the same time; hand-overs between live replicas go through "stopped, then published".

A replica that cannot renew stops acting when its Lease is no longer *proven* (``renew_deadline`` after the start of
its last successful renewal; every API request of the process is bounded by that, as for the leader), which is
before any peer can see the Lease as expired (``lease_duration`` after *it saw* that renewal). The process then
exits. On a clean shutdown a replica stops working, then deletes its Lease, and the others take over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobtrigger import metrics
from jobtrigger.kube.client import JSON, ApiError, KubeClient
from jobtrigger.shards.ring import owner
from jobtrigger.timefmt import rfc3339_micro

log = logging.getLogger(__name__)

LABEL_GROUP = "jobtrigger.dev/shard-group"
ANNOTATION_VIEW = "jobtrigger.dev/shard-view"


@dataclass
class ShardConfig:
    namespace: str
    group: str = "jobtrigger"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    #: a peer's Lease not renewed for this long (as seen here; 0: ten lease durations) is deleted: its replica
    #: is gone for good (a new process has a new identity), and Leases of killed replicas would otherwise pile up
    collect_after: float = 0.0

    @property
    def lease_name(self) -> str:
        name = re.sub(r"[^a-z0-9.-]+", "-", f"{self.group}-{self.identity}".lower()).strip("-.")
        return name[:253]


@dataclass
class Peer:
    identity: str
    renew: str  # renewTime as last seen
    duration: float
    view: frozenset[str]
    seen: float  # loop time at which this replica saw ``renew`` change


@dataclass
class Membership:
    """This replica's Lease, the peers' Leases, and the ownership gate (:meth:`allowed`)."""

    kube: KubeClient
    cfg: ShardConfig
    #: the keys (``namespace/name``) of every JobTrigger this replica knows of (from its JobTrigger watch)
    keys: Callable[[], Iterable[str]] = lambda: ()
    #: called with the keys that became allowed (enqueue them)
    on_gained: Callable[[list[str]], None] = lambda keys: None
    #: awaited with a predicate of the keys being given up: returns once no sync of those keys runs any more
    drain: Callable[[Callable[[str], bool]], Awaitable[None]] | None = None
    peers: dict[str, Peer] = field(default_factory=dict)
    published: frozenset[str] = frozenset()
    target: frozenset[str] = frozenset()
    valid_until: float = 0.0
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    handovers: int = 0
    _allowed: set[str] = field(default_factory=set)
    _known: set[str] = field(default_factory=set)  # the keys at the last full recompute
    _signature: tuple[Any, ...] = ()  # what the last full recompute depended on
    _dirty: bool = False  # a key was refused that the last recompute allowed
    _owners: dict[frozenset[str], dict[str, str | None]] = field(default_factory=dict)
    _lease: JSON | None = None
    _stale: list[JSON] = field(default_factory=list)  # peer Leases expired long ago, as last read

    # ------------------------------------------------------------------ the gate

    def remaining(self) -> float:
        """Seconds this replica's Lease is still proven (<= 0: act no more)."""
        return self.valid_until - asyncio.get_running_loop().time()

    def live_peers(self) -> list[Peer]:
        now = asyncio.get_running_loop().time()
        return [p for p in self.peers.values() if now - p.seen < p.duration]

    def view(self) -> frozenset[str]:
        return frozenset({self.cfg.identity, *(p.identity for p in self.live_peers())})

    def _owner(self, key: str, view: frozenset[str]) -> str | None:
        """:func:`owner`, memoized per view (a handful of views are in use at a time)."""
        cache = self._owners.get(view)
        if cache is None:
            cache = self._owners[view] = {}
        if key not in cache:
            cache[key] = owner(key, view)
        return cache[key]

    def allowed(self, key: str) -> bool:
        """May this replica work on JobTrigger ``key`` now (see the module docstring)."""
        if self.lost.is_set() or self.remaining() <= 0:
            return False  # the Lease is not proven: nothing (the process is about to exit)
        me = self.cfg.identity
        if self._owner(key, self.published) != me or self._owner(key, self.target or self.published) != me:
            return False
        return all(self._owner(key, p.view) != p.identity for p in self.live_peers())

    def refused(self, key: str) -> None:
        """The controller turned a sync of ``key`` away (and closed its watches). If the last recompute had counted
        it as allowed, the gate flapped in between (a peer's claim seen for a moment): recompute at the next
        renewal, so that the key is enqueued again once it is allowed, instead of staying unwatched."""
        if key in self._allowed:
            self._allowed.discard(key)
            self._dirty = True

    def owned(self) -> list[str]:
        return sorted(k for k in self.keys() if self.allowed(k))

    # ------------------------------------------------------------------ the Lease

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.cfg.namespace}/leases"

    def _body(self, view: Iterable[str]) -> JSON:
        now = rfc3339_micro(datetime.now(UTC))
        meta: JSON = {
            "name": self.cfg.lease_name,
            "namespace": self.cfg.namespace,
            "labels": {LABEL_GROUP: self.cfg.group},
            "annotations": {ANNOTATION_VIEW: json.dumps(sorted(view))},
        }
        if self._lease is not None:
            meta["resourceVersion"] = self._lease["metadata"]["resourceVersion"]
        spec = {
            "holderIdentity": self.cfg.identity,
            "leaseDurationSeconds": max(1, round(self.cfg.lease_duration)),
            "acquireTime": ((self._lease or {}).get("spec") or {}).get("acquireTime") or now,
            "renewTime": now,
        }
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    async def _write(self, view: Iterable[str]) -> None:
        """Create or renew our Lease with ``view`` published; sets the proof on success."""
        started = asyncio.get_running_loop().time()
        if self._lease is None:
            try:
                self._lease = await self.kube.create(self.path, self._body(view))
            except ApiError as e:
                if e.status != 409:
                    raise
                # ours from an earlier process with the same identity: take it over
                self._lease = await self.kube.get(f"{self.path}/{self.cfg.lease_name}")
                self._lease = await self.kube.request(
                    "PUT", f"{self.path}/{self.cfg.lease_name}", body=self._body(view)
                )
        else:
            self._lease = await self.kube.request("PUT", f"{self.path}/{self.cfg.lease_name}", body=self._body(view))
        self.valid_until = started + self.cfg.renew_deadline

    def _observe(self, lease: JSON, now: float) -> None:
        spec = lease.get("spec") or {}
        ident = spec.get("holderIdentity") or ""
        if not ident or ident == self.cfg.identity:
            return
        try:
            raw = ((lease.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_VIEW) or "[]"
            view = frozenset(str(m) for m in json.loads(raw))
        except (TypeError, ValueError):
            view = frozenset()
        renew = str(spec.get("renewTime") or "")
        old = self.peers.get(ident)
        seen = old.seen if old is not None and old.renew == renew else now
        duration = float(spec.get("leaseDurationSeconds") or self.cfg.lease_duration)
        new = Peer(ident, renew, duration, view, seen)
        if old is None or old.view != view or old.renew != renew:
            self.peers[ident] = new
            if old is None or old.view != view:
                self.changed.set()

    async def refresh(self) -> None:
        """A consistent read (LIST, no resourceVersion) of the group's Leases."""
        got = await self.kube.get(self.path, labelSelector=f"{LABEL_GROUP}={self.cfg.group}")
        now = asyncio.get_running_loop().time()
        present = set()
        self._stale = []
        for lease in got.get("items") or []:
            ident = (lease.get("spec") or {}).get("holderIdentity") or ""
            present.add(ident)
            self._observe(lease, now)
            peer = self.peers.get(ident)
            if peer is not None and now - peer.seen > (self.cfg.collect_after or 10 * peer.duration):
                self._stale.append(lease)
        for ident in [i for i in self.peers if i not in present]:
            del self.peers[ident]  # deleted (a clean shutdown) or released
            self.changed.set()

    async def _collect(self) -> None:
        """Delete the long-expired peer Leases the last read found, each only as read (a resourceVersion
        precondition: a renewal in between keeps it). Their replicas stopped acting long ago (at their renew
        deadline), so nothing changes hands. Best effort, after our renewal: a failure here never costs our Lease."""
        for lease in self._stale:
            meta = lease.get("metadata") or {}
            try:
                await asyncio.wait_for(
                    self.kube.request(
                        "DELETE",
                        f"{self.path}/{meta.get('name')}",
                        body={
                            "kind": "DeleteOptions",
                            "apiVersion": "v1",
                            "preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
                        },
                    ),
                    timeout=max(0.001, min(5.0, self.remaining())),
                )
                log.info("expired shard lease deleted", extra={"lease": meta.get("name")})
            except ApiError as e:
                if e.status not in (404, 409):
                    log.warning(
                        "could not delete an expired shard lease", extra={"lease": meta.get("name"), "error": str(e)}
                    )
            except TimeoutError:
                log.warning(
                    "could not delete an expired shard lease", extra={"lease": meta.get("name"), "error": "timeout"}
                )
        self._stale = []

    # ------------------------------------------------------------------ lifecycle

    async def join(self) -> None:
        """Create our Lease with an empty published view (we claim nothing yet) and read the peers."""
        await self._write(())
        await self.refresh()

    async def run(self) -> None:
        """Renew, follow the peers, move to new views. Returns (and sets ``lost``) when the Lease is not proven."""
        self.changed.set()  # the first step at once: publish a view
        while True:
            wait = max(0.0, min(self.cfg.retry_period, self.remaining()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=wait)
            self.changed.clear()
            if self.remaining() <= 0:
                break
            try:
                await asyncio.wait_for(self._step(), timeout=max(0.001, self.remaining()))
            except (ApiError, TimeoutError) as e:
                log.warning("shard lease renewal failed", extra={"error": str(e) or type(e).__name__})
            if self.remaining() <= 0:
                break
        log.error("shard lease lost", extra={"lease": self.cfg.lease_name})
        self._allowed.clear()
        self.lost.set()

    async def _step(self) -> None:
        await self.refresh()
        view = self.view()
        if view != self.published:
            before = set(self.owned())
            self.target = view  # from now on the keys this view takes away are not allowed
            if self.drain is not None:
                me = self.cfg.identity
                published = self.published
                await self.drain(lambda k: owner(k, published) == me and owner(k, view) != me)
            await self._write(view)
            self.published = view
            await self.refresh()  # consistent read after our publication (see the module docstring)
            lost = len(before - set(self.owned()))
            if lost:
                self.handovers += lost
                metrics.SHARD_HANDOVERS.labels("released").inc(lost)
            log.info("shard view published", extra={"view": sorted(view), "released": lost})
        else:
            await self._write(view)  # renewal
        self._update_allowed()
        await self._collect()

    def _update_allowed(self) -> None:
        """Recompute what this replica may work on when a view it depends on changed (not on every renewal: a
        JobTrigger that appears is gated by its own sync); enqueue what became allowed."""
        live = self.live_peers()
        signature = (self.published, self.target, tuple(sorted((p.identity, p.view) for p in live)))
        keys = set(self.keys())
        if signature == self._signature and keys <= self._known and not self._dirty:
            return
        self._dirty = False
        in_use = {self.published, self.target, *(p.view for p in live)}
        self._owners = {v: c for v, c in self._owners.items() if v in in_use}
        now_allowed = {k for k in keys if self.allowed(k)}
        # every key that became allowed is enqueued, also one that appeared since the last recompute: its own first
        # sync may have come while it was not allowed yet (and then nothing else would sync it); the hand-over
        # metric counts only keys that were known before
        new = now_allowed - self._allowed
        handed = len(new & self._known) if self._signature else 0
        gained = sorted(new)
        self._allowed, self._known, self._signature = now_allowed, keys, signature
        metrics.SHARD_MEMBERS.set(len(self.published))
        metrics.SHARD_OWNED.set(len(now_allowed))
        if handed:
            metrics.SHARD_HANDOVERS.labels("gained").inc(handed)
        if gained:
            self.on_gained(gained)

    async def leave(self) -> None:
        """Clean shutdown (after this replica stopped working): delete our Lease so the peers take over at once."""
        self._allowed.clear()
        if self._lease is None or self.lost.is_set():
            return  # lost: the peers take over on expiry; a partitioned replica must not hang here
        try:
            await asyncio.wait_for(self.kube.delete(f"{self.path}/{self.cfg.lease_name}"), 5)
            self._lease = None
            log.info("shard lease released", extra={"lease": self.cfg.lease_name})
        except (ApiError, TimeoutError) as e:
            log.warning("could not release the shard lease", extra={"error": str(e) or type(e).__name__})


def debug_state(m: Membership) -> dict[str, Any]:
    """What ``/debug/shard`` shows: this replica, its published view, the live members it sees, what it owns."""
    return {
        "identity": m.cfg.identity,
        "published": sorted(m.published),
        "live": sorted(m.view()),
        "owned": m.owned(),
        "handovers": m.handovers,
    }
