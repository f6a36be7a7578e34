"""Parsing the health authority's status records (HTTP feed and `placegate status load` share it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from crypto.native import Colour
from gateway.status_cache import StatusRecord, pack_fields
from policy.status import HolderStatus, TestResult

__all__ = ["MAX_FUTURE_S", "RecordError", "parse_status_packed", "parse_status_record"]

_HOLDER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_COLOURS = {"green": Colour.GREEN, "yellow": Colour.YELLOW, "red": Colour.RED}
_RESULTS = {r.value: r for r in TestResult}
# A record dated further ahead would win last-writer-wins against every honest update until then.
MAX_FUTURE_S = 300


class RecordError(Exception):
    """A status record that cannot be applied; ``code`` is reported per record."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _seconds(value: object, what: str, *, optional: bool = False) -> int:
    """Unix seconds from an ISO 8601 time with offset or an integer; 0 for an absent optional time."""
    if value is None and optional:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**32:
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"invalid_{what}") from None
        if parsed.tzinfo is not None:
            seconds = int(parsed.timestamp())
            if 0 < seconds < 2**32:
                return seconds
    raise RecordError(f"invalid_{what}")


def _validate(obj: object, now_s: int) -> tuple[str, int, int, Colour, TestResult, bool]:
    if not isinstance(obj, dict):
        raise RecordError("invalid_record")
    holder = obj.get("holder")
    if not isinstance(holder, str) or not _HOLDER_RE.fullmatch(holder):
        raise RecordError("invalid_holder")
    colour = _COLOURS.get(obj.get("colour"))  # type: ignore[arg-type]
    if colour is None:
        raise RecordError("invalid_colour")
    result = _RESULTS.get(obj.get("test_result") or "none")
    if result is None:
        raise RecordError("invalid_test_result")
    vaccinated = obj.get("vaccinated", False)
    if not isinstance(vaccinated, bool):
        raise RecordError("invalid_vaccinated")
    updated_s = _seconds(obj.get("updated_at"), "updated_at")
    tested_s = _seconds(obj.get("tested_at"), "tested_at", optional=True)
    if updated_s > now_s + MAX_FUTURE_S:
        raise RecordError("updated_at_in_future")
    if (tested_s == 0) != (result is TestResult.NONE):
        raise RecordError("invalid_test_result")
    return holder, updated_s, tested_s, colour, result, vaccinated


def parse_status_record(obj: object, *, now: datetime) -> StatusRecord:
    """Validate one record ``{holder, colour, tested_at, test_result, vaccinated, updated_at}``.

    :raises RecordError: with a stable code naming the bad field.
    """
    holder, updated_s, tested_s, colour, result, vaccinated = _validate(obj, int(now.timestamp()))
    tested_at = datetime.fromtimestamp(tested_s, UTC) if tested_s else None
    status = HolderStatus(colour, datetime.fromtimestamp(updated_s, UTC), tested_at, result, vaccinated)
    return StatusRecord(holder, status)


def parse_status_packed(obj: object, *, now_s: int) -> tuple[str, bytes]:
    """The same validation, straight to (holder, packed value): the bulk loader's path, without value objects.

    :raises RecordError: with a stable code naming the bad field.
    """
    holder, updated_s, tested_s, colour, result, vaccinated = _validate(obj, now_s)
    return holder, pack_fields(updated_s, tested_s, colour, result, vaccinated)
