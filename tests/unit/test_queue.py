"""Tests for jobtrigger.reactor.queue.WorkQueue (client-go workqueue semantics)."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jobtrigger.reactor.queue import QueueShutDown, WorkQueue


async def _wait_for(predicate: Callable[[], bool], within: float = 1.0) -> None:
    """Poll ``predicate`` every millisecond (roughly) until it holds; fail after ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    for _ in itertools.count():
        if predicate():
            return
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


async def _get_soon(q: WorkQueue[str], within: float = 1.0) -> str:
    async with asyncio.timeout(within):
        return await q.get()


# ---------------------------------------------------------------------- basic queue


async def test_repeated_adds_coalesce() -> None:
    q: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    q.add("a")
    assert len(q) == 2
    assert q.depth() == 2
    assert await q.get() == "a"
    assert await q.get() == "b"
    assert len(q) == 0
    assert q.processing_count() == 2
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()


async def test_fifo_order() -> None:
    q: WorkQueue[int] = WorkQueue()
    for i in [3, 1, 2, 1, 3]:
        q.add(i)
    assert [q.get_nowait() for _ in range(3)] == [3, 1, 2]


async def test_add_during_processing_requeues_once_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    # Re-added (several times) while processing: not handed out yet.
    q.add("a")
    q.add("a")
    assert len(q) == 0
    assert q.processing_count() == 1
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    q.done("a")
    assert len(q) == 1
    assert q.processing_count() == 0
    assert await q.get() == "a"
    q.done("a")
    # Exactly once: nothing left afterwards.
    assert len(q) == 0
    assert q.processing_count() == 0


async def test_done_without_readd_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get_nowait() == "a"
    q.done("a")
    q.done("a")  # unknown / already done: no-op
    q.done("never-seen")
    assert len(q) == 0
    assert q.processing_count() == 0


async def test_get_waits_for_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    task = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not task.done()
    q.add("x")
    assert await asyncio.wait_for(task, 1.0) == "x"
    assert q.processing_count() == 1


async def test_cancelled_getter_does_not_swallow_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)  # both are now waiting
    q.add("k")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it gets to run
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1.0) == "k"


async def test_workers_never_share_a_key_and_process_after_last_add() -> None:
    rng = random.Random(1234)
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    events = 0
    last_add: dict[int, int] = {}
    last_start: dict[int, int] = {}
    overlaps: list[int] = []

    async def worker() -> None:
        nonlocal events
        while True:
            try:
                key = await q.get()
            except QueueShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            events += 1
            last_start[key] = events
            await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.001]))
            active.discard(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for _ in range(600):
        key = rng.randrange(12)
        q.add(key)
        events += 1
        last_add[key] = events
        if rng.random() < 0.3:
            await asyncio.sleep(rng.choice([0, 0.0005]))
    await _wait_for(lambda: q.depth() == 0 and q.processing_count() == 0, within=2.0)
    q.shutdown()
    await asyncio.wait_for(asyncio.gather(*workers), 1.0)

    assert overlaps == []
    assert set(last_start) == set(last_add)
    stale = {k: (last_add[k], last_start[k]) for k in last_add if last_start[k] <= last_add[k]}
    assert stale == {}


# ---------------------------------------------------------------------- delayed adds


async def test_add_after_orders_by_deadline() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("late", 0.04)
    q.add_after("early", 0.01)
    assert q.delayed_count() == 2
    assert len(q) == 0
    assert await _get_soon(q) == "early"
    assert loop.time() - start >= 0.009
    assert await _get_soon(q) == "late"
    assert loop.time() - start >= 0.039
    assert q.delayed_count() == 0


async def test_add_after_non_positive_delay_adds_now() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0)
    q.add_after("b", -1.0)
    assert len(q) == 2
    assert q.delayed_count() == 0


async def test_add_after_earlier_deadline_replaces_later() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("k", 0.08)
    q.add_after("k", 0.01)  # earlier: replaces the 0.08 s deadline
    q.add_after("marker", 0.04)
    assert q.delayed_count() == 2
    # Order, not wall-clock bounds, shows "k" fired at its earlier deadline.
    assert await _get_soon(q) == "k"
    assert loop.time() - start >= 0.009
    q.done("k")
    assert await _get_soon(q) == "marker"
    assert q.delayed_count() == 0
    # The superseded 0.08 s entry is gone, not merely postponed: it never re-adds "k".
    await asyncio.sleep(max(0.0, start + 0.1 - loop.time()))
    assert len(q) == 0


async def test_earlier_deadline_rearms_the_timer() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("slow", 1.0)
    q.add_after("fast", 0.01)
    # Must not wait for the timer armed for "slow" (generous bound for loaded machines).
    assert await _get_soon(q, within=0.5) == "fast"
    assert q.delayed_count() == 1
    q.shutdown()


async def test_superseded_entry_due_in_same_batch_is_skipped() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("marker", 0.01)
    q.add_after("k", 0.02)
    q.add_after("k", 0.005)  # supersedes the 0.02 s entry, which stays in the heap as stale
    assert await _get_soon(q) == "k"
    q.done("k")
    # Block the loop past both remaining deadlines so they are popped by one timer callback.
    time.sleep(0.03)  # noqa: ASYNC251 -- deliberately stall the event loop
    assert await _get_soon(q) == "marker"
    assert len(q) == 0  # the stale "k" entry did not re-add it
    assert q.delayed_count() == 0


async def test_add_after_keeps_earlier_deadline() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("k", 0.01)
    q.add_after("k", 0.05)  # later: ignored
    assert q.delayed_count() == 1
    assert await _get_soon(q) == "k"
    assert loop.time() - start < 0.045
    q.done("k")
    assert q.delayed_count() == 0
    await asyncio.sleep(0.07)
    assert len(q) == 0  # no second add at 0.05 s


async def test_add_after_coalesces_with_waiting_key() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("k")
    q.add_after("k", 0.01)
    await asyncio.sleep(0.03)
    assert len(q) == 1
    assert q.get_nowait() == "k"


async def test_many_delayed_keys_use_a_single_timer_and_no_tasks() -> None:
    q: WorkQueue[int] = WorkQueue()
    loop = asyncio.get_running_loop()
    scheduled = getattr(loop, "_scheduled", None)

    def live_timers() -> int:
        assert scheduled is not None
        return sum(1 for h in scheduled if not h.cancelled())

    tasks_before = len(asyncio.all_tasks())
    timers_before = live_timers() if scheduled is not None else 0
    for i in range(5000):
        q.add_after(i, 60.0 + (i % 97) * 0.1)
    for i in range(5000):  # re-scheduling later deadlines is a no-op
        q.add_after(i, 120.0)
    assert q.delayed_count() == 5000
    assert len(asyncio.all_tasks()) == tasks_before
    if scheduled is not None:
        assert live_timers() - timers_before == 1
    q.shutdown()
    assert q.delayed_count() == 0
    if scheduled is not None:
        assert live_timers() == timers_before


async def test_rescheduling_earlier_many_times_keeps_heap_bounded() -> None:
    q: WorkQueue[int] = WorkQueue()
    for step in range(200):
        for i in range(10):
            q.add_after(i, 100.0 - step * 0.1)
    assert q.delayed_count() == 10
    assert len(q._heap) <= 2 * 10 + 64
    q.shutdown()


async def test_custom_clock_is_used_for_deadlines() -> None:
    now = [1000.0]
    q: WorkQueue[str] = WorkQueue(clock=lambda: now[0])
    q.add_after("k", 0.01)
    await asyncio.sleep(0.04)
    assert len(q) == 0  # the injected clock has not advanced
    now[0] += 0.01
    assert await _get_soon(q) == "k"
    q.shutdown()


# ---------------------------------------------------------------------- rate limiting


async def test_rate_limited_backoff_grows_and_caps() -> None:
    q: WorkQueue[str] = WorkQueue(max_delay=0.04)
    delays = [q.add_rate_limited("k") for _ in range(6)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.04, 0.04])
    assert q.num_requeues("k") == 6
    assert q.num_requeues("other") == 0
    # Independent per key.
    assert q.add_rate_limited("other") == pytest.approx(0.005)
    q.shutdown()


async def test_rate_limited_backoff_default_cap_and_no_overflow() -> None:
    q: WorkQueue[str] = WorkQueue()
    delays = [q.add_rate_limited("k") for _ in range(3000)]
    assert delays[13] == pytest.approx(0.005 * 2**13)  # 40.96 s, still below the cap
    assert delays[14] == 60.0
    assert delays[-1] == 60.0
    q.shutdown()


async def test_forget_resets_backoff() -> None:
    q: WorkQueue[str] = WorkQueue()
    for _ in range(4):
        q.add_rate_limited("k")
    assert q.num_requeues("k") == 4
    q.forget("k")
    assert q.num_requeues("k") == 0
    assert q.add_rate_limited("k") == pytest.approx(0.005)
    q.forget("unknown")  # no-op
    q.shutdown()


async def test_rate_limited_key_is_added_after_backoff() -> None:
    q: WorkQueue[str] = WorkQueue(base_delay=0.02)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert q.add_rate_limited("k") == pytest.approx(0.02)
    assert len(q) == 0
    assert await _get_soon(q) == "k"
    assert loop.time() - start >= 0.019


def test_constructor_validates_delays() -> None:
    with pytest.raises(ValueError):
        WorkQueue(base_delay=0)
    with pytest.raises(ValueError):
        WorkQueue(base_delay=1.0, max_delay=0.5)


# ---------------------------------------------------------------------- shutdown


async def test_shutdown_wakes_all_getters() -> None:
    q: WorkQueue[str] = WorkQueue()
    getters = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in getters)
    q.shutdown()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 1.0)
    assert all(isinstance(r, QueueShutDown) for r in results)
    assert q.shutting_down


async def test_after_shutdown_adds_are_ignored_and_get_raises() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("waiting")
    q.add("busy")
    q.add_after("later", 0.01)
    assert q.get_nowait() == "waiting"
    q.add("waiting")  # dirty while processing
    q.shutdown()
    q.shutdown()  # idempotent
    assert len(q) == 0
    assert q.delayed_count() == 0
    q.add("new")
    q.add_after("new", 0.001)
    q.add_rate_limited("new")
    assert len(q) == 0
    assert q.delayed_count() == 0
    q.done("waiting")  # allowed, but does not re-queue
    assert len(q) == 0
    assert q.processing_count() == 0
    with pytest.raises(QueueShutDown):
        await q.get()
    with pytest.raises(QueueShutDown):
        q.get_nowait()
    await asyncio.sleep(0.02)
    assert len(q) == 0  # the delayed add was cancelled


async def test_drain_and_shutdown_finishes_pending_work() -> None:
    q: WorkQueue[int] = WorkQueue()
    processed: list[int] = []

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except QueueShutDown:
                return
            await asyncio.sleep(0.002)
            processed.append(key)
            q.done(key)

    for i in range(5):
        q.add(i)
    q.add_after(99, 0.001)  # dropped by the drain
    task = asyncio.create_task(worker())
    assert await q.drain_and_shutdown(timeout=1.0) is True
    assert processed == [0, 1, 2, 3, 4]
    assert q.shutting_down
    await asyncio.wait_for(task, 1.0)


async def test_drain_and_shutdown_times_out() -> None:
    q: WorkQueue[int] = WorkQueue()
    q.add(1)
    assert q.get_nowait() == 1  # never done
    assert await q.drain_and_shutdown(timeout=0.02) is False
    assert q.shutting_down


# ---------------------------------------------------------------------- metrics hook


async def test_depth_callback_values() -> None:
    seen: list[int] = []
    q: WorkQueue[str] = WorkQueue(on_depth_change=seen.append)
    q.add("a")
    q.add("a")  # coalesced: no change
    q.add("b")
    assert seen == [1, 2]
    assert q.get_nowait() == "a"
    assert seen == [1, 2, 1]
    q.add("a")  # processing: depth unchanged
    assert seen == [1, 2, 1]
    q.done("a")
    assert seen == [1, 2, 1, 2]
    q.add_after("c", 0.005)
    await _wait_for(lambda: len(q) == 3)
    assert seen == [1, 2, 1, 2, 3]
    q.shutdown()
    assert seen == [1, 2, 1, 2, 3, 0]


# ---------------------------------------------------------------------- model-based property test


class QueueModel(RuleBasedStateMachine):
    """Checks add/get/done against an independent per-key state model.

    Each key is in one of: idle, waiting, processing, processing+readded. The FIFO order of
    waiting keys is tracked separately.
    """

    keys = st.sampled_from("abcde")

    def __init__(self) -> None:
        super().__init__()
        self.depth_log: list[int] = []
        self.q: WorkQueue[str] = WorkQueue(on_depth_change=self.depth_log.append)
        self.state: dict[str, str] = dict.fromkeys("abcde", "idle")
        self.order: deque[str] = deque()

    @rule(key=keys)
    def add(self, key: str) -> None:
        self.q.add(key)
        s = self.state[key]
        if s == "idle":
            self.state[key] = "waiting"
            self.order.append(key)
        elif s == "processing":
            self.state[key] = "processing+readded"

    @rule()
    def get(self) -> None:
        if not self.order:
            with pytest.raises(asyncio.QueueEmpty):
                self.q.get_nowait()
            return
        expected = self.order.popleft()
        assert self.q.get_nowait() == expected
        assert self.state[expected] == "waiting"
        self.state[expected] = "processing"

    @precondition(lambda self: any(s.startswith("processing") for s in self.state.values()))
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        busy = sorted(k for k, s in self.state.items() if s.startswith("processing"))
        key = data.draw(st.sampled_from(busy))
        self.q.done(key)
        if self.state[key] == "processing+readded":
            self.state[key] = "waiting"
            self.order.append(key)
        else:
            self.state[key] = "idle"

    @rule(key=keys)
    def done_unknown(self, key: str) -> None:
        if not self.state[key].startswith("processing"):
            self.q.done(key)  # must be a no-op

    @invariant()
    def counts_match(self) -> None:
        assert self.q.depth() == len(self.order)
        assert len(self.q) == sum(1 for s in self.state.values() if s == "waiting")
        assert self.q.processing_count() == sum(1 for s in self.state.values() if s.startswith("processing"))
        if self.depth_log:
            assert self.depth_log[-1] == len(self.order)


QueueModel.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_queue_model = QueueModel.TestCase


# ---------------------------------------------------------------------- fairness between partitions


async def test_partitions_are_served_in_turn_so_a_flood_does_not_starve_a_quiet_one() -> None:
    """With a partition (the controller's: the namespace), a key of a quiet partition waits behind at most one key
    of each busy partition, not behind the whole flood; within a partition the order stays FIFO."""
    q: WorkQueue[tuple[str, str]] = WorkQueue(partition=lambda k: k[0])
    for i in range(1000):
        q.add(("noisy", f"t{i}"))
    q.add(("quiet", "t"))
    first = [await q.get() for _ in range(3)]
    assert first == [("noisy", "t0"), ("quiet", "t"), ("noisy", "t1")]
    rest = [await q.get() for _ in range(len(q))]
    assert rest == [("noisy", f"t{i}") for i in range(2, 1000)]


async def test_without_a_partition_the_queue_is_one_fifo() -> None:
    q: WorkQueue[tuple[str, str]] = WorkQueue()
    for i in range(5):
        q.add(("noisy", f"t{i}"))
    q.add(("quiet", "t"))
    assert [await q.get() for _ in range(6)][-1] == ("quiet", "t")


async def test_a_requeued_key_goes_to_the_back_of_its_partition() -> None:
    q: WorkQueue[tuple[str, str]] = WorkQueue(partition=lambda k: k[0])
    q.add(("a", "1"))
    q.add(("a", "2"))
    q.add(("b", "1"))
    k = await q.get()
    assert k == ("a", "1")
    q.add(k)  # changed while processing: dirty, re-queued by done()
    q.done(k)
    assert [await q.get() for _ in range(3)] == [("b", "1"), ("a", "2"), ("a", "1")]
    assert len(q) == 0 and q.depth() == 0
