"""An asyncio work queue with the semantics of client-go's ``util/workqueue``.

This is the one place where "something changed" turns into "reconcile this key". It combines
the three layers of client-go's workqueue (``queue.go``, ``delaying_queue.go`` and
``rate_limiting_queue.go``) in a single class, :class:`WorkQueue`.

Design, and why:

* **Coalescing.** A key is either *dirty* (needs work) or not. Adding a key that is already
  waiting does nothing, so a burst of watch events for one object becomes a single reconcile.
  Reconcilers read the current state from the cache anyway, so nothing is lost by dropping the
  duplicates.

* **One worker per key.** A key handed out by :meth:`WorkQueue.get` is *processing* until the
  worker calls :meth:`WorkQueue.done`. Adding it in the meantime only marks it dirty; it goes back
  to the end of the FIFO when ``done`` is called. So two workers never reconcile the same object
  at the same time (no locks in reconcilers), and a change that arrives mid-reconcile is never
  lost: the key is processed once more, after the change.

* **Delayed re-adds instead of sleeping tasks.** Timers, cooldowns, "check again in 30 s" and
  error backoff are all expressed as :meth:`WorkQueue.add_after`. Pending delayed adds live in a
  heap with one entry per key (the earliest deadline wins) and a *single* ``loop.call_at`` timer
  handle armed for the earliest deadline. Thousands of delayed keys therefore cost a dict entry
  and a heap entry each, and nothing at all while idle -- as opposed to one sleeping task per
  object, which also has to be found and cancelled when the object goes away.

* **Per-key exponential backoff.** :meth:`WorkQueue.add_rate_limited` re-adds a failing key
  after ``base_delay * 2**failures`` seconds (capped at ``max_delay``);
  :meth:`WorkQueue.forget` resets the count once the key reconciles successfully.

* **Fair between partitions.** With a ``partition`` function (the controller uses the namespace), waiting keys
  are kept in one FIFO per partition and handed out round robin: a namespace that floods the queue with thousands
  of keys delays another namespace's key by at most one key per busy namespace, not by the whole flood. Within a
  partition the order is FIFO as before; without one the queue is a single FIFO (client-go's behaviour).

* **Shutdown.** :meth:`WorkQueue.shutdown` makes every pending and future :meth:`WorkQueue.get`
  raise :class:`QueueShutDown`, drops waiting and delayed keys, and ignores further adds. Unlike
  client-go, keys still waiting are *not* handed out after shutdown (a stopping controller should
  not start new work); use :meth:`WorkQueue.drain_and_shutdown` to finish them first.

All methods except :meth:`WorkQueue.get` and :meth:`WorkQueue.drain_and_shutdown` are plain
synchronous calls; they must be called from the thread running the event loop. The event loop is
looked up lazily, so the queue may be constructed outside of a running loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["QueueShutDown", "WorkQueue"]

K = TypeVar("K", bound=Hashable)

# 2**64 * 5 ms is astronomically larger than any sensible max_delay; cap the exponent so the
# float computation can never overflow however often a key fails.
_MAX_BACKOFF_EXPONENT = 64


class _FairFifo(Generic[K]):
    """FIFOs per partition, served in turn; the deque operations the queue uses (append, popleft, len, clear)."""

    def __init__(self, partition: Callable[[K], Hashable] | None) -> None:
        self._partition = partition
        self._fifos: dict[Hashable, deque[K]] = {}
        self._turns: deque[Hashable] = deque()  # partitions with waiting keys, next one first
        self._len = 0

    def append(self, key: K) -> None:
        p = self._partition(key) if self._partition is not None else None
        fifo = self._fifos.get(p)
        if fifo is None:
            fifo = self._fifos[p] = deque()
            self._turns.append(p)
        fifo.append(key)
        self._len += 1

    def popleft(self) -> K:
        p = self._turns.popleft()  # IndexError when empty, like deque
        fifo = self._fifos[p]
        key = fifo.popleft()
        self._len -= 1
        if fifo:
            self._turns.append(p)  # its next key waits for the other partitions' turn
        else:
            del self._fifos[p]
        return key

    def clear(self) -> None:
        self._fifos.clear()
        self._turns.clear()
        self._len = 0

    def __len__(self) -> int:
        return self._len


class QueueShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue has been shut down."""


class WorkQueue(Generic[K]):
    """A coalescing FIFO of keys with delayed and rate-limited adds (see the module docstring).

    Typical worker loop::

        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            try:
                await reconcile(key)
            except Exception:
                queue.add_rate_limited(key)
            else:
                queue.forget(key)
            finally:
                queue.done(key)
    """

    def __init__(
        self,
        *,
        base_delay: float = 0.005,
        max_delay: float = 60.0,
        on_depth_change: Callable[[int], None] | None = None,
        clock: Callable[[], float] | None = None,
        partition: Callable[[K], Hashable] | None = None,
    ) -> None:
        if base_delay <= 0:
            raise ValueError("base_delay must be > 0")
        if max_delay < base_delay:
            raise ValueError("max_delay must be >= base_delay")
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._on_depth_change = on_depth_change
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None

        # queue.go: FIFO of keys waiting to be handed out, the set of keys that need processing
        # (waiting ones plus processing ones re-added meanwhile) and the keys being processed.
        self._queue: _FairFifo[K] = _FairFifo(partition)
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # Futures of get() callers blocked on an empty queue, oldest first.
        self._waiters: deque[asyncio.Future[None]] = deque()

        # delaying_queue.go: earliest pending deadline per key, plus a heap of
        # (deadline, seq, key) entries. Entries whose seq is no longer current are stale and
        # skipped lazily (a key re-scheduled earlier leaves its old entry behind).
        self._delayed: dict[K, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0

        # rate_limiting_queue.go: consecutive failures per key.
        self._failures: dict[K, int] = {}

        self._shutting_down = False
        self._draining = False
        # Resolved by drain_and_shutdown()'s wait once nothing is waiting or processing.
        self._drained: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ basic queue

    def add(self, key: K) -> None:
        """Mark ``key`` as needing processing.

        No-op if it is already waiting or the queue is shut down (or draining). If the key is
        being processed it is only marked dirty and re-queued by :meth:`done`.
        """
        if self._shutting_down or self._draining or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._depth_changed()
        self._wake_one()

    async def get(self) -> K:
        """Wait for a key and mark it as processing. Raises :class:`QueueShutDown`."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown
            waiter: asyncio.Future[None] = self._get_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # We may have been woken for a key and cancelled before running: pass the
                # wake-up on so the key is not left sitting in the queue with idle waiters.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                else:
                    self._remove_waiter(waiter)
                raise
        return self._pop()

    def get_nowait(self) -> K:
        """Like :meth:`get` but raises :class:`asyncio.QueueEmpty` instead of waiting."""
        if self._shutting_down:
            raise QueueShutDown
        if not self._queue:
            raise asyncio.QueueEmpty
        return self._pop()

    def done(self, key: K) -> None:
        """Mark processing of ``key`` as finished; re-queue it if it was added meanwhile."""
        if key not in self._processing:
            return
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._depth_changed()
            self._wake_one()
        self._maybe_drained()

    # ------------------------------------------------------------------ delayed adds

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (now if ``delay <= 0``).

        Only the earliest pending deadline per key is kept: scheduling a key that is already
        scheduled earlier is a no-op, scheduling it earlier moves its deadline forward.
        """
        if self._shutting_down or self._draining:
            return
        if delay <= 0:
            self.add(key)
            return
        deadline = self._now() + delay
        current = self._delayed.get(key)
        if current is not None and current[0] <= deadline:
            return
        seq = next(self._seq)
        self._delayed[key] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, key))
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._delayed):
            self._compact_heap()
        self._arm_timer()

    def _compact_heap(self) -> None:
        self._heap = [(d, s, k) for k, (d, s) in self._delayed.items()]
        heapq.heapify(self._heap)

    def _arm_timer(self) -> None:
        """Make sure the single timer handle fires at the earliest live deadline."""
        heap = self._heap
        while heap and self._delayed.get(heap[0][2], (0.0, -1))[1] != heap[0][1]:
            heapq.heappop(heap)  # stale entry
        if not heap:
            self._cancel_timer()
            return
        deadline = heap[0][0]
        if self._timer is not None:
            if self._timer_deadline <= deadline:
                return
            self._timer.cancel()
        loop = self._get_loop()
        if self._clock is None:
            self._timer = loop.call_at(deadline, self._on_timer)
        else:
            self._timer = loop.call_later(max(0.0, deadline - self._clock()), self._on_timer)
        self._timer_deadline = deadline

    def _on_timer(self) -> None:
        self._timer = None
        now = self._now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            current = self._delayed.get(key)
            if current is not None and current[1] == seq:
                del self._delayed[key]
                self.add(key)
        self._arm_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ rate limiting

    def add_rate_limited(self, key: K) -> float:
        """Add ``key`` after its per-key exponential backoff; returns the delay used.

        The delay is ``base_delay * 2**num_requeues(key)``, capped at ``max_delay``, and the
        failure count is incremented.
        """
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        exponent = min(failures, _MAX_BACKOFF_EXPONENT)
        delay = min(self._base_delay * 2.0**exponent, self._max_delay)
        self.add_after(key, delay)
        return delay

    def num_requeues(self, key: K) -> int:
        """How many times ``key`` went through :meth:`add_rate_limited` since it was forgotten."""
        return self._failures.get(key, 0)

    def processing(self) -> frozenset[K]:
        """The keys a worker holds right now."""
        return frozenset(self._processing)

    def forget(self, key: K) -> None:
        """Reset the backoff of ``key`` (call after a successful reconcile)."""
        self._failures.pop(key, None)

    # ------------------------------------------------------------------ introspection

    def __len__(self) -> int:
        return len(self._queue)

    def depth(self) -> int:
        """Number of keys waiting to be handed out (dirty and not processing)."""
        return len(self._queue)

    def processing_count(self) -> int:
        """Number of keys handed out by :meth:`get` and not yet :meth:`done`."""
        return len(self._processing)

    def delayed_count(self) -> int:
        """Number of keys with a pending delayed add."""
        return len(self._delayed)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Stop the queue: pending and future :meth:`get` calls raise :class:`QueueShutDown`.

        Waiting and delayed keys are dropped and later adds are ignored. Keys being processed
        may still be passed to :meth:`done` (it then only forgets them). Idempotent.
        """
        if self._shutting_down:
            return
        self._shutting_down = True
        self._cancel_timer()
        self._delayed.clear()
        self._heap.clear()
        had_waiting = bool(self._queue)
        self._queue.clear()
        self._dirty.clear()
        if had_waiting:
            self._depth_changed()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # The timeout is a parameter (not left to asyncio.timeout()) because expiry is an expected
    # outcome here: the queue must still be shut down and the caller told whether it drained.
    async def drain_and_shutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting new keys, let workers finish the waiting and processing ones, shut down.

        Returns ``True`` if nothing was left waiting or processing, ``False`` if ``timeout``
        expired first or :meth:`shutdown` was called meanwhile (the queue is shut down either way).
        Delayed adds are dropped immediately.
        """
        if not self._shutting_down:
            self._draining = True
            self._cancel_timer()
            self._delayed.clear()
            self._heap.clear()
            if self._queue or self._processing:
                self._drained = self._get_loop().create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(self._drained), timeout)
                except TimeoutError:
                    pass
                finally:
                    self._drained = None
        drained = not self._shutting_down and not self._queue and not self._processing
        self.shutdown()
        return drained

    def _maybe_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done() and not self._queue and not self._processing:
            drained.set_result(None)

    # ------------------------------------------------------------------ helpers

    def _pop(self) -> K:
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        self._depth_changed()
        return key

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _remove_waiter(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _depth_changed(self) -> None:
        if self._on_depth_change is not None:
            self._on_depth_change(len(self._queue))

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return self._get_loop().time()
