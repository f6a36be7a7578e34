"""Errors of the CertLogic evaluator (eu-dcc-business-rules, certlogic/specification, version 1.3.3).

The specification lets an evaluator throw for an invalid expression (unknown operator, wrong form, a type
mismatch only found while evaluating); each refusal here has a stable ``code``, and the bounds that keep a hostile
expression from exhausting the process have codes of their own.

    PolicyError ("invalid_policy")
    └── CertLogicError ("certlogic_invalid")            an invalid expression, found before or while evaluating
        ├── CertLogicTooDeepError ("certlogic_too_deep")    expression nested deeper than MAX_DEPTH
        ├── CertLogicTooLargeError ("certlogic_too_large")  expression of more than MAX_NODES JSON values
        └── CertLogicTooCostlyError ("certlogic_too_costly")  evaluation over its step budget, or a result
                                                              too large to render
"""

from __future__ import annotations

from policy.errors import PolicyError

__all__ = ["CertLogicError", "CertLogicTooCostlyError", "CertLogicTooDeepError", "CertLogicTooLargeError"]


class CertLogicError(PolicyError):
    """The expression is not valid CertLogic (found upfront or while evaluating)."""

    code = "certlogic_invalid"


class CertLogicTooDeepError(CertLogicError):
    code = "certlogic_too_deep"


class CertLogicTooLargeError(CertLogicError):
    code = "certlogic_too_large"


class CertLogicTooCostlyError(CertLogicError):
    code = "certlogic_too_costly"
