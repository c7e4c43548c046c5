"""Kubernetes Events on JobTriggers (what ``kubectl describe jt`` shows).

core/v1 Events are used because every supported server (1.20 and current) serves them and ``kubectl describe``
reads them. Repeats of the same (object, reason, message) within a process are folded into one Event whose count
goes up, as client-go's recorder does, so a JobTrigger stuck on an error does not flood the namespace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from jobtrigger.kube.client import ApiError, KubeClient, is_namespace_terminating

log = logging.getLogger(__name__)

COMPONENT = "jobtrigger"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Records Events in the background: a sync never waits for (or fails because of) an Event."""

    def __init__(self, kube: KubeClient, *, host: str = "", max_pending: int = 1000):
        self.kube = kube
        self.host = host
        self.max_pending = max_pending
        self.dropped = 0
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}  # key -> (event name, count)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # one write at a time keeps counts right and the API load flat

    async def emit(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Queue an Event for writing and return at once (dropped, and counted, if too many are pending)."""
        if len(self._tasks) >= self.max_pending:
            self.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self.write(obj, event_type, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for pending Events (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def write(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        async with self._lock:
            await self._write(obj, event_type, reason, message)

    async def _write(self, obj: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        """Record an Event; never raises (an Event is not worth failing a sync for)."""
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), event_type, reason, message)
        ts = now_rfc3339()
        try:
            if key in self._seen:
                name, count = self._seen[key]
                try:
                    await self.kube.merge_patch(
                        f"/api/v1/namespaces/{ns}/events/{name}", {"count": count + 1, "lastTimestamp": ts}
                    )
                    self._seen[key] = (name, count + 1)
                    return
                except ApiError as e:
                    if e.status != 404:
                        raise
                    del self._seen[key]  # the Event expired (TTL): record a new one
            name = f"{meta.get('name', 'unknown')}.{int(time.time() * 1e9):x}"
            body = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": meta.get("name"),
                    "namespace": ns,
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": reason,
                "message": message[:1024],
                "type": event_type,
                "source": {"component": COMPONENT, "host": self.host},
                "reportingComponent": COMPONENT,
                "reportingInstance": self.host or COMPONENT,
                "firstTimestamp": ts,
                "lastTimestamp": ts,
                "count": 1,
            }
            await self.kube.create(f"/api/v1/namespaces/{ns}/events", body)
            if len(self._seen) > 10000:
                self._seen.clear()
            self._seen[key] = (name, 1)
        except ApiError as e:
            # a create answering 404 or NamespaceTerminating: the namespace, and the object with it, is going
            if not (is_namespace_terminating(e) or e.status == 404):
                log.warning("could not record event", extra={"reason": reason, "error": str(e)})
