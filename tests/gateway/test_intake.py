"""The intake-event contract (``gateway.intake``): every event class, from the scan path and from reports, goes
through the real Redis stream and parses back to the same values; anything unreadable is a MalformedEventError."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from gateway.intake import (
    LINKING_FIELDS,
    REPORT_EVENT_CLASSES,
    REPORT_FIELDS,
    SCAN_EVENT_CLASSES,
    SCAN_FIELDS,
    IntakeEvent,
    MalformedEventError,
    UnknownIntakeClassError,
    decode_fields,
    parse_event,
    report_event_fields,
    scan_event_class,
    scan_event_fields,
)
from gateway.keyspace import DISPATCH_INTAKE
from policy.admission import EXCEPTION_REASONS
from policy.routing import EventClass

AT = datetime(2026, 3, 2, 8, 15, 30, 123_000, tzinfo=UTC)  # whole milliseconds: the wire keeps milliseconds
AT_MS = "1772439330123"
# The scan path names a class for four deny reasons; every other exception reason is a forged code.
SUBJECT = "sh_" + "5" * 32
SCAN_REASONS = {"status_red": "status_red", "status_yellow": "status_yellow", "replayed": "replayed",
                "code_shared": "code_shared", "bad_signature": "forged_code", "fever": "fever"}


async def _through_redis(redis: Redis, fields: tuple[str, ...]) -> dict[str, str]:
    """Write the flat pairs as the scan path does (XADD ... * f v ...) and read them back as the worker does."""
    mid = await redis.execute_command("XADD", DISPATCH_INTAKE, "*", *fields)
    ((read_id, raw),) = await redis.xrange(DISPATCH_INTAKE, min=mid, max=mid)
    assert read_id == mid
    return decode_fields(raw)


def test_the_round_trips_cover_every_event_class() -> None:
    scan_classes = {scan_event_class(r) for r in EXCEPTION_REASONS}
    assert scan_classes == set(SCAN_REASONS.values()) == set(SCAN_EVENT_CLASSES.values()) | {"forged_code"}
    assert scan_classes | {c.value for c in REPORT_EVENT_CLASSES} == {c.value for c in EventClass}
    assert scan_classes.isdisjoint(c.value for c in REPORT_EVENT_CLASSES)


@pytest.mark.parametrize(("reason", "event_class"), sorted(SCAN_REASONS.items()))
@pytest.mark.parametrize("sealed", ["s2.sealed-holder", ""])
async def test_a_scan_event_of_every_class_round_trips_through_the_stream(
    redis: Redis, reason: str, event_class: str, sealed: str
) -> None:
    subject = SUBJECT if sealed else ""
    fields = scan_event_fields("0190abcdef0123456789ab", reason, "place-a", "city/d1/s1/g1/c1", "dev-a", AT_MS,
                               sealed, subject)  # fmt: skip
    assert fields[0::2] == SCAN_FIELDS
    assert not LINKING_FIELDS & set(SCAN_FIELDS)
    event = parse_event(await _through_redis(redis, fields))
    holder = {"holder_sealed": sealed, "purpose": "epidemic_prevention"}
    assert event == IntakeEvent(
        event_id="0190abcdef0123456789ab", source="scan", event_class=EventClass(event_class), place_id="place-a",
        jurisdiction="city/d1/s1/g1/c1", actor_id="dev-a", occurred_at=AT, note=None,
        holder=holder if sealed else None, subject=subject or None,
    )  # fmt: skip


@pytest.mark.parametrize("event_class", sorted(REPORT_EVENT_CLASSES))
@pytest.mark.parametrize("note", ["door forced at 08:15", None])
async def test_a_report_of_every_class_round_trips_through_the_stream(
    redis: Redis, event_class: EventClass, note: str | None
) -> None:
    fields = report_event_fields(
        event_id="r0190abcdef01", event_class=event_class, place_id="place-z", jurisdiction="city/d2/s9/g1/c1",
        reporter="sm-z", occurred_at=AT, note=note, received_at=AT + timedelta(hours=3),
    )  # fmt: skip
    assert tuple(fields) == REPORT_FIELDS
    flat = tuple(x for kv in fields.items() for x in kv)
    event = parse_event(await _through_redis(redis, flat))
    assert event == IntakeEvent(
        event_id="r0190abcdef01", source="report", event_class=event_class, place_id="place-z",
        jurisdiction="city/d2/s9/g1/c1", actor_id="sm-z", occurred_at=AT, note=note, holder=None,
        received_at=AT + timedelta(hours=3),
    )  # fmt: skip


async def test_an_event_written_before_issue_14_is_read_and_its_day_and_pseudonym_are_dropped(redis: Redis) -> None:
    """Events already in the stream carry the day and the day pseudonym: still readable, never carried on."""
    before = ("event_id", "e1", "source", "scan", "event_class", "status_red", "reason", "status_red",
              "place", "place-a", "jurisdiction", "city/d1", "device", "dev-a", "occurred_at", AT_MS,
              "day", "20260302", "pseudonym", "p" * 32, "holder_sealed", "s1.x", "purpose",
              "epidemic_prevention")  # fmt: skip
    event = parse_event(await _through_redis(redis, before))
    assert event.holder == {"holder_sealed": "s1.x", "purpose": "epidemic_prevention"}
    assert event.subject is None
    assert "p" * 32 not in repr(event) and "20260302" not in repr(event)


def test_a_report_class_is_refused_for_a_scan_only_class() -> None:
    with pytest.raises(ValueError):
        report_event_fields(event_id="r1", event_class=EventClass.STATUS_RED, place_id="place-a",
                            jurisdiction="city/d1", reporter="sm-a", occurred_at=AT, note=None,
                            received_at=AT)  # fmt: skip


_GOOD = dict(zip(SCAN_FIELDS, scan_event_fields("e1", "status_red", "place-a", "city/d1", "dev-a", AT_MS,
                                                 "s2.x", SUBJECT)[1::2], strict=True))  # fmt: skip


@pytest.mark.parametrize(
    ("change", "code"),
    [
        *[({name: None}, "malformed_event") for name in
          ("event_id", "source", "event_class", "place", "jurisdiction", "occurred_at")],
        ({"source": "gate"}, "malformed_event"),
        ({"event_class": "fire"}, "unknown_event_class"),
        ({"event_class": ""}, "unknown_event_class"),
        ({"occurred_at": "2026-03-02T08:15:30Z"}, "malformed_event"),
        ({"occurred_at": ""}, "malformed_event"),
        ({"occurred_at": "9" * 30}, "malformed_event"),
    ],
)
def test_an_event_that_can_never_become_a_case_is_malformed(change: dict[str, str | None], code: str) -> None:
    fields = {k: v for k, v in {**_GOOD, **change}.items() if v is not None}
    with pytest.raises(MalformedEventError) as caught:
        parse_event(fields)
    assert caught.value.code == code
    assert isinstance(caught.value, UnknownIntakeClassError) == (code == "unknown_event_class")


def test_an_event_that_is_not_utf8_is_malformed() -> None:
    with pytest.raises(MalformedEventError) as caught:
        decode_fields({b"event_id": b"\xff\xfe", b"source": b"scan"})
    assert caught.value.code == "malformed_event"


def test_the_intake_module_imports_neither_aiohttp_nor_redis() -> None:
    script = (
        "import sys, gateway.intake\n"
        "print(','.join(m for m in ('aiohttp', 'redis', 'prometheus_client') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
