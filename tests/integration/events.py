"""Waiting for Events: the controller writes them in the background (EventRecorder), after the sync that decided
them, so a test must poll for an Event, never read the Event list once and assert."""

from __future__ import annotations

from typing import Any

from jobtrigger.kube.client import KubeClient
from tests.integration.conftest import wait_for


async def events_of(kube: KubeClient, ns: str, name: str, reason: str | None = None) -> list[dict[str, Any]]:
    got = await kube.get(f"/api/v1/namespaces/{ns}/events", fieldSelector=f"involvedObject.name={name}")
    return [e for e in got.get("items") or [] if reason is None or e.get("reason") == reason]


async def wait_event(
    kube: KubeClient, ns: str, name: str, reason: str, *, type_: str | None = None, count: int = 1, timeout: float = 20
) -> list[dict[str, Any]]:
    """The Events with ``reason`` (and ``type_``) about ``name``, once there are at least ``count`` of them
    (an aggregated Event counts as its ``count``)."""

    async def probe() -> list[dict[str, Any]] | None:
        found = [e for e in await events_of(kube, ns, name, reason) if type_ is None or e.get("type") == type_]
        return found if sum(int(e.get("count") or 1) for e in found) >= count else None

    return await wait_for(probe, f"{count} {reason} Event(s) for {name}", timeout)
