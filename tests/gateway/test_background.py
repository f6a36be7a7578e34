"""The periodic refresh used for the trust lists keeps running through failures and stops with its context."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.background import refreshing


async def test_refresh_repeats_survives_a_failure_and_stops_on_exit() -> None:
    calls = 0

    async def refresh() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("redis away")

    async with refreshing(refresh, every_s=0.01, what="test"):
        await asyncio.sleep(0.1)
    seen = calls
    assert seen >= 4  # the failure on the second call did not stop the loop
    await asyncio.sleep(0.05)
    assert calls == seen


async def test_the_loop_ends_even_when_a_refresh_absorbs_its_cancellation() -> None:
    async def absorbing() -> None:
        # What the Redis client once did with a cancellation that landed inside a command: absorbed it.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)

    async def run() -> None:
        async with refreshing(absorbing, every_s=0.001, what="test"):
            await asyncio.sleep(0.02)  # exits while the loop is inside ``absorbing``

    await asyncio.wait_for(run(), 2)  # before the stop event, the context waited for the loop forever
