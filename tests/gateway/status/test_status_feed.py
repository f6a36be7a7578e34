"""PUT /v1/status: batch upsert, last-writer-wins by updated_at, per-record errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.gateway.conftest import World


def _rec(holder: str, colour: object, updated: datetime, **extra: object) -> dict[str, object]:
    return {"holder": holder, "colour": colour, "updated_at": updated.isoformat(), **extra}


async def _put(world: World, records: list[object], who: str = "feeder") -> tuple[int, dict[str, object]]:
    resp = await world.client.put("/v1/status", json={"records": records}, headers=world.auth(who))
    return resp.status, await resp.json()


async def test_newer_update_wins_and_older_never_overwrites(world: World) -> None:
    now = datetime.now(UTC)
    status, body = await _put(world, [_rec("h1", "red", now - timedelta(minutes=5))])
    assert status == 200 and body["applied"] == 1
    _, body = await _put(world, [_rec("h1", "green", now - timedelta(minutes=10))])
    assert (body["applied"], body["stale"]) == (0, 1)
    assert (await world.scan(world.code("h1"), who="dev-c"))[1]["reason"] == "status_red"
    _, body = await _put(world, [_rec("h1", "green", now)])
    assert body["applied"] == 1
    assert (await world.scan(world.code("h1"), who="dev-c"))[1]["decision"] == "admit"


async def test_equal_updated_at_is_not_applied_twice(world: World) -> None:
    now = datetime.now(UTC)
    await _put(world, [_rec("h1", "green", now)])
    _, body = await _put(world, [_rec("h1", "red", now)])
    assert body["stale"] == 1


async def test_bad_records_are_reported_without_failing_the_batch(world: World) -> None:
    now = datetime.now(UTC)
    records: list[object] = [
        _rec("h1", "green", now, tested_at=(now - timedelta(hours=3)).isoformat(), test_result="negative"),
        _rec("h2", "purple", now),
        {"holder": "h3", "colour": "green"},
        _rec("bad holder!", "green", now),
        _rec("h4", "green", now + timedelta(days=1)),
        "not an object",
        _rec("h5", "green", now, test_result="negative"),
        _rec("h6", "yellow", now, vaccinated=True),
    ]
    status, body = await _put(world, records)
    assert status == 200
    assert (body["applied"], body["rejected"]) == (2, 6)
    errors = {r["index"]: r.get("error") for r in body["results"]}  # type: ignore[union-attr]
    assert errors == {0: None, 1: "invalid_colour", 2: "invalid_updated_at", 3: "invalid_holder",
                      4: "updated_at_in_future", 5: "invalid_record", 6: "invalid_test_result", 7: None}
    assert (await world.scan(world.code("h1"), who="dev-a"))[1]["decision"] == "admit"


async def test_status_feed_needs_the_feeder_role_and_a_list(world: World) -> None:
    status, body = await _put(world, [], who="feeder")
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = await _put(world, [_rec("h1", "green", datetime.now(UTC))], who="dev-a")
    assert (status, body["error"]) == (403, "forbidden")


async def test_stale_status_counts_as_unknown(world: World) -> None:
    await world.set_status("h1", updated_at=datetime.now(UTC) - timedelta(hours=30))
    _, body = await world.scan(world.code("h1"), who="dev-c")
    assert (body["decision"], body["reason"]) == ("review", "status_unknown")


def test_bulk_loader_path_packs_exactly_what_the_feed_path_stores() -> None:
    from gateway.status.cache import pack_status
    from gateway.status.feed import parse_status_packed, parse_status_record

    now = datetime.now(UTC)
    samples = [
        _rec("h1", "green", now, tested_at=(now - timedelta(hours=3)).isoformat(), test_result="negative",
             vaccinated=True),
        _rec("h2", "red", now - timedelta(days=1)),
        {"holder": "h3", "colour": "yellow", "updated_at": int(now.timestamp()), "tested_at": 1_790_000_000,
         "test_result": "positive"},
    ]
    for raw in samples:
        record = parse_status_record(raw, now=now)
        assert parse_status_packed(raw, now_s=int(now.timestamp())) == (record.holder_ref, pack_status(record.status))


async def test_a_list_or_object_where_a_name_belongs_is_rejected_not_an_error(world: World) -> None:
    now = datetime.now(UTC)
    status, body = await _put(world, [
        _rec("h1", ["green"], now), _rec("h2", "green", now, test_result={"negative": True}), _rec("h3", "green", now),
    ])
    assert status == 200
    errors = {r["index"]: r.get("error") for r in body["results"]}  # type: ignore[union-attr]
    assert errors == {0: "invalid_colour", 1: "invalid_test_result", 2: None}


async def test_one_batch_with_a_holder_twice_answers_each_record(world: World) -> None:
    now = datetime.now(UTC)
    older, newer = now - timedelta(minutes=5), now - timedelta(minutes=1)
    _, body = await _put(world, [
        _rec("h1", "red", older), _rec("h1", "green", newer),  # older first: both applied, in turn
        _rec("h2", "green", newer), _rec("h2", "red", older),  # newer first: the older one is stale
        _rec("h3", "green", now), _rec("h3", "red", now),  # the same updated_at: the first one stays
    ])
    outcomes = [r["outcome"] for r in body["results"]]  # type: ignore[index]
    assert outcomes == ["applied", "applied", "applied", "stale", "applied", "stale"]
    for holder in ("h1", "h2", "h3"):
        assert (await world.scan(world.code(holder), who="dev-c"))[1]["decision"] == "admit"


async def test_a_batch_holds_at_most_10000_records(world: World) -> None:
    now = datetime.now(UTC).isoformat()
    record = {"holder": "h", "colour": "green", "updated_at": now}
    status, body = await _put(world, [record] * 10_001)
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = await _put(world, [{**record, "holder": f"h{i}"} for i in range(10_000)])
    assert (status, body["applied"]) == (200, 10_000)
