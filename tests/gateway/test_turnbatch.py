"""TurnBatcher: the groups submitted in one loop turn run together, each caller gets its own result or error."""

from __future__ import annotations

import asyncio

import pytest

from gateway.turnbatch import TurnBatcher


def _square_all(group: list[int]) -> list[int]:
    if any(n < 0 for n in group):
        raise ValueError("negative")
    return [n * n for n in group]


async def test_groups_of_one_turn_run_in_one_callback_and_in_order() -> None:
    seen: list[list[int]] = []

    def work(group: list[int]) -> list[int]:
        seen.append(group)
        return _square_all(group)

    batcher: TurnBatcher[list[int], list[int]] = TurnBatcher(work)
    results = await asyncio.gather(*(batcher.submit([n, n + 1]) for n in range(0, 10, 2)))
    assert results == [[n * n, (n + 1) * (n + 1)] for n in range(0, 10, 2)]
    assert seen == [[n, n + 1] for n in range(0, 10, 2)]
    assert (batcher.runs, batcher.groups) == (1, 5)


async def test_each_turn_gets_its_own_run() -> None:
    batcher: TurnBatcher[list[int], list[int]] = TurnBatcher(_square_all)
    assert await batcher.submit([2]) == [4]
    assert await batcher.submit([3]) == [9]
    assert (batcher.runs, batcher.groups) == (2, 2)


async def test_an_error_fails_its_own_group_only() -> None:
    batcher: TurnBatcher[list[int], list[int]] = TurnBatcher(_square_all)
    good, bad, after = batcher.submit([1]), batcher.submit([-1]), batcher.submit([5])
    assert await good == [1]
    with pytest.raises(ValueError, match="negative"):
        await bad
    assert await after == [25]


async def test_a_caller_that_went_away_is_skipped() -> None:
    ran: list[list[int]] = []

    def work(group: list[int]) -> list[int]:
        ran.append(group)
        return group

    batcher: TurnBatcher[list[int], list[int]] = TurnBatcher(work)
    gone = batcher.submit([1])
    kept = batcher.submit([2])
    gone.cancel()
    assert await kept == [2]
    assert ran == [[2]] and gone.cancelled()
