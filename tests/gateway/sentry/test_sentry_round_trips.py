"""The identity card's one extra round trip (docs/sentry.md, docs/architecture.md): a turn with identity cards
costs one more pipelined group (the index GETs, all the turn's cards together); a turn without keeps its two."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from gateway.scan.scanner import Presentation, Scanner, ScanOutcome
from gateway.scan.state import SCAN_STORE, SCANNER
from gateway.scan.store import ScanStore
from tests.gateway.conftest import PLACES, World
from tests.gateway.sentry.conftest import feed, id_number


async def _warm(world: World, now: datetime) -> tuple[Scanner, ScanStore]:
    scanner = world.client.app[SCANNER]
    await world.set_status("warm-up")
    await scanner.scan(world.code("warm-up"), PLACES[2], "dev-c", now=now)  # creates the day key
    assert scanner.id_cards is not None
    return scanner, world.client.app[SCAN_STORE]


async def test_a_turn_of_identity_cards_is_three_groups_and_a_code_with_a_temperature_two(world: World) -> None:
    numbers = [id_number(i) for i in range(8)]
    await feed(world, *({"holder": f"res-{i}", "id_card": n, "colour": "green"} for i, n in enumerate(numbers)))
    now = datetime.now(UTC)
    scanner, store = await _warm(world, now)
    assert scanner.id_cards is not None
    cards = [Presentation(id_digest=scanner.id_cards.digest(n), temperature_c=36.5) for n in numbers]
    flushes, commands = store.batcher.flushes, store.batcher.commands
    outcomes = await asyncio.gather(*(scanner.scan(card, PLACES[2], "dev-c", now=now) for card in cards))
    assert [(o.decision.reason, o.via) for o in outcomes] == [("ok", "id_card")] * len(numbers)
    # index GET per card; lookup: HGET per card (no replay memory) + the day key; record: XADD per card + EXPIREAT
    assert (store.batcher.flushes - flushes, store.batcher.commands - commands) == (3, 8 + 8 + 1 + 8 + 1)
    await world.set_status("holder-1")
    flushes, commands = store.batcher.flushes, store.batcher.commands
    outcome = await scanner.scan(Presentation(code=world.code("holder-1"), temperature_c=36.5), PLACES[2], "dev-c",
                                 now=now)
    assert isinstance(outcome, ScanOutcome) and outcome.decision.reason == "ok"
    assert (store.batcher.flushes - flushes, store.batcher.commands - commands) == (2, 5)
