"""The group commit hands every request its own answer, batched or alone, under real threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

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
