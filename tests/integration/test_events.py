"""The EventRecorder against a real API server: series folding and the write budget."""

from __future__ import annotations

import asyncio
import time

from jobtrigger.kube.client import KubeClient
from jobtrigger.kube.events import EventRecorder
from tests.integration.conftest import create_cm, wait_for
from tests.integration.events import events_of


async def _counting(kube: KubeClient) -> tuple[KubeClient, list[str]]:
    """The same client, with the Event writes it sends recorded (verb + resource kind)."""
    sent: list[str] = []
    kube.on_request = lambda verb, kind, status: (
        sent.append(f"{verb} {kind}") if kind == "events" and verb in ("POST", "PATCH") else None
    )
    return kube, sent


async def test_occurrences_over_the_budget_fold_into_one_event_with_their_count(
    kubeconfig: str, namespace: str
) -> None:
    kube, sent = await _counting(await KubeClient.from_config(kubeconfig))
    try:
        cm = await create_cm(kube, namespace, "target", {})
        rec = EventRecorder(kube, qps=1.0, burst=1)
        t0 = time.monotonic()
        for i in range(50):
            await rec.emit(cm, "Normal", "JobCreated", f"Created Job j{i}")
        await rec.emit(cm, "Warning", "Other", "a warning is its own series")

        async def folded() -> list[dict[str, object]] | None:
            got = await events_of(kube, namespace, "target", "JobCreated")
            return got if got and got[0].get("count") == 50 else None

        got = await wait_for(folded, "one JobCreated Event counting all 50", timeout=20)
        assert len(got) == 1 and got[0]["message"] == "Created Job j49"  # the latest message
        assert (await events_of(kube, namespace, "target", "Other"))[0]["type"] == "Warning"
        # 50 + 1 occurrences within ~2 s at 1 write/s (burst 1): a handful of writes, not 51
        elapsed = time.monotonic() - t0
        assert len(sent) <= 2 + elapsed * 1.0 + 1, (sent, elapsed)
        assert rec.folded >= 40
        await rec.close()
    finally:
        await kube.close()


async def test_within_the_budget_every_occurrence_is_written_at_once(kubeconfig: str, namespace: str) -> None:
    kube, sent = await _counting(await KubeClient.from_config(kubeconfig))
    try:
        cm = await create_cm(kube, namespace, "target", {})
        rec = EventRecorder(kube)  # defaults: 5/s, burst 25
        for i in range(3):
            await rec.emit(cm, "Normal", "JobCreated", f"Created Job j{i}")
            await asyncio.sleep(0.3)  # the writer catches up in between

        async def counted() -> list[dict[str, object]] | None:
            got = await events_of(kube, namespace, "target", "JobCreated")
            return got if got and got[0].get("count") == 3 else None

        await wait_for(counted, "JobCreated x3")
        assert sent == ["POST events", "PATCH events", "PATCH events"]  # one write per occurrence, none folded
        assert rec.folded == 0
        await rec.close()
    finally:
        await kube.close()
