"""CertLogic: the EU DCC business-rule language (evaluator, validator, values). Pure: no I/O, no clock."""

from __future__ import annotations

from policy.certlogic.errors import (
    CertLogicError,
    CertLogicTooCostlyError,
    CertLogicTooDeepError,
    CertLogicTooLargeError,
)
from policy.certlogic.evaluator import MAX_STEPS, evaluate
from policy.certlogic.validator import MAX_DEPTH, MAX_NODES, Issue, validate
from policy.certlogic.values import DateTime, Json, Value, json_equal, to_json

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_STEPS",
    "CertLogicError",
    "CertLogicTooCostlyError",
    "CertLogicTooDeepError",
    "CertLogicTooLargeError",
    "DateTime",
    "Issue",
    "Json",
    "Value",
    "evaluate",
    "json_equal",
    "to_json",
    "validate",
]
