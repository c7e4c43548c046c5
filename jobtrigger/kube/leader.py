"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does.

Only the leader runs the controller; other replicas wait. The holder renews the Lease every ``retry_period``; a
Lease not renewed for ``lease_duration`` may be taken over by another replica (with a resourceVersion
precondition, so two replicas cannot both win). A leader that cannot renew within ``renew_deadline`` steps down
(the process then exits and is restarted, so no stale leader keeps creating Jobs). On a clean shutdown the leader
releases the Lease, so a standby takes over at once instead of after ``lease_duration``.

A hand-over never runs an occurrence twice: Job names are derived from occurrences, and the new leader's
``AlreadyExists`` counts as done. And the old leader does not act after the hand-over: :meth:`remaining` is the
time the Lease is *proven* (``renew_deadline`` after the start of the last successful renewal, which is before
anyone else may take it at ``lease_duration``); the process gives it to its API client as a deadline, so no
request is sent, or left running, past it — however long a call hangs or the process is paused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jobtrigger.kube.client import ApiError, KubeClient
from jobtrigger.timefmt import parse as parse_time
from jobtrigger.timefmt import rfc3339_micro

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LeaseConfig:
    namespace: str
    name: str = "jobtrigger-leader"
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    def __init__(self, kube: KubeClient, cfg: LeaseConfig, *, clock: Callable[[], datetime] = _now):
        self.kube = kube
        self.cfg = cfg
        self.clock = clock
        self.is_leader = asyncio.Event()
        self.lost = asyncio.Event()
        self.transitions = 0
        self.valid_until = 0.0  # loop time until which the Lease is proven ours

    def remaining(self) -> float:
        """Seconds the Lease is still proven ours (<= 0: act no more)."""
        return self.valid_until - asyncio.get_running_loop().time()

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.cfg.namespace}/leases"

    def _spec(self, now: datetime, transitions: int, acquired: str | None = None) -> dict[str, Any]:
        return {
            "holderIdentity": self.cfg.identity,
            "leaseDurationSeconds": max(1, int(self.cfg.lease_duration)),
            "acquireTime": acquired or rfc3339_micro(now),
            "renewTime": rfc3339_micro(now),
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True if we hold the Lease afterwards."""
        now = self.clock()
        try:
            lease = await self.kube.get(f"{self.path}/{self.cfg.name}")
        except ApiError as e:
            if e.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
                "spec": self._spec(now, 0),
            }
            try:
                await self.kube.create(self.path, body)
            except ApiError as e2:
                if e2.status == 409:
                    return False  # someone else created it first
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        duration = timedelta(seconds=float(spec.get("leaseDurationSeconds") or self.cfg.lease_duration))
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder and holder != self.cfg.identity and renewed is not None and now < renewed + duration:
            return False  # held by a live leader
        if holder == self.cfg.identity:
            new_spec = self._spec(now, transitions, spec.get("acquireTime"))
        else:
            new_spec = self._spec(now, transitions + 1)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {**lease["metadata"]},  # includes resourceVersion: a precondition
            "spec": new_spec,
        }
        try:
            await self.kube.request("PUT", f"{self.path}/{self.cfg.name}", body=body)
        except ApiError as e:
            if e.status == 409:
                return False
            raise
        if holder != self.cfg.identity:
            self.transitions = transitions + 1
            log.info("leader lease acquired", extra={"lease": self.cfg.name, "identity": self.cfg.identity})
        return True

    async def acquire(self) -> None:
        """Wait until we are the leader."""
        while True:
            started = asyncio.get_running_loop().time()
            try:
                if await self.try_acquire_or_renew():
                    self.valid_until = started + self.cfg.renew_deadline
                    self.is_leader.set()
                    return
            except ApiError as e:
                log.warning("leader election attempt failed", extra={"error": str(e)})
            await asyncio.sleep(self.cfg.retry_period)

    async def keep(self) -> None:
        """Renew until the Lease is no longer proven (no successful renewal for ``renew_deadline``); then set
        ``lost`` and return. A renewal never runs past that point: it is cut off when the proof runs out."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(self.cfg.retry_period, max(0.0, self.remaining())))
            started = loop.time()
            try:
                ok = await asyncio.wait_for(self.try_acquire_or_renew(), timeout=max(0.001, self.remaining()))
            except (ApiError, TimeoutError) as e:
                log.warning("lease renewal failed", extra={"error": str(e) or type(e).__name__})
                ok = False
            if ok:
                self.valid_until = started + self.cfg.renew_deadline
            elif self.remaining() <= 0:
                log.error("leader lease lost", extra={"lease": self.cfg.name})
                self.is_leader.clear()
                self.lost.set()
                return

    async def release(self) -> None:
        """Give the Lease up (clean shutdown), so a standby does not wait for it to expire."""
        if not self.is_leader.is_set():
            return
        try:
            lease = await self.kube.get(f"{self.path}/{self.cfg.name}")
            if (lease.get("spec") or {}).get("holderIdentity") != self.cfg.identity:
                return
            spec = dict(lease["spec"])
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            spec["renewTime"] = rfc3339_micro(self.clock() - timedelta(seconds=self.cfg.lease_duration))
            await self.kube.request("PUT", f"{self.path}/{self.cfg.name}", body={**lease, "spec": spec})
            log.info("leader lease released", extra={"lease": self.cfg.name})
        except ApiError as e:
            log.warning("could not release the lease", extra={"error": str(e)})
        finally:
            self.is_leader.clear()
