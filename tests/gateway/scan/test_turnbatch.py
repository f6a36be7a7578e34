"""TurnTask: the groups submitted in one loop turn are handled together by one task; each caller gets its own
result or error, and nobody is left waiting."""

from __future__ import annotations

import asyncio

import pytest

from gateway.scan.turnbatch import TurnTask


async def _square_all(groups: list[list[int]]) -> list[list[int] | Exception]:
    await asyncio.sleep(0)  # a real suspension in the middle, as the scanner's Redis groups are
    return [ValueError("negative") if any(n < 0 for n in g) else [n * n for n in g] for g in groups]


async def test_groups_of_one_turn_are_handled_by_one_task_in_order() -> None:
    seen: list[list[list[int]]] = []

    async def work(groups: list[list[int]]) -> list[list[int] | Exception]:
        seen.append(groups)
        return await _square_all(groups)

    turns: TurnTask[list[int], list[int]] = TurnTask(work)
    results = await asyncio.gather(*(turns.submit([n, n + 1]) for n in range(0, 10, 2)))
    assert results == [[n * n, (n + 1) * (n + 1)] for n in range(0, 10, 2)]
    assert seen == [[[n, n + 1] for n in range(0, 10, 2)]]
    assert (turns.runs, turns.groups) == (1, 5)


async def test_each_turn_gets_its_own_task() -> None:
    turns: TurnTask[list[int], list[int]] = TurnTask(_square_all)
    assert await turns.submit([2]) == [4]
    assert await turns.submit([3]) == [9]
    assert (turns.runs, turns.groups) == (2, 2)


async def test_submissions_while_a_turn_is_suspended_start_the_next_turn() -> None:
    turns: TurnTask[list[int], list[int]] = TurnTask(_square_all)
    first = turns.submit([1])
    await asyncio.sleep(0)  # the first turn's task has started and is suspended inside the work
    second = turns.submit([2])
    assert (await first, await second) == ([1], [4])
    assert (turns.runs, turns.groups) == (2, 2)


async def test_an_exception_as_a_result_fails_its_own_group_only() -> None:
    turns: TurnTask[list[int], list[int]] = TurnTask(_square_all)
    good, bad, after = turns.submit([1]), turns.submit([-1]), turns.submit([5])
    assert await good == [1]
    with pytest.raises(ValueError, match="negative"):
        await bad
    assert await after == [25]


async def test_a_defect_in_the_work_fails_every_caller_of_the_turn() -> None:
    async def broken(groups: list[list[int]]) -> list[list[int] | Exception]:
        raise KeyError("defect")

    turns: TurnTask[list[int], list[int]] = TurnTask(broken)
    results = await asyncio.gather(turns.submit([1]), turns.submit([2]), return_exceptions=True)
    assert [type(r) for r in results] == [KeyError, KeyError]


async def test_a_wrong_number_of_results_is_a_defect_not_a_silent_mismatch() -> None:
    async def short(groups: list[list[int]]) -> list[list[int] | Exception]:
        return [[0]]

    turns: TurnTask[list[int], list[int]] = TurnTask(short)
    results = await asyncio.gather(turns.submit([1]), turns.submit([2]), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_a_caller_that_went_away_is_skipped() -> None:
    ran: list[list[list[int]]] = []

    async def work(groups: list[list[int]]) -> list[list[int] | Exception]:
        ran.append(groups)
        return list(groups)

    turns: TurnTask[list[int], list[int]] = TurnTask(work)
    gone = turns.submit([1])
    kept = turns.submit([2])
    gone.cancel()
    assert await kept == [2]
    assert ran == [[[2]]] and gone.cancelled()


async def test_cancelling_the_turn_cancels_its_callers_and_aclose_waits_for_it() -> None:
    started = asyncio.Event()

    async def stuck(groups: list[list[int]]) -> list[list[int] | Exception]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    turns: TurnTask[list[int], list[int]] = TurnTask(stuck)
    caller = turns.submit([1])
    await started.wait()
    (task,) = turns._tasks
    task.cancel()
    await turns.aclose()
    assert caller.cancelled() and not turns._tasks


def test_a_turn_whose_loop_closed_before_it_ran_does_not_strand_the_next_loop() -> None:
    turns: TurnTask[list[int], list[int]] = TurnTask(_square_all)

    async def submit_and_leave() -> None:
        turns.submit([1])
        (task,) = turns._tasks
        task.cancel()  # as a closing loop does: the turn's task never takes its first step

    async def submit_and_wait() -> list[int]:
        return await asyncio.wait_for(turns.submit([3]), 5)

    asyncio.run(submit_and_leave())
    assert asyncio.run(submit_and_wait()) == [9]
    assert (turns.runs, turns.groups) == (1, 1)  # the stranded submission of the closed loop is dropped
