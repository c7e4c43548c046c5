"""Kubernetes Events on JobTriggers (what ``kubectl describe jt`` shows), folded and rate-limited.

core/v1 Events are used because every supported server (1.20 and current) serves them and ``kubectl describe``
reads them. Like client-go's recorder (its aggregator and spam filter) and the events.k8s.io series:

- **Correlation.** Events about the same object with the same type and reason form a *series*: the first one is
  created, later ones within :data:`SERIES_WINDOW` of its start are folded into it (``count`` goes up, ``message``
  and ``lastTimestamp`` are the latest), so ``kubectl describe`` shows ``JobCreated … (x12 over 3m)  Created Job
  <latest>``. After the window a new Event starts the next series.
- **A write budget.** Writes (creates and count updates) draw from one token bucket per process (``qps``,
  ``burst``; client-go's default client allows 5 requests/s, its spam filter a burst of 25). Within the budget
  every Event is written at once, as before. Over it, updates wait and fold: one write later carries all the
  occurrences of a series meanwhile, so at 100 Jobs/s the Events cost ~``qps`` requests/s, not 100 (the Job and
  the status write are the per-Job requests; docs/benchmarks.md measures it). Warnings are written before Normal
  updates when both wait.

Events are best effort: a sync never waits for one and never fails because of one; nothing here is part of
exactly-once (the Job name and the status are).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobtrigger.kube.client import ApiError, KubeClient, is_namespace_terminating

log = logging.getLogger(__name__)

COMPONENT = "jobtrigger"
#: a series (one Event whose count goes up) lasts this long from its first occurrence; client-go's aggregator
#: uses the same 10 minutes
SERIES_WINDOW = 600.0
#: series remembered per process (the oldest are forgotten first; a forgotten one starts a new Event)
MAX_SERIES = 10000

SeriesKey = tuple[str, str, str]  # (object uid, type, reason)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Series:
    involved: dict[str, Any]
    namespace: str
    event_type: str
    reason: str
    message: str
    started: float  # monotonic: the first occurrence
    first_ts: str
    last_ts: str
    count: int = 1  # occurrences so far
    written: int = 0  # occurrences the server has (0: the Event does not exist yet)
    name: str = ""  # the Event's name once created


class TokenBucket:
    """``rate`` tokens per second up to ``burst`` (monotonic clock)."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def _fill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> float:
        """Take a token; returns 0, or the seconds until one is available (nothing taken then)."""
        if self.rate <= 0:
            return 0.0  # no limit
        self._fill()
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class EventRecorder:
    """Records Events in the background through one writer task: correlation into series, a write budget."""

    def __init__(self, kube: KubeClient, *, host: str = "", qps: float = 5.0, burst: int = 25, max_pending: int = 1000):
        self.kube = kube
        self.host = host
        self.max_pending = max_pending
        self.bucket = TokenBucket(qps, burst)
        self.dropped = 0  # occurrences not recorded: too many series waiting
        self.folded = 0  # occurrences that did not need a write of their own
        self._series: OrderedDict[SeriesKey, _Series] = OrderedDict()
        self._pending: OrderedDict[SeriesKey, None] = OrderedDict()  # series with occurrences the server lacks
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one write at a time: a series is never written twice concurrently

    async def emit(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record an occurrence and return at once; the writer task writes it within the budget."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("uid", "")), event_type, reason)
        now, ts = time.monotonic(), now_rfc3339()
        series = self._series.get(key)
        if series is not None and (now - series.started > SERIES_WINDOW and key not in self._pending):
            series = None  # the window is over (and nothing of it waits): the next occurrence starts a new Event
        if series is None:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                return
            ns = meta.get("namespace") or "default"
            series = _Series(
                involved={
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": meta.get("name"),
                    "namespace": ns,
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                namespace=ns,
                event_type=event_type,
                reason=reason,
                message=message[:1024],
                started=now,
                first_ts=ts,
                last_ts=ts,
            )
            self._series[key] = series
            self._series.move_to_end(key)
            while len(self._series) > MAX_SERIES:
                old = next(iter(self._series))
                self._pending.pop(old, None)
                del self._series[old]
        else:
            series.count += 1
            series.message = message[:1024]
            series.last_ts = ts
            if key in self._pending:
                self.folded += 1  # the write already waiting will carry this occurrence too
        if key not in self._pending:
            self._pending[key] = None
            if event_type == "Warning":
                self._pending.move_to_end(key, last=False)
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def flush(self) -> None:
        """Write everything pending now, ignoring the budget (shutdown, tests)."""
        while self._pending:
            await self._write_one(next(iter(self._pending)))

    async def close(self) -> None:
        """Flush, then end the writer task."""
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def _write_loop(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait = self.bucket.take()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self._write_one(next(iter(self._pending)))

    async def _write_one(self, key: SeriesKey) -> None:
        async with self._lock:
            series = self._series.get(key)
            if self._pending.pop(key, 0) is None and series is not None and series.count > series.written:
                await self._write(series)

    async def _write(self, s: _Series) -> None:
        """Create the series' Event or update its count; never raises (an Event is not worth failing for)."""
        count = s.count
        try:
            if s.name:
                try:
                    await self.kube.merge_patch(
                        f"/api/v1/namespaces/{s.namespace}/events/{s.name}",
                        {"count": count, "lastTimestamp": s.last_ts, "message": s.message},
                    )
                    s.written = count
                    return
                except ApiError as e:
                    if e.status != 404:
                        raise
                    s.name = ""  # the Event expired (TTL): record a new one
            name = f"{s.involved.get('name') or 'unknown'}.{time.time_ns():x}"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": s.namespace},
                "involvedObject": s.involved,
                "reason": s.reason,
                "message": s.message,
                "type": s.event_type,
                "source": {"component": COMPONENT, "host": self.host},
                "reportingComponent": COMPONENT,
                "reportingInstance": self.host or COMPONENT,
                "firstTimestamp": s.first_ts,
                "lastTimestamp": s.last_ts,
                "count": count,
            }
            await self.kube.create(f"/api/v1/namespaces/{s.namespace}/events", body)
            s.name, s.written = name, count
        except ApiError as e:
            # a create answering 404 or NamespaceTerminating: the namespace, and the object with it, is going
            s.written = count  # not retried: best effort, and a retry loop must not hold the writer
            if not (is_namespace_terminating(e) or e.status == 404):
                log.warning("could not record event", extra={"reason": s.reason, "error": str(e)})
