"""Parsing the health authority's status records (HTTP feed and `placegate status load` share it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from crypto.native import Colour
from gateway.status_cache import StatusRecord
from policy.status import HolderStatus, TestResult

__all__ = ["MAX_FUTURE_S", "RecordError", "parse_status_record"]

_HOLDER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_COLOURS = {"green": Colour.GREEN, "yellow": Colour.YELLOW, "red": Colour.RED}
# A record dated further ahead would win last-writer-wins against every honest update until then.
MAX_FUTURE_S = 300


class RecordError(Exception):
    """A status record that cannot be applied; ``code`` is reported per record."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _time(value: object, what: str, *, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**32:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"invalid_{what}") from None
        if parsed.tzinfo is not None and 0 < parsed.timestamp() < 2**32:
            return parsed.astimezone(UTC)
    raise RecordError(f"invalid_{what}")


def parse_status_record(obj: object, *, now: datetime) -> StatusRecord:
    """Validate one record ``{holder, colour, tested_at, test_result, vaccinated, updated_at}``.

    :raises RecordError: with a stable code naming the bad field.
    """
    if not isinstance(obj, dict):
        raise RecordError("invalid_record")
    holder = obj.get("holder")
    if not isinstance(holder, str) or not _HOLDER_RE.fullmatch(holder):
        raise RecordError("invalid_holder")
    colour = _COLOURS.get(obj.get("colour"))  # type: ignore[arg-type]
    if colour is None:
        raise RecordError("invalid_colour")
    try:
        result = TestResult(obj.get("test_result") or "none")
    except ValueError:
        raise RecordError("invalid_test_result") from None
    vaccinated = obj.get("vaccinated", False)
    if not isinstance(vaccinated, bool):
        raise RecordError("invalid_vaccinated")
    updated_at = _time(obj.get("updated_at"), "updated_at")
    tested_at = _time(obj.get("tested_at"), "tested_at", optional=True)
    assert updated_at is not None
    if updated_at > now + timedelta(seconds=MAX_FUTURE_S):
        raise RecordError("updated_at_in_future")
    if (tested_at is None) != (result is TestResult.NONE):
        raise RecordError("invalid_test_result")
    status = HolderStatus(colour, updated_at, tested_at, result, vaccinated)
    return StatusRecord(holder, status)
