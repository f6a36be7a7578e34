"""The calendar file of the dispatch settings reaches the deadline table the gateway uses, and a bad one stops the
start naming its variable (the calendar itself: tests/policy/test_calendar.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.dispatch.runtime import load_tables
from gateway.serve import check_tables
from gateway.settings import DispatchSettings, Settings, SettingsError
from policy.calendar import ALWAYS
from policy.routing import EventClass

DEFAULTS = "[defaults]\n" + "".join(f"{stage} = 1\n" for stage in (
    "reported_urgent_h", "reported_normal_h", "accepted_h", "filed_urgent_h", "filed_normal_h", "dispatched_h",
    "fed_back_h", "checking_h", "hung_d"))  # fmt: skip
TABLE = 'version = "t.1"\n[working_time]\nother = ["in_progress"]\n' + DEFAULTS + "".join(
    f"[classes.{c.value}]\nin_progress_h = 8\nextension_h = 4\n" for c in EventClass
)
CALENDAR = '[hours]\nmon = ["09:00-17:00"]\ntue = ["09:00-17:00"]\n'


def _files(tmp_path: Path, calendar: str) -> DispatchSettings:
    (tmp_path / "deadlines.toml").write_text(TABLE, "utf-8")
    (tmp_path / "calendar.toml").write_text(calendar, "utf-8")
    return DispatchSettings(deadlines_file=tmp_path / "deadlines.toml", calendar_file=tmp_path / "calendar.toml")


def test_the_calendar_file_reaches_the_deadline_table(tmp_path: Path) -> None:
    _, deadlines = load_tables(_files(tmp_path, CALENDAR))
    assert deadlines.calendar is not ALWAYS
    monday = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    assert deadlines.calendar.working_on(monday.date())
    assert not deadlines.calendar.working_on(monday.date() + timedelta(days=2))  # Wednesday: no hours
    _, default = load_tables(DispatchSettings(deadlines_file=tmp_path / "deadlines.toml"))
    assert default.calendar is ALWAYS  # no calendar file: 24x7


def test_a_bad_calendar_stops_the_start_naming_its_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PLACEGATE_DISPATCH_CALENDAR_FILE") as info:
        check_tables(Settings(dispatch=_files(tmp_path, '[hours]\nmon = ["17:00-09:00"]\n')))
    assert "must start before it ends" in str(info.value)
