"""`placegate status load` and the grouped status writer, on the real server: last-writer-wins, counts, bad lines."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from crypto.native import Colour
from gateway.cli import main
from gateway.redisio import connect_redis
from gateway.status import cli as cli_status
from gateway.status import writer as status_writer
from gateway.status.cache import StatusRecord, unpack_status
from gateway.status.writer import StatusWriter
from policy.status import HolderStatus, TestResult

SECRET = bytes(range(32))
TTL_S = 3600
NOW = int(datetime.now(UTC).timestamp())


@pytest.fixture
async def store(redis: Redis) -> AsyncIterator[StatusWriter]:
    store = StatusWriter.standalone(redis, secret=SECRET, status_buckets=1024, status_ttl_s=TTL_S)
    try:
        yield store
    finally:
        await store.aclose()


def _rec(holder: str, updated_s: int, colour: str = "green", **extra: object) -> dict[str, object]:
    return {"holder": holder, "colour": colour, "tested_at": updated_s - 600, "test_result": "negative",
            "vaccinated": False, "updated_at": updated_s, **extra}


def _feed(tmp_path: Path, records: Sequence[object], name: str = "feed.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in records))
    return path


async def _stored(store: StatusWriter, holder: str) -> HolderStatus | None:
    key, field = store.locator.locate(holder)
    raw = await store.redis.hget(key, field)
    return None if raw is None else unpack_status(raw)


async def _load(store: StatusWriter, path: Path, **kwargs: Any) -> dict[str, int]:
    return await cli_status.load_file(store, path, progress=False, **kwargs)


async def test_a_holder_twice_in_one_window_keeps_the_newer_record_whatever_the_order(
    store: StatusWriter, tmp_path: Path
) -> None:
    feed = _feed(tmp_path, [
        _rec("older-first", NOW - 100, "red"), _rec("older-first", NOW - 50, "green"),
        _rec("newer-first", NOW - 50, "green"), _rec("newer-first", NOW - 100, "red"),
    ])
    counts = await _load(store, feed)
    assert counts == {"applied": 3, "stale": 1, "rejected": 0}  # every line counted; only the late older one stale
    assert gc.isenabled()  # the loader switches the cycle collector off only while it runs
    for holder in ("older-first", "newer-first"):
        status = await _stored(store, holder)
        assert status is not None and status.colour is Colour.GREEN
        assert int(status.updated_at.timestamp()) == NOW - 50


async def test_equal_updated_at_keeps_the_earlier_line(store: StatusWriter, tmp_path: Path) -> None:
    feed = _feed(tmp_path, [_rec("tie", NOW - 10, "yellow"), _rec("tie", NOW - 10, "red"), _rec("tie", NOW - 10)])
    assert await _load(store, feed) == {"applied": 1, "stale": 2, "rejected": 0}
    status = await _stored(store, "tie")
    assert status is not None and status.colour is Colour.YELLOW


async def test_an_older_record_never_overwrites_a_newer_stored_status(store: StatusWriter, tmp_path: Path) -> None:
    stored = HolderStatus(Colour.RED, datetime.fromtimestamp(NOW - 10, UTC), None, TestResult.NONE, False)
    assert await store.upsert_statuses([StatusRecord("h1", stored), StatusRecord("h2", stored)]) == [True, True]
    feed = _feed(tmp_path, [_rec("h1", NOW - 20), _rec("h2", NOW - 10), _rec("h3", NOW - 20)])
    assert await _load(store, feed) == {"applied": 1, "stale": 2, "rejected": 0}
    assert await _stored(store, "h1") == stored
    assert await _stored(store, "h2") == stored  # an equal updated_at does not overwrite either
    assert (await _stored(store, "h3")) is not None


async def test_duplicates_across_windows_and_buckets_split_over_several_arguments(
    store: StatusWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16 buckets: about 190 records a bucket, so with 50 records an argument each bucket spans several arguments,
    # and 600 records a call split a hash-tag group over several calls.
    monkeypatch.setattr(status_writer, "BUCKET_RECORDS", 50)
    monkeypatch.setattr(status_writer, "CALL_RECORDS", 600)
    monkeypatch.setattr(cli_status, "READ_BYTES", 4096)
    small = StatusWriter.standalone(store.redis, secret=SECRET, status_buckets=16, status_ttl_s=TTL_S)
    n = 3000
    first = [_rec(f"h{i}", NOW - 100) for i in range(n)]
    second = [_rec(f"h{i}", NOW - (50 if i % 2 else 200), "red") for i in range(n)]  # odd: newer, even: older
    try:
        counts = await _load(small, _feed(tmp_path, first + second), window=1000)
        assert counts == {"applied": n + n // 2, "stale": n // 2, "rejected": 0}
        for i in (0, 1, 2, 3, n - 2, n - 1):
            status = await _stored(small, f"h{i}")
            assert status is not None and status.colour is (Colour.RED if i % 2 else Colour.GREEN)
        # the same file in one window: the same outcome, the same counts
        await store.redis.flushdb()
        assert await _load(small, _feed(tmp_path, first + second), window=10 * n) == counts
        assert sum([await store.redis.hlen(k) async for k in store.redis.scan_iter("pg:st:*")]) == n
    finally:
        await small.aclose()


async def test_every_written_bucket_expires(store: StatusWriter, tmp_path: Path) -> None:
    await _load(store, _feed(tmp_path, [_rec(f"h{i}", NOW - 5) for i in range(5000)]), window=2000)
    keys = [key async for key in store.redis.scan_iter("pg:st:*")]
    assert len(keys) > 900  # 1024 buckets
    for key in keys:
        assert 0 < await store.redis.ttl(key) <= TTL_S


async def test_an_unchanged_bucket_keeps_its_expiry(store: StatusWriter, tmp_path: Path) -> None:
    await _load(store, _feed(tmp_path, [_rec("h1", NOW - 5)]))
    key, _ = store.locator.locate("h1")
    await store.redis.expire(key, 100)
    assert await _load(store, _feed(tmp_path, [_rec("h1", NOW - 6)])) == {"applied": 0, "stale": 1, "rejected": 0}
    assert 0 < await store.redis.ttl(key) <= 100


async def test_bad_lines_are_reported_by_number_and_never_stop_the_load(
    store: StatusWriter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = [_rec(f"g{i}", NOW - 5) for i in range(30)]
    lines: list[object] = [
        *good[:10],
        b"",  # blank: skipped, not counted
        b"{broken",
        _rec("h1", NOW - 5, "purple"),
        _rec("h2", NOW - 5, ["green"]),  # unhashable colour
        _rec("h3", NOW - 5, test_result=["negative"]),
        _rec("bad holder!", NOW - 5),
        _rec("h4", NOW + 3600),
        _rec("h5", NOW - 5, vaccinated=1),
        _rec("h6", NOW - 5, tested_at=0),
        _rec("h7", True),
        b"[1, 2]",
        *good[10:20],
        _rec("iso", NOW - 5, updated_at=datetime.fromtimestamp(NOW - 5, UTC).isoformat()),  # valid, not an int
        *good[20:],
    ]
    counts = await _load(store, _feed(tmp_path, lines))
    assert counts == {"applied": 31, "stale": 0, "rejected": 10}
    err = capsys.readouterr().err
    reported = [line.strip() for line in err.splitlines() if line.startswith("line ")]
    assert reported == [
        "line 12: invalid_json", "line 13: invalid_colour", "line 14: invalid_colour",
        "line 15: invalid_test_result", "line 16: invalid_holder", "line 17: updated_at_in_future",
        "line 18: invalid_vaccinated", "line 19: invalid_tested_at", "line 20: invalid_updated_at",
        "line 21: invalid_record",
    ]
    assert (await _stored(store, "iso")) is not None and (await _stored(store, "g29")) is not None


async def test_line_numbers_hold_across_read_boundaries_and_without_a_final_newline(
    store: StatusWriter, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_status, "READ_BYTES", 100)  # shorter than a line
    body = b"\r\n".join([orjson.dumps(_rec(f"h{i}", NOW - 5)) for i in range(40)] + [b"{oops"])
    path = tmp_path / "crlf.jsonl"
    path.write_bytes(body)  # CRLF line ends, the last (bad) line without one
    assert await _load(store, path) == {"applied": 40, "stale": 0, "rejected": 1}
    assert "line 41: invalid_json" in capsys.readouterr().err


async def test_no_raw_holder_reference_reaches_redis(store: StatusWriter, tmp_path: Path) -> None:
    holders = [f"citizen-{i:05d}" for i in range(300)]
    await _load(store, _feed(tmp_path, [_rec(h, NOW - 5) for h in holders]))
    dump: list[bytes] = []
    async for key in store.redis.scan_iter(count=1000):
        dump.append(key)
        if (await store.redis.type(key)) == b"hash":
            dump.extend(b"%s=%s" % kv for kv in (await store.redis.hgetall(key)).items())
    blob = b"\n".join(dump)
    assert all(h.encode() not in blob for h in holders)
    assert b"citizen" not in blob


async def test_the_api_path_answers_each_record_of_a_holder_twice_in_one_batch(store: StatusWriter) -> None:
    def status(colour: Colour, updated_s: int) -> HolderStatus:
        return HolderStatus(colour, datetime.fromtimestamp(updated_s, UTC), None, TestResult.NONE, False)

    records = [
        StatusRecord("a", status(Colour.RED, NOW - 100)), StatusRecord("b", status(Colour.GREEN, NOW - 50)),
        StatusRecord("a", status(Colour.GREEN, NOW - 50)), StatusRecord("b", status(Colour.RED, NOW - 100)),
        StatusRecord("c", status(Colour.YELLOW, NOW - 1)), StatusRecord("c", status(Colour.RED, NOW - 1)),
    ]
    assert await store.upsert_statuses(records) == [True, True, True, False, True, False]
    assert await _stored(store, "a") == status(Colour.GREEN, NOW - 50)
    assert await _stored(store, "b") == status(Colour.GREEN, NOW - 50)
    assert await _stored(store, "c") == status(Colour.YELLOW, NOW - 1)


async def test_the_script_is_loaded_again_after_the_server_forgets_it(store: StatusWriter, tmp_path: Path) -> None:
    await _load(store, _feed(tmp_path, [_rec("h1", NOW - 10)]))
    await store.redis.script_flush()
    assert await _load(store, _feed(tmp_path, [_rec("h1", NOW - 5)])) == {"applied": 1, "stale": 0, "rejected": 0}


def test_the_cli_prints_the_counts_line(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def flush() -> None:  # through the one client factory: the URL may name a cluster
        client = connect_redis(redis_url)
        await client.flushdb()
        await client.aclose()

    asyncio.run(flush())
    monkeypatch.setenv("PLACEGATE_SECRET", SECRET.hex())
    monkeypatch.setenv("PLACEGATE_STATUS_BUCKETS", "1024")
    feed = _feed(tmp_path, [_rec("h1", NOW - 10), _rec("h1", NOW - 20), b"nope"])
    code = main(["status", "load", str(feed), "--quiet", "--redis-url", redis_url, "--data-dir", str(tmp_path)])
    assert code == 1  # a rejected line
    out = capsys.readouterr().out
    assert out.startswith("applied=1 stale=1 rejected=1 seconds=") and out.rstrip().endswith("/s")


def _variants() -> list[dict[str, object]]:
    """Records at and around every edge of the validation, valid and not."""
    base = _rec("holder-1", NOW - 60)
    iso = datetime.fromtimestamp(NOW - 60, UTC).isoformat()
    edits: list[dict[str, object]] = [
        {}, {"holder": "x" * 64}, {"holder": "x" * 65}, {"holder": "a\nb"}, {"holder": ""}, {"holder": 7},
        {"colour": "yellow"}, {"colour": "red"}, {"colour": "Green"}, {"colour": None}, {"colour": ["red"]},
        {"test_result": "positive"}, {"test_result": "none", "tested_at": None}, {"test_result": None},
        {"test_result": "none"}, {"test_result": "", "tested_at": None}, {"test_result": 0, "tested_at": None},
        {"test_result": False, "tested_at": None}, {"test_result": {"a": 1}}, {"test_result": "maybe"},
        {"tested_at": None}, {"tested_at": 0}, {"tested_at": -1}, {"tested_at": 2**32 - 1}, {"tested_at": 2**32},
        {"tested_at": True}, {"tested_at": 1.5}, {"tested_at": iso}, {"tested_at": "yesterday"},
        {"vaccinated": True}, {"vaccinated": 1}, {"vaccinated": None}, {"vaccinated": "yes"},
        {"updated_at": NOW + 300}, {"updated_at": NOW + 301}, {"updated_at": 0}, {"updated_at": 1},
        {"updated_at": False}, {"updated_at": 1.0}, {"updated_at": iso}, {"updated_at": None},
        {"updated_at": iso.replace("+00:00", "Z")}, {"updated_at": iso.replace("+00:00", "+08:00")},
        {"updated_at": iso.replace("+00:00", "")}, {"updated_at": "1969-12-31T23:59:59+00:00"},
        {"updated_at": "2026-13-01T00:00:00+00:00"}, {"updated_at": "2106-02-07T06:28:16+00:00"},
        {"updated_at": iso, "tested_at": iso}, {"updated_at": iso, "tested_at": None, "test_result": None},
        {"tested_at": iso.replace("+00:00", ".5+00:00")}, {"tested_at": ""},
    ]
    variants = [{**base, **edit} for edit in edits]
    for missing in ("tested_at", "test_result", "vaccinated", "holder", "colour", "updated_at"):
        variants.append({k: v for k, v in base.items() if k != missing})
    variants.append({k: v for k, v in base.items() if k not in ("tested_at", "test_result")})
    return variants


def _record_by_record(lines: Sequence[bytes]) -> tuple[list[bytes], list[bytes], list[tuple[int, str]]]:
    from gateway.status.feed import RecordError, parse_status_packed

    holders, values, errors = [], [], []
    for i, line in enumerate(lines):
        try:
            holder, value = parse_status_packed(orjson.loads(line), now_s=NOW)
        except RecordError as exc:
            errors.append((i, exc.code))
        else:
            holders.append(holder.encode())
            values.append(value)
    return holders, values, errors


@pytest.mark.parametrize("variant", _variants(), ids=lambda v: orjson.dumps(v).decode()[:60])
def test_window_parsing_agrees_with_the_record_by_record_check(variant: dict[str, object]) -> None:
    from gateway.status.feed import parse_status_lines

    mixed = [orjson.dumps(_rec(f"w{i}", NOW - 30 - i, vaccinated=bool(i & 1))) for i in range(5)]
    mixed.insert(2, orjson.dumps(variant))
    assert parse_status_lines(mixed, now_s=NOW) == _record_by_record(mixed)
    # a window made of this variant only: the column-wise check, when it takes it, must agree as well
    same = [orjson.dumps({**variant, "holder": f"v{i}"} if "holder" in variant else variant) for i in range(3)]
    assert parse_status_lines(same, now_s=NOW) == _record_by_record(same)
