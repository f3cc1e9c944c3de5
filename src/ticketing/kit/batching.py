"""Group commit: requests that arrive together are written together.

In a burst, a worker process has many requests of one kind in flight at once. Each
request thread hands its request to the kind's `GroupCommit`; one batch runs at a
time, and while it does the next requests gather. The thread that finds no batch
running takes every request waiting (up to `max_size`):

- one alone is handled by `alone`, the ordinary one-at-a-time path, unless the kind
  is made with `one_together` (notifications and orders: on the connection their
  batches keep, a batch of one is cheaper than that path);
- several are handed to `together`, which writes what it can in one transaction and
  returns, once that transaction has committed, the answers of the requests it
  handled (by position). Nothing is answered before its COMMIT.

A batch is taken once its `gate` lets it: on SQLite, the file's writer lock, which
another process may hold. What arrives while a batch waits for that lock joins it, so
the two processes' batches take turns, each as large as the wait made it, instead of a
lone request going first and the rest waiting a second time behind it.

Every request `together` did not answer (it left it out, or the batch failed and
rolled back whole) is then handled by `alone` in its own thread, as if it had
arrived by itself. `alone` raising is that request's answer, raised in its own thread.

A coroutine on the event loop calls `submit_async` instead and holds no thread while
it waits: the first one to find nobody draining hands one pooled thread the work of
taking batches back to back until none is waiting, and each batch wakes the waiting
coroutines of an event loop with one call. Thread hand-offs then cost one per batch,
not two per request.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.to_thread
import structlog

log = structlog.get_logger(component="batching")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class Entry(Generic[T]):
    """One request handed over, with the log context of the request that brought it."""

    value: T
    context: dict[str, Any] = field(default_factory=structlog.contextvars.get_contextvars)
    done: bool = False
    answered: bool = False
    result: Any = None
    error: BaseException | None = None
    # set by submit_async: the event loop and future of the coroutine waiting for it
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None


class GroupCommit(Generic[T, R]):
    """One batch at a time per process; the rest gather while it runs."""

    def __init__(self, name: str, max_size: int, alone: Callable[[T], R],
                 together: Callable[[list[Entry[T]]], dict[int, R]],
                 gate: Callable[[], AbstractContextManager[Any]] = nullcontext,
                 rest: Callable[[], None] = lambda: None, *, one_together: bool = False
                 ) -> None:
        self.name, self.max_size = name, max_size
        # a request found waiting alone goes to `together` too, as a batch of one (its
        # path is the cheaper one), and to `alone`, in its own thread, only if left out
        self.one_together = one_together
        self.alone, self.together, self.gate = alone, together, gate
        # called in the turn whenever what comes next is not a batch: before a request
        # handled alone, and when nobody waits (a batch's kept connection goes back)
        self.rest = rest
        self._waiting: list[Entry[T]] = []
        self._guard = threading.Lock()  # the waiting list and `_draining`
        self._turn = threading.Lock()   # one batch at a time
        self._draining = False          # a thread takes batches for submit_async

    def submit(self, value: T) -> R:
        """Handle `value`, in a batch with the requests waiting beside it if there are."""
        mine: Entry[T] = Entry(value)
        with self._guard:
            self._waiting.append(mine)
        while not mine.done:
            with self._turn:
                if mine.done:
                    break
                self._handle_waiting()
        if mine.error is not None:
            raise mine.error
        if mine.answered:
            return mine.result  # type: ignore[no-any-return]
        return self.alone(value)

    async def submit_async(self, value: T) -> R:
        """`submit` for a coroutine: waits on the event loop, not in a thread."""
        loop = asyncio.get_running_loop()
        mine: Entry[T] = Entry(value, loop=loop, future=loop.create_future())
        with self._guard:
            self._waiting.append(mine)
            start, self._draining = not self._draining, True
        if start:
            loop.run_in_executor(None, self._drain)
        assert mine.future is not None
        await mine.future
        if mine.error is not None:
            raise mine.error
        if mine.answered:
            return mine.result  # type: ignore[no-any-return]
        return await anyio.to_thread.run_sync(self.alone, value)

    def _drain(self) -> None:
        """Take batches back to back until nobody waits (the thread of submit_async)."""
        try:
            while True:
                with self._turn:
                    with self._guard:
                        if not self._waiting:
                            self._draining = False
                            return
                    self._handle_waiting()
        except BaseException:  # never leave later requests waiting for a drain that died
            with self._guard:
                self._draining = False
            raise

    def _handle_waiting(self) -> None:
        """Take what waits (up to max_size) and handle it; the caller holds `_turn`."""
        with self.gate():  # held while the batch is taken and handled
            with self._guard:
                batch = self._waiting[: self.max_size]
                del self._waiting[: self.max_size]
            try:
                self._handle(batch)
            finally:
                with self._guard:
                    idle = not self._waiting
                if idle:
                    self.rest()

    def _handle(self, batch: list[Entry[T]]) -> None:
        try:
            if len(batch) == 1 and not self.one_together:
                # alone: handled now, while the next ones gather
                self.rest()
                self._handle_alone(batch[0])
            elif batch:
                self._handle_together(batch)
        finally:  # unanswered entries go to `alone` in their own thread
            for entry in batch:
                entry.done = True
            _wake([entry for entry in batch if entry.future is not None])

    def _handle_alone(self, entry: Entry[T]) -> None:
        # A context of its own: what handling binds (tenant, order, notification ids)
        # must not reach the log lines of whatever this thread handles next.
        contextvars.Context().run(self._alone_in_context, entry)

    def _alone_in_context(self, entry: Entry[T]) -> None:
        structlog.contextvars.bind_contextvars(**entry.context)
        try:
            entry.result, entry.answered = self.alone(entry.value), True
        except Exception as exc:  # the answer of that request, raised in its thread
            entry.error = exc

    def _handle_together(self, batch: list[Entry[T]]) -> None:
        contextvars.Context().run(self._together_in_context, batch)

    def _together_in_context(self, batch: list[Entry[T]]) -> None:
        try:
            answers = self.together(batch)
        except Exception:  # rolled back whole; each is handled alone
            log.warning("batch.failed", kind=self.name, size=len(batch), exc_info=True)
            return
        for index, result in answers.items():
            batch[index].result, batch[index].answered = result, True
        if answers:
            log.info("batch.applied", kind=self.name, size=len(batch), applied=len(answers))


def _wake(entries: list[Entry[Any]]) -> None:
    """Resume the coroutines waiting for these entries: one call per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for entry in entries:
        assert entry.loop is not None and entry.future is not None
        by_loop.setdefault(entry.loop, []).append(entry.future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures)
        except RuntimeError:  # that loop has closed: nobody waits there any more
            pass


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():  # a cancelled waiter (client gone) needs no answer
            future.set_result(None)
