"""Parsing the health authority's status records (HTTP feed and `placegate status load` share it)."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import orjson

from crypto.native import Colour
from gateway.status.cache import StatusRecord, pack_columns, pack_fields, pack_flags
from policy.idcard import InvalidIdCardError, normalise_id_card
from policy.status import HolderStatus, TestResult

__all__ = ["MAX_FUTURE_S", "RecordError", "parse_status_lines", "parse_status_packed", "parse_status_record"]

_HOLDER = r"[A-Za-z0-9._-]{1,64}"
_HOLDER_RE = re.compile(_HOLDER)
_HOLDERS_RE = re.compile(rf"{_HOLDER}(?:\n{_HOLDER})*")  # a window's holders joined by newlines
_COLOURS = {"green": Colour.GREEN, "yellow": Colour.YELLOW, "red": Colour.RED}
_RESULTS = {r.value: r for r in TestResult}
# (colour, test_result, vaccinated, tested_at absent) -> flags, for every valid combination and nothing else: the
# whole-window check of parse_status_lines. vaccinated is checked to be a bool first (1 == True as a dict key).
_FLAGS: dict[tuple[object, object, bool, bool], int] = {
    (name, raw, vaccinated, result is TestResult.NONE): pack_flags(colour, result, vaccinated)
    for name, colour in _COLOURS.items()
    for raw, result in [(None, TestResult.NONE), *_RESULTS.items()]
    for vaccinated in (False, True)
}
_MAX_S = 2**32 - 1
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
    raw_colour = obj.get("colour")
    colour = _COLOURS.get(raw_colour) if isinstance(raw_colour, str) else None
    if colour is None:
        raise RecordError("invalid_colour")
    raw_result = obj.get("test_result") or "none"
    result = _RESULTS.get(raw_result) if isinstance(raw_result, str) else None
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


def _id_card(obj: dict[str, object]) -> str | None:
    """The record's optional ``id_card``, normalised to 18 characters (issue 18); never echoed in an error."""
    raw = obj.get("id_card")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise RecordError(InvalidIdCardError.code)
    try:
        return normalise_id_card(raw)
    except InvalidIdCardError:
        raise RecordError(InvalidIdCardError.code) from None


def parse_status_record(obj: object, *, now: datetime) -> StatusRecord:
    """Validate one record ``{holder, colour, tested_at, test_result, vaccinated, updated_at[, id_card]}``.

    :raises RecordError: with a stable code naming the bad field.
    """
    holder, updated_s, tested_s, colour, result, vaccinated = _validate(obj, int(now.timestamp()))
    assert isinstance(obj, dict)  # _validate refused anything else
    id_card = _id_card(obj)
    tested_at = datetime.fromtimestamp(tested_s, UTC) if tested_s else None
    status = HolderStatus(colour, datetime.fromtimestamp(updated_s, UTC), tested_at, result, vaccinated)
    return StatusRecord(holder, status, id_card)


def parse_status_packed(obj: object, *, now_s: int) -> tuple[str, bytes]:
    """The same validation, straight to (holder, packed value): the bulk loader's path, without value objects.

    :raises RecordError: with a stable code naming the bad field.
    """
    holder, updated_s, tested_s, colour, result, vaccinated = _validate(obj, now_s)
    assert isinstance(obj, dict)  # _validate refused anything else
    _id_card(obj)
    return holder, pack_fields(updated_s, tested_s, colour, result, vaccinated)


def parse_status_lines(
    lines: Sequence[bytes], *, now_s: int, id_cards: list[tuple[str, str]] | None = None
) -> tuple[list[bytes], list[bytes], list[tuple[int, str]]]:
    """JSON lines to (encoded holder references, packed values, (line index, error code) per bad line).

    Blank lines are skipped. A window of valid records in the common shape (integer times) is checked column by
    column; any other window goes record by record, with the same outcome. ``id_cards`` receives (normalised
    number, holder reference) for every valid record that carries an ``id_card`` (issue 18).
    """
    try:
        objs = list(map(orjson.loads, lines))
    except orjson.JSONDecodeError:
        pass
    else:
        fast = _packed_window(objs, now_s)
        if fast is not None:
            return fast[0], fast[1], []
    holders: list[bytes] = []
    values: list[bytes] = []
    errors: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            holder, value = parse_status_packed(obj, now_s=now_s)
        except orjson.JSONDecodeError:
            errors.append((i, "invalid_json"))
        except RecordError as exc:
            errors.append((i, exc.code))
        else:
            holders.append(holder.encode())
            values.append(value)
            if id_cards is not None and (number := _id_card(obj)) is not None:
                id_cards.append((number, holder))
    return holders, values, errors


def _packed_window(objs: list[Any], now_s: int) -> tuple[list[bytes], list[bytes]] | None:
    """``parse_status_packed`` over a whole window, column by column, or None when any record fails a check
    (the caller then goes record by record, for the error codes). Accepts exactly what ``_validate`` accepts."""
    if not objs or set(map(type, objs)) != {dict}:
        return None
    if any(map(operator.contains, objs, repeat("id_card"))):
        return None  # records naming an identity card go record by record (rare: the sentries' residents)
    get: Callable[..., Any] = dict.get
    holders = list(map(get, objs, repeat("holder")))
    vaccinated = list(map(get, objs, repeat("vaccinated"), repeat(False)))
    try:
        joined = "\n".join(holders)
    except TypeError:
        return None
    if joined.count("\n") != len(objs) - 1 or _HOLDERS_RE.fullmatch(joined) is None:
        return None
    if not set(map(type, vaccinated)) <= {bool}:
        return None
    updated = _seconds_column(list(map(get, objs, repeat("updated_at"))))
    tested = _seconds_column(list(map(get, objs, repeat("tested_at"))))
    if updated is None or tested is None or None in updated:
        return None
    if min(updated) <= 0 or max(updated) > min(now_s + MAX_FUTURE_S, _MAX_S):
        return None
    known = list(filter(None, tested))
    if 0 in tested or (known and (min(known) <= 0 or max(known) > _MAX_S)):
        return None
    keys = zip(
        map(get, objs, repeat("colour")), map(get, objs, repeat("test_result")), vaccinated,
        map(operator.not_, tested), strict=True,
    )
    try:
        flags = list(map(_FLAGS.__getitem__, keys))
    except (KeyError, TypeError):  # TypeError: an unhashable value (a list or an object)
        return None
    if len(known) != len(tested):
        tested = [t or 0 for t in tested]
    return joined.encode().split(b"\n"), pack_columns(updated, tested, flags)


def _seconds_column(values: list[Any]) -> list[Any] | None:
    """Integers and None as they are, ISO 8601 strings as ``_seconds`` reads them; None when that fails or for
    any other type (the range checks are the caller's)."""
    kinds = set(map(type, values))
    if kinds <= {int, type(None)}:
        return values
    if not kinds <= {int, str, type(None)}:
        return None
    cache = _ISO_SECONDS
    out: list[Any] = list(map(cache.get, values, values))  # a feed repeats its times: most strings are seen before
    if str in set(map(type, out)):
        for i, value in enumerate(out):
            if type(value) is str:
                try:
                    out[i] = cache[value] = _seconds(value, "time")
                except RecordError:
                    return None
        if len(cache) > _ISO_SECONDS_MAX:
            cache.clear()
    return out


_ISO_SECONDS: dict[str, int] = {}  # ISO 8601 time -> Unix seconds (a pure function of the string)
_ISO_SECONDS_MAX = 1 << 17
