"""The holder status the health authority feeds, as the admission policy sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from crypto.native import Colour

__all__ = ["Colour", "HolderStatus", "TestResult"]


class TestResult(StrEnum):
    __test__ = False  # not a pytest class
    NONE = "none"
    NEGATIVE = "negative"
    POSITIVE = "positive"


@dataclass(frozen=True, slots=True)
class HolderStatus:
    """Live status of one holder: colour, latest nucleic-acid test and vaccination."""

    colour: Colour
    updated_at: datetime
    tested_at: datetime | None = None
    test_result: TestResult = TestResult.NONE
    vaccinated: bool = False
