"""Group commit: concurrent decisions share one write transaction and one commit.

``DecisionWriter.decide(job)`` (async) queues the job for the writer thread and waits for its
answer. The writer takes every job queued at that moment (at most ``max_batch``), runs them
through ``api.decisions.deciding.decide_batch`` in one transaction, and answers each job only
after the commit: with one client a batch is one decision (no waiting for company); with
many, the cost of the transaction and its durable commit is shared. This is the one thread
hop of a decision: the event loop hands the job to the writer and is handed the answer back.

A job refused by the batch (an unknown customer, a conflict, an input error) gets its own
error; a failure of the transaction (database unavailable, chain broken) fails every job of
the batch, none of which was recorded. ``max_pending`` bounds the queue: beyond it a decision
is refused at once (``StoreUnavailable``, 503) rather than queued without end.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from api.core.database import Database, StoreUnavailable
from api.decisions.deciding import Decided, DecideJob, decide_batch

__all__ = ["DecisionWriter"]

log = logging.getLogger("creditgate.api")

_STOP = object()


class DecisionWriter:
    """The writer thread of one app (started on the first decision, stopped by ``close``).
    ``observe(batch_size, seconds)``, if given, is called after every batch (metrics)."""

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 64,
        max_pending: int = 10_000,
        observe: Callable[[int, float], None] | None = None,
    ):
        self.db = db
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.observe = observe
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending = 0
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def decide(self, job: DecideJob) -> Decided:
        """Decide and record ``job`` with whatever else is queued; raises what refused it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decided] = loop.create_future()
        with self._guard:
            if self._closed:
                raise StoreUnavailable("the service is stopping", cause="WriterClosed")
            if self._pending >= self.max_pending:
                raise StoreUnavailable(
                    f"{self._pending} decisions are waiting for the database",
                    cause="WriterBacklog",
                )
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="creditgate-decision-writer", daemon=True
                )
                self._thread.start()
        self._queue.put((job, loop, future))
        return await future

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking decisions, finish the queued ones, stop the thread."""
        with self._guard:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[tuple[DecideJob, asyncio.AbstractEventLoop, Any]]) -> None:
        start = time.perf_counter()
        try:
            results: list[Any] = decide_batch(self.db, [job for job, _, _ in batch])
        except Exception as e:  # noqa: BLE001 - the transaction failed: every job fails
            results = [e] * len(batch)
        with self._guard:
            self._pending -= len(batch)
        if self.observe is not None:
            try:
                self.observe(len(batch), time.perf_counter() - start)
            except Exception:  # noqa: BLE001 - metrics never fail a decision
                log.exception("decision writer: observing a batch failed")
        for (_, loop, future), result in zip(batch, results, strict=True):
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # the caller's event loop is closed: nobody is waiting
                pass


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the caller went away (cancelled); the decision is recorded anyway
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
