"""Micro-batching: concurrent classify calls of one worker become one Triton request.

Every request that waits on the classifier costs Triton one gRPC call, one queue slot and one
Python-backend round trip however small it is; on the CPU server that overhead, not the
arithmetic, bounds throughput (../shared/gpu/README.md: 30x between raw and one-per-request).
So calls made while the classifier is busy are held and sent together.

Policy (adaptive, no fixed tick): a call is sent at once when fewer than `max_inflight` batches
are out; otherwise it waits for a batch to come back and goes with everything that queued
meanwhile. So an idle gateway adds no wait, and batches grow with the load. Two bounds keep
that honest: a batch never holds more than `max_items` calls, and no call waits longer than
`max_wait_s` for a slot (then it is sent even though `max_inflight` are out; Triton's own
dynamic batcher merges it with the others).

Each caller gets its own result; an error in a batch reaches every caller in it. A caller
that gives up (cancelled) is skipped when the results come back; when every caller of a batch
has given up, the batch itself is cancelled (its Triton call with it).

Long texts skip the batcher (BatchingClassifier): they are several Triton rows already, and a
short call batched with one would wait for all of them.
"""
from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchStats:
    """Counters, for tests and the bench (batches < calls means coalescing happened)."""
    calls: int = 0
    batches: int = 0
    largest: int = 0
    forced: int = 0  # batches sent by the max_wait bound while max_inflight were out


class MicroBatcher(Generic[T, R]):
    def __init__(self, run: Callable[[list[T]], Awaitable[Sequence[R]]], *, max_items: int = 64,
                 max_wait_s: float = 0.005, max_inflight: int = 2):
        if max_items < 1 or max_inflight < 1 or max_wait_s < 0:
            raise ValueError("max_items and max_inflight must be ≥ 1, max_wait_s ≥ 0")
        self._run = run
        self.max_items, self.max_wait_s, self.max_inflight = max_items, max_wait_s, max_inflight
        self.stats = BatchStats()
        # (item, the caller's future, the caller's context: a batch's spans join its first caller's trace)
        self._queue: list[tuple[T, asyncio.Future, contextvars.Context]] = []
        self._inflight = 0
        self._scheduled: asyncio.Handle | None = None  # the next flush (soon, or at the deadline)
        self._tasks: set[asyncio.Task] = set()  # strong references: the loop keeps only weak ones

    async def submit(self, item: T) -> R:
        """Run `item` in the next batch and return its own result (or raise the batch's error)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future, contextvars.copy_context()))
        self.stats.calls += 1
        if len(self._queue) >= self.max_items:
            self._flush()
        elif self._scheduled is None:
            self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._inflight < self.max_inflight:
            # call_soon, not now: callers woken in this loop turn still join this batch.
            self._scheduled = loop.call_soon(self._flush)
        else:
            self._scheduled = loop.call_later(self.max_wait_s, self._flush, True)

    def _flush(self, forced: bool = False) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if not self._queue:
            return
        batch = self._queue[:self.max_items]
        del self._queue[:self.max_items]
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, len(batch))
        self.stats.forced += forced
        self._inflight += 1
        loop = asyncio.get_running_loop()
        waiters = [b[1] for b in batch]
        task = loop.create_task(self._send([b[0] for b in batch], waiters), context=batch[0][2])
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        for waiter in waiters:
            waiter.add_done_callback(lambda _: _cancel_if_abandoned(task, waiters))
        if self._queue:  # more than max_items were queued: the rest go by the same rule
            self._schedule(loop)

    async def _send(self, items: list[T], waiters: list[asyncio.Future]) -> None:
        try:
            results = await self._run(items)
            if len(results) != len(items):
                raise RuntimeError(f"a batch of {len(items)} returned {len(results)} results")
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 — every caller in the batch must hear of it
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
        else:
            for waiter, result in zip(waiters, results):
                if not waiter.done():  # a caller that gave up is skipped
                    waiter.set_result(result)
        finally:
            self._inflight -= 1
            if self._queue:  # a slot is free: what queued behind this batch goes now
                self._flush()

    async def close(self) -> None:
        """Fail queued calls and wait for the batches in flight."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        for _, waiter, _ in self._queue:
            if not waiter.done():
                waiter.set_exception(RuntimeError("the classifier batcher was closed"))
        self._queue.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _cancel_if_abandoned(task: asyncio.Task, waiters: list[asyncio.Future]) -> None:
    if not task.done() and all(w.cancelled() for w in waiters):
        task.cancel()


# Texts longer than this go to the classifier alone: ~4 chunks of the model's 256-token window.
SOLO_CHARS = 4096


class BatchingClassifier:
    """A Classifier whose `classify` goes through a MicroBatcher; everything else is the
    wrapped Classifier's (labels, triton_url, start, ready). One per worker process."""

    def __init__(self, classifier, *, max_items: int = 64, max_wait_s: float = 0.005, max_inflight: int = 2):
        self.inner = classifier
        self.batcher: MicroBatcher = MicroBatcher(self._classify_batch, max_items=max_items,
                                                  max_wait_s=max_wait_s, max_inflight=max_inflight)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def classify(self, texts: list[str], budget=None) -> list:
        if len(texts) >= self.batcher.max_items:  # already a batch (route utterances, offline files)
            return await self.inner.classify(texts, budget)
        return list(await asyncio.gather(*(self._one(t, budget) for t in texts)))

    async def _one(self, text: str, budget):
        if len(text) > SOLO_CHARS:
            return (await self.inner.classify([text], budget))[0]
        return await self.batcher.submit((text, budget))

    async def _classify_batch(self, items: list[tuple]) -> list:
        return await self.inner.classify([text for text, _ in items], [budget for _, budget in items])

    async def close(self) -> None:
        await self.batcher.close()
        await self.inner.close()
