"""The intake-event contract: what an exception event carries on ``pg:dispatch:intake``, built by the scan path
and by site managers' reports, read by the dispatch worker. Every field name of the stream is written here and
nowhere else.

Pure values: no aiohttp, no Redis, no clock (time arrives as arguments). The wire format is flat field/value
strings, as XADD stores them:

    scan    event_id source=scan event_class reason place jurisdiction device occurred_at holder_sealed subject
            purpose [reading_sealed]
    report  event_id source=report event_class place jurisdiction reporter occurred_at note purpose received_at

``occurred_at`` is Unix milliseconds (a scan's is the gateway's own time; a report's is what the manager says);
``received_at`` (reports, Unix milliseconds) is when the gateway took the report, the instant its case dates
from; ``holder_sealed`` is the holder reference sealed with AES-256-GCM and
bound to the event id (``crypto/sealing.py`` ``event_binding``), empty for a code whose holder is unknown;
``subject`` is the holder's keyed hash (``crypto/subject.py``: stable across days, so exceptions of one holder
can be merged; never the scan log's day pseudonym), empty with ``holder_sealed``; ``note`` is empty when there
is none; ``reading_sealed`` (a ``fever`` event only, issue 18) is the sentry's temperature reading sealed like a
note text (the note sub-key) and bound to the event id plus ``:reading`` (``crypto/sealing.py``
``reading_binding``): the one place a reading is kept, until the case's holder key takes it.

The scan log's day pseudonym and the day never leave that day's log partition (PRIVACY.md, issue 14): events
written before carried ``day`` and ``pseudonym``; they are still read, and those fields (``LINKING_FIELDS``)
are dropped wherever an event is copied (the case's holder key, dead letters).

    MalformedEventError ("malformed_event")               can never become a case: dead-lettered at once
    └── UnknownIntakeClassError ("unknown_event_class")   an event class outside ``EventClass``
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

from policy.purpose import PURPOSE
from policy.routing import EventClass

__all__ = [
    "LINKING_FIELDS",
    "REPORT_EVENT_CLASSES",
    "REPORT_FIELDS",
    "SCAN_EVENT_CLASSES",
    "SCAN_FIELDS",
    "IntakeEvent",
    "MalformedEventError",
    "Source",
    "UnknownIntakeClassError",
    "decode_fields",
    "parse_event",
    "report_event_fields",
    "scan_event_class",
    "scan_event_fields",
    "scan_event_place_reason",
]

Source = Literal["scan", "report"]

# Scan deny reasons that name their own event class; every other exception reason (a bad signature, an
# unknown or revoked key, a tampered DCC header...) is a forged code.
SCAN_EVENT_CLASSES: Mapping[str, str] = {
    "status_red": EventClass.STATUS_RED.value,
    "status_yellow": EventClass.STATUS_YELLOW.value,
    "replayed": EventClass.REPLAYED.value,
    "code_shared": EventClass.CODE_SHARED.value,
    "fever": EventClass.FEVER.value,
}
_FORGED = EventClass.FORGED_CODE.value
# What a site manager may report (``POST /v1/reports``); the scan classes are raised by the scan path only.
REPORT_EVENT_CLASSES: frozenset[EventClass] = frozenset(
    {
        EventClass.REFUSED_VERIFICATION,
        EventClass.FORCED_ENTRY,
        EventClass.SUSPECTED_FORGERY,
        EventClass.DEVICE_FAULT,
        EventClass.CROWDING,
        EventClass.OTHER,
    }
)
SCAN_FIELDS: tuple[str, ...] = (
    "event_id", "source", "event_class", "reason", "place", "jurisdiction", "device", "occurred_at",
    "holder_sealed", "subject", "purpose",
)  # fmt: skip
# Fields of scan events written before issue 14 that link a case to the scan log's day partition; read without
# error, never copied.
LINKING_FIELDS: frozenset[str] = frozenset({"day", "pseudonym"})
REPORT_FIELDS: tuple[str, ...] = (
    "event_id", "source", "event_class", "place", "jurisdiction", "reporter", "occurred_at", "note", "purpose",
    "received_at",
)  # fmt: skip
_SOURCES: Mapping[str, Source] = {"scan": "scan", "report": "report"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EVENT_CLASSES = frozenset(c.value for c in EventClass)


class MalformedEventError(Exception):
    """An intake entry that can never become a case (a missing field, an unknown source, a bad time)."""

    code: ClassVar[str] = "malformed_event"


class UnknownIntakeClassError(MalformedEventError):
    code = "unknown_event_class"


@dataclass(frozen=True, slots=True)
class IntakeEvent:
    """One exception event as the scan path or a site manager's report wrote it."""

    event_id: str
    source: Source
    event_class: EventClass
    place_id: str
    jurisdiction: str
    actor_id: str  # the scanning device, the reporting manager
    occurred_at: datetime
    note: str | None
    holder: dict[str, str] | None  # the sealed holder reference (bound to the event id) and purpose; never opened
    subject: str | None = None  # the holder's keyed hash (crypto/subject.py), for merging; None without a holder
    received_at: datetime | None = None  # intake time of a report (None: a scan, or a report from before issue 15)
    reading: str | None = None  # a fever event's sealed temperature reading (issue 18); never opened here


def scan_event_class(reason: str) -> str:
    """The event class of a scan exception, from its deny reason."""
    return SCAN_EVENT_CLASSES.get(reason, _FORGED)


def scan_event_fields(
    event_id: str, reason: str, place_id: str, jurisdiction: str, device_id: str, occurred_ms: str,
    holder_sealed: str, subject: str, reading_sealed: str = "",
) -> tuple[str, ...]:  # fmt: skip
    """A scan exception's event as flat field/value pairs in XADD order (the scan path's hot loop: no dict).

    :param occurred_ms: the scan's time in Unix milliseconds, as the scan-log record writes it.
    :param holder_sealed: the holder reference sealed with ``event_binding(event_id)``, or "" when the code
        named no holder.
    :param subject: ``SubjectHasher.of(holder_ref)``, or "" with ``holder_sealed``.
    :param reading_sealed: a fever event's sealed reading, or "" (then the field is left out).
    """
    fields = (
        "event_id", event_id, "source", "scan", "event_class", SCAN_EVENT_CLASSES.get(reason, _FORGED),
        "reason", reason, "place", place_id, "jurisdiction", jurisdiction, "device", device_id,
        "occurred_at", occurred_ms, "holder_sealed", holder_sealed, "subject", subject, "purpose", PURPOSE,
    )  # fmt: skip
    return (*fields, "reading_sealed", reading_sealed) if reading_sealed else fields


def scan_event_place_reason(event: tuple[str, ...]) -> tuple[str, str]:
    """The place and deny reason of a scan event as ``scan_event_fields`` built it (the per-place exception
    counters). Looked up by field name on the even positions, so a value never passes for a name."""
    names = event[::2]
    return event[2 * names.index("place") + 1], event[2 * names.index("reason") + 1]


def report_event_fields(
    *, event_id: str, event_class: EventClass, place_id: str, jurisdiction: str, reporter: str,
    occurred_at: datetime, note: str | None, received_at: datetime,
) -> dict[str, str]:  # fmt: skip
    """A site manager's report as the intake stream stores it. :raises ValueError: not a reportable class."""
    if event_class not in REPORT_EVENT_CLASSES:
        raise ValueError("not a reportable event class")
    return {
        "event_id": event_id, "source": "report", "event_class": event_class.value, "place": place_id,
        "jurisdiction": jurisdiction, "reporter": reporter, "occurred_at": str(_millis(occurred_at)),
        "note": note or "", "purpose": PURPOSE, "received_at": str(_millis(received_at)),
    }  # fmt: skip


def decode_fields(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    """An entry as Redis returns it, as text. :raises MalformedEventError: a name or value is not UTF-8."""
    try:
        return {k.decode(): v.decode() for k, v in raw.items()}
    except UnicodeDecodeError:
        raise MalformedEventError("intake event is not UTF-8") from None


def parse_event(fields: Mapping[str, str]) -> IntakeEvent:
    """Read an intake stream entry. :raises MalformedEventError: it can never become a case."""
    try:
        source = _SOURCES[fields["source"]]
        event_class = fields["event_class"]
        if event_class not in _EVENT_CLASSES:
            raise UnknownIntakeClassError("unknown event class")
        occurred_at = _EPOCH + timedelta(milliseconds=int(fields["occurred_at"]))
        received_raw = fields.get("received_at", "")
        received_at = _EPOCH + timedelta(milliseconds=int(received_raw)) if received_raw else None
        sealed = fields.get("holder_sealed", "")
        # Only these two reach the case's holder key: an old event's ``day`` and ``pseudonym`` are dropped here.
        holder = {"holder_sealed": sealed, "purpose": fields.get("purpose", "")} if sealed else None
        return IntakeEvent(
            event_id=fields["event_id"],
            source=source,
            event_class=EventClass(event_class),
            place_id=fields["place"],
            jurisdiction=fields["jurisdiction"],
            actor_id=fields.get("device") or fields.get("reporter") or source,
            occurred_at=occurred_at,
            note=fields.get("note") or None,
            holder=holder,
            subject=(fields.get("subject") or None) if sealed else None,
            received_at=received_at,
            reading=fields.get("reading_sealed") or None,
        )
    except (KeyError, ValueError, OverflowError) as exc:
        raise MalformedEventError(f"unreadable intake event: {exc.__class__.__name__}") from None


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)
