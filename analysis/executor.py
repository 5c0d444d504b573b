"""Run one function over chunks of work, in this process or on several cores.

The back-test (``analysis.backtest.run_backtest``) hands its rows to an ``Executor`` in
chunks and reads the results back in input order; another engine (a cluster, a queue of
remote workers) plugs in by implementing the same small interface::

    with ProcessExecutor(workers=4) as executor:
        for result in executor.map_chunks(fn, chunks):   # one result per chunk, in order
            ...

- ``LocalExecutor``: in this process, one chunk after the other (one core); ``fn`` and the
  chunks may be any Python objects.
- ``ProcessExecutor``: a pool of worker processes (``concurrent.futures``), by default one
  per core (``os.cpu_count()``), started with ``spawn`` (a fresh interpreter per worker,
  so no lock or thread of this process is inherited half-held, and every worker builds its
  own engine state). ``fn`` must be picklable (a module-level function, or a
  ``functools.partial`` of one over plain data), as must every chunk and result. At most
  ``2 x workers`` chunks are in flight, so an endless input is streamed, not read up front.

Failure modes: an exception raised by ``fn`` is raised again by ``map_chunks`` (in the
caller's process, with its type), after the chunks before it were yielded; a worker
process that dies (a crash in native code, a kill) raises ``ExecutorError``. Leaving the
``with`` block, or closing the iterator early, cancels the chunks not yet started.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Executor", "ExecutorError", "LocalExecutor", "ProcessExecutor"]

C = TypeVar("C")
R = TypeVar("R")


class ExecutorError(RuntimeError):
    """The executor could not run the work (a worker process died or could not start);
    no result is missing silently: the run stops."""


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on every chunk and yields the results in the order of the chunks.

    ``workers`` is how many chunks may run at the same time; ``in_process`` is True when
    ``fn`` runs in the caller's process (so it may close over live objects instead of
    picklable descriptions of them). Executors are context managers; ``close`` releases
    their workers."""

    workers: int
    in_process: bool

    def map_chunks(self, fn: Callable[[C], R], chunks: Iterable[C]) -> Iterator[R]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


class LocalExecutor:
    """Every chunk in this process, in order, when the caller asks for its result."""

    workers = 1
    in_process = True

    def map_chunks(self, fn: Callable[[C], R], chunks: Iterable[C]) -> Iterator[R]:
        for chunk in chunks:
            yield fn(chunk)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProcessExecutor:
    """Chunks on a pool of ``workers`` processes (default ``os.cpu_count()``), results in
    input order. ``start_method`` is a ``multiprocessing`` start method (default
    ``spawn``); ``max_pending`` bounds the chunks submitted but not yet yielded (default
    ``2 x workers``). The pool starts on first use and lives until ``close``.
    Raises ``ValueError`` for fewer than one worker."""

    in_process = False

    def __init__(
        self,
        workers: int | None = None,
        *,
        start_method: str = "spawn",
        max_pending: int | None = None,
    ):
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        self.max_pending = max_pending or 2 * self.workers
        self._context = multiprocessing.get_context(start_method)
        self._pool: ProcessPoolExecutor | None = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=self._context)
        return self._pool

    def map_chunks(self, fn: Callable[[C], R], chunks: Iterable[C]) -> Iterator[R]:
        pool = self._ensure_pool()
        pending: deque[Future[R]] = deque()
        try:
            for chunk in chunks:
                pending.append(_submit(pool, fn, chunk))
                if len(pending) >= self.max_pending:
                    yield _result(pending.popleft())
            while pending:
                yield _result(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        """Stop the workers: running chunks finish, queued ones are cancelled."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _submit(pool: ProcessPoolExecutor, fn: Callable[[Any], R], chunk: Any) -> Future[R]:
    try:
        return pool.submit(fn, chunk)
    except BrokenProcessPool as exc:
        raise ExecutorError(f"the worker processes are gone: {exc}") from exc


def _result(future: Future[R]) -> R:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise ExecutorError(
            f"a worker process ended abruptly (killed, or a crash in native code): {exc}"
        ) from exc
