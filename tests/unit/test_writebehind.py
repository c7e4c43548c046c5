"""The write-behind budget and flusher (reactor/writebehind.py) and which JobTriggers may defer (sync/core.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from jobtrigger.api.models import JobTrigger
from jobtrigger.reactor.sync.core import deferrable
from jobtrigger.reactor.writebehind import WriteBehind


def test_writes_happen_at_once_within_the_budget_and_wait_over_it() -> None:
    wb = WriteBehind(qps=0.001, burst=2)
    a, b, c = ("ns", "a"), ("ns", "b"), ("ns", "c")
    assert wb.defer(a) is False and wb.defer(b) is False  # the burst: written at once
    assert wb.defer(c) is True and wb.behind(c)  # spent: c waits
    assert wb.defer(c) is True  # and keeps merging into one write
    wb.written(c)
    assert not wb.behind(c) and wb.pending() == []


def test_no_budget_means_always_at_once() -> None:
    wb = WriteBehind(qps=0, burst=0)
    assert not any(wb.defer(("ns", str(i))) for i in range(100))


async def test_the_flusher_hands_out_the_oldest_first_and_that_sync_must_write() -> None:
    wb = WriteBehind(qps=1000, burst=1)
    wb.bucket.tokens = 0
    keys = [("ns", str(i)) for i in range(3)]
    for k in keys:
        wb.bucket.tokens = 0
        assert wb.defer(k)
    handed: list[tuple[str, str]] = []
    task = asyncio.get_running_loop().create_task(wb.run(handed.append))
    try:
        for _ in range(100):
            if len(handed) == 3:
                break
            await asyncio.sleep(0.01)
        assert handed == keys
        assert all(wb.behind(k) for k in keys)  # still behind until the sync has written
        assert wb.defer(keys[0]) is False  # the handed-out sync writes, whatever the budget
        wb.written(keys[0])
        assert not wb.behind(keys[0])
    finally:
        task.cancel()


def _jt(**spec: Any) -> JobTrigger:
    template: dict[str, Any] = {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    template.update(spec.pop("job", {}))
    return JobTrigger.model_validate(
        {"metadata": {"name": "t"}, "spec": {"triggers": {"manual": {}}, "jobTemplate": {"spec": template}, **spec}}
    )


def test_jobtriggers_whose_jobs_may_vanish_on_their_own_never_defer() -> None:
    assert deferrable(_jt())
    assert not deferrable(_jt(job={"ttlSecondsAfterFinished": 0}))
    assert not deferrable(_jt(successfulJobsHistoryLimit=0))
    assert not deferrable(_jt(failedJobsHistoryLimit=0))
