"""The group commit hands every request its own answer, batched or alone, under real threads."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import structlog

from ticketing.kit.batching import Entry, GroupCommit


class Work:
    """`together` answers even numbers (slowly, so others gather); `alone` all but 13."""

    def __init__(self, fail_batches: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.alone_calls: list[int] = []
        self.fail_batches = fail_batches
        self.lock = threading.Lock()

    def alone(self, n: int) -> str:
        with self.lock:
            self.alone_calls.append(n)
        if n == 13:
            raise ValueError("thirteen")
        time.sleep(0.002)
        return f"alone {n}"

    def together(self, batch: list[Entry[int]]) -> dict[int, str]:
        with self.lock:
            self.batches.append([e.value for e in batch])
        time.sleep(0.01)
        if self.fail_batches:
            raise RuntimeError("the batch's transaction failed")
        return {i: f"together {e.value}" for i, e in enumerate(batch) if e.value % 2 == 0}


def _run(group: GroupCommit, values: list[int]) -> dict[int, object]:
    barrier = threading.Barrier(len(values))

    def one(n: int) -> object:
        barrier.wait()
        try:
            return group.submit(n)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(len(values)) as pool:
        return dict(zip(values, pool.map(one, values), strict=True))


def test_each_request_gets_its_own_answer():
    work = Work()
    group = GroupCommit("test", 8, work.alone, work.together)
    answers = _run(group, list(range(40)))
    batched = {n for batch in work.batches for n in batch}
    assert any(len(batch) > 1 for batch in work.batches)  # they did gather
    assert all(len(batch) <= 8 for batch in work.batches)
    for n, answer in answers.items():
        if n == 13:
            assert isinstance(answer, ValueError)  # raised in its own thread
        elif n % 2 == 0 and n in batched:
            assert answer == f"together {n}"
        else:
            assert answer == f"alone {n}"
    # every request was handled once: by a batch that answered it, or alone
    answered_together = {n for n in batched if n % 2 == 0}
    assert sorted(work.alone_calls) == sorted(set(range(40)) - answered_together)


def test_a_failed_batch_leaves_every_request_to_the_one_at_a_time_path():
    work = Work(fail_batches=True)
    group = GroupCommit("test", 8, work.alone, work.together)
    answers = _run(group, list(range(24)))
    assert any(len(batch) > 1 for batch in work.batches)
    assert sorted(work.alone_calls) == list(range(24))
    assert all(answers[n] == f"alone {n}" for n in range(24) if n != 13)


@pytest.mark.parametrize("n", [1, 3])
def test_few_requests_one_at_a_time_are_each_handled_alone(n):
    work = Work()
    group = GroupCommit("test", 8, work.alone, work.together)
    assert [group.submit(i) for i in range(n)] == [f"alone {i}" for i in range(n)]
    assert work.batches == []


def test_with_one_together_a_request_alone_is_a_batch_of_one_and_what_it_leaves_goes_alone():
    """`one_together`: a request found waiting by itself goes to `together` (its path is
    the cheaper one); one `together` leaves unanswered (odd here) then goes `alone`."""
    work = Work()
    rests: list[int] = []
    group = GroupCommit("test", 8, work.alone, work.together, rest=lambda: rests.append(1),
                        one_together=True)
    assert [group.submit(i) for i in (2, 3, 4)] == ["together 2", "alone 3", "together 4"]
    assert work.batches == [[2], [3], [4]] and work.alone_calls == [3]
    assert len(rests) == 3  # each time nobody waited after it: the kept connection goes back
    assert isinstance(_run(group, [13])[13], ValueError)  # alone's error, in its own thread


def test_a_batch_is_taken_once_its_gate_lets_it():
    """What arrives while a batch waits at its gate (another writer's lock) joins it."""
    work = Work()
    waiting_at_gate, go = threading.Event(), threading.Event()
    gates = []

    @contextmanager
    def gate():
        gates.append(len(gates))
        if len(gates) == 1:
            waiting_at_gate.set()
            assert go.wait(10)
        yield

    group = GroupCommit("test", 8, work.alone, work.together, gate)
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(group.submit, 0)
        assert waiting_at_gate.wait(10)
        rest = [pool.submit(group.submit, n) for n in range(2, 12, 2)]
        while len(group._waiting) < 6:  # all six queued behind the first one's gate
            time.sleep(0.01)
        go.set()
        answers = [first.result(10)] + [f.result(10) for f in rest]
    assert work.batches == [[0, 2, 4, 6, 8, 10]]
    assert work.alone_calls == []
    assert answers == [f"together {n}" for n in range(0, 12, 2)]
    assert gates == [0]


async def _gather(group: GroupCommit, values: list[int]) -> dict[int, object]:
    async def one(n: int) -> object:
        try:
            return await group.submit_async(n)
        except ValueError as exc:
            return exc

    answers = await asyncio.gather(*(one(n) for n in values))
    return dict(zip(values, answers, strict=True))


def _check_answers(work: Work, answers: dict[int, object], values: list[int]) -> None:
    batched = {n for batch in work.batches for n in batch}
    for n in values:
        if n == 13:
            assert isinstance(answers[n], ValueError)
        elif n % 2 == 0 and n in batched:
            assert answers[n] == f"together {n}"
        else:
            assert answers[n] == f"alone {n}"
    answered_together = {n for n in batched if n % 2 == 0}
    assert sorted(work.alone_calls) == sorted(set(values) - answered_together)


def test_coroutines_wait_on_the_loop_and_each_get_their_own_answer():
    work = Work()
    group = GroupCommit("test", 8, work.alone, work.together)
    values = list(range(60))
    answers = asyncio.run(_gather(group, values))
    assert any(len(batch) > 1 for batch in work.batches)  # they did gather
    assert all(len(batch) <= 8 for batch in work.batches)
    _check_answers(work, answers, values)
    assert not group._draining and not group._waiting  # the drain stopped when done


def test_a_failed_batch_sends_every_coroutine_to_the_one_at_a_time_path():
    work = Work(fail_batches=True)
    group = GroupCommit("test", 8, work.alone, work.together)
    answers = asyncio.run(_gather(group, list(range(24))))
    assert any(len(batch) > 1 for batch in work.batches)
    assert sorted(work.alone_calls) == list(range(24))
    assert all(answers[n] == f"alone {n}" for n in range(24) if n != 13)


def test_threads_and_coroutines_share_one_group_commit():
    """Batches mix both kinds of caller; whichever takes a batch wakes the others."""
    work = Work()
    group = GroupCommit("test", 8, work.alone, work.together)
    thread_values, loop_values = list(range(0, 40, 2)) + [13], list(range(1, 40, 2))
    loop_values.remove(13)
    with ThreadPoolExecutor(len(thread_values)) as pool:
        def one(n: int) -> object:
            try:
                return group.submit(n)
            except ValueError as exc:
                return exc
        threaded = [pool.submit(one, n) for n in thread_values]
        answers = asyncio.run(_gather(group, loop_values))
        answers.update({n: f.result() for n, f in zip(thread_values, threaded, strict=True)})
    _check_answers(work, answers, thread_values + loop_values)


def test_a_cancelled_waiter_leaves_the_others_answered():
    work = Work()
    group = GroupCommit("test", 8, work.alone, work.together)

    async def main() -> dict[int, object]:
        gone = asyncio.ensure_future(group.submit_async(100))
        await asyncio.sleep(0)
        gone.cancel()  # the client went away; its request is still handled
        answers = await _gather(group, list(range(20)))
        with pytest.raises(asyncio.CancelledError):
            await gone
        return answers

    answers = asyncio.run(main())
    together_100 = 100 in {n for batch in work.batches for n in batch}
    assert together_100 or work.alone_calls.count(100) == 1  # handled once all the same
    work.alone_calls = [n for n in work.alone_calls if n != 100]
    _check_answers(work, answers, list(range(20)))


def test_what_one_request_binds_never_reaches_the_log_context_of_the_next():
    """Handling binds ids (tenant, order, notification) for its log lines; the thread
    that drains batches must not carry them to the requests it handles after."""
    seen: list[dict] = []

    def alone(n: int) -> str:
        seen.append(structlog.contextvars.get_contextvars())
        structlog.contextvars.bind_contextvars(order_id=n)  # as the payment path does
        return f"alone {n}"

    def together(batch: list[Entry[int]]) -> dict[int, str]:
        seen.append(structlog.contextvars.get_contextvars())
        structlog.contextvars.bind_contextvars(order_id=-1)
        time.sleep(0.005)
        return {i: "together" for i in range(len(batch))}

    group = GroupCommit("test", 4, alone, together)

    async def main() -> None:
        structlog.contextvars.clear_contextvars()  # as the request middleware does
        for n in range(3):  # one at a time: each handled alone by the draining thread
            structlog.contextvars.bind_contextvars(request_id=f"r{n}")
            assert await group.submit_async(n) == f"alone {n}"
        structlog.contextvars.bind_contextvars(request_id="burst")
        await asyncio.gather(*(group.submit_async(n) for n in range(10)))

    asyncio.run(main())
    assert seen[:3] == [{"request_id": f"r{n}"} for n in range(3)]
    assert all("order_id" not in context for context in seen), seen


def test_rest_is_called_before_a_request_alone_and_when_nobody_waits():
    """A group commit's `rest` (where a batch's kept connection goes back) runs in the
    turn before anything but a batch: a request handled alone, or nothing left."""
    events: list[str] = []
    group = GroupCommit("test", 8, lambda n: events.append(f"alone {n}") or n,
                        lambda batch: events.append(f"together {len(batch)}") or {
                            i: e.value for i, e in enumerate(batch)},
                        rest=lambda: events.append("rest"))
    assert group.submit(1) == 1
    assert events == ["rest", "alone 1", "rest"]
    events.clear()
    answers = _run(group, list(range(12)))
    assert answers == {n: n for n in range(12)}
    assert events[-1] == "rest"
    for i, event in enumerate(events):
        if event.startswith("alone"):
            assert events[i - 1] == "rest"
