"""The digital sentry in the metrics (issue 18 part 1, item 4): inputs counted by kind, nothing personal."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

from crypto.paper import issue_paper_code
from tests.gateway.conftest import World
from tests.gateway.sentry.conftest import add_sentry, feed, id_number, sentry_scan


async def test_sentry_inputs_are_counted_by_kind_and_no_number_reading_or_holder_reaches_the_metrics(
    world: World, number: str
) -> None:
    await add_sentry(world)
    await feed(world, {"holder": "res-m", "id_card": number, "colour": "green"})
    await world.set_status("holder-1")
    assert (await sentry_scan(world, id_card=number, temperature_c=36.8))[1]["reason"] == "ok"
    unknown = id_number(77)
    assert (await sentry_scan(world, id_card=unknown))[1]["reason"] == "status_unknown"
    sheet = issue_paper_code(world.health_key, holder_ref="holder-1", now=datetime.now(UTC), nonce=os.urandom(12))
    assert (await sentry_scan(world, code=sheet, temperature_c=38.7))[1]["reason"] == "fever"
    text = await (await world.client.get("/metrics")).text()
    counts = {line.split("{", 1)[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("placegate_sentry_inputs_total{")}
    assert counts == {'input="id_card"': 2.0, 'input="id_card_unknown"': 1.0, 'input="paper_code"': 1.0,
                      'input="temperature"': 2.0, 'input="fever"': 1.0}
    assert 'placegate_exception_events_total{event_class="fever"} 1.0' in text
    for personal in (number, unknown, number[:17], "res-m", "holder-1"):
        assert personal not in text, personal
    for reading in ("36.8", "38.7"):  # as a number of its own, not inside a longer one
        assert re.search(rf"(?<![0-9.]){re.escape(reading)}(?![0-9])", text) is None, reading
