"""Gateway errors and the ONE table from error code to HTTP status.

    GatewayError ("internal_error", 500)
    ├── BadRequestError ("invalid_request", 400)
    │   ├── MalformedJsonError ("malformed_json", 400)
    │   ├── MalformedCodeError ("malformed_code", 400)   not base45 / no known prefix: not a code at all
    │   ├── "invalid_id_card" (400)                     not a GB 11643 identity card number (issue 18)
    │   └── "invalid_temperature" (400)                 a body temperature outside 30.0-45.0 °C (issue 18)
    ├── AuthError ("missing_token" / "invalid_token", 401)
    ├── ForbiddenError ("forbidden", 403)
    │   └── "id_card_not_allowed" (403)                 the device may not present identity cards (issue 18)
    ├── NotFoundError ("not_found", 404)
    ├── RequestTimeoutError ("request_timeout", 408)     the body did not arrive within its read deadline
    ├── PayloadTooLargeError ("payload_too_large", 413)
    ├── UnsupportedMediaTypeError ("unsupported_media_type", 415)
    ├── StoreUnavailableError ("store_unavailable", 503)   Redis failed; redisio.redis_errors translates
    ├── NotDurableError ("not_durable", 503)             WAITAOF did not confirm the write on disk in time
    ├── RateLimitedError ("rate_limited", 429)          carries the Retry-After seconds
    └── CaseRefusedError (a policy/case_errors.py code, 403/404/409/422)   the dispatch core refused

A code that decodes but fails verification is not an error here: it is a ``deny`` with the crypto error's code.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ERROR_STATUS",
    "AuthError",
    "BadRequestError",
    "CaseRefusedError",
    "ForbiddenError",
    "GatewayError",
    "MalformedCodeError",
    "MalformedJsonError",
    "NotDurableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RequestTimeoutError",
    "StoreUnavailableError",
    "UnsupportedMediaTypeError",
    "status_for",
]

ERROR_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "malformed_json": 400,
    "malformed_code": 400,
    # the digital sentry (issue 18): an identity card number or a temperature that cannot be a reading
    "invalid_id_card": 400,
    "invalid_temperature": 400,
    "missing_token": 401,
    "invalid_token": 401,
    "forbidden": 403,
    "id_card_not_allowed": 403,  # issue 18: a device registered without `devices add --id-card`
    "not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "too_many_requests": 429,
    "internal_error": 500,
    "store_unavailable": 503,
    # dispatch core (policy/case_errors.py codes and the gateway's own); see docs/dispatch-operations.md
    "illegal_transition": 409,
    "extension_already_used": 409,
    "extension_already_requested": 409,
    "already_top_level": 409,
    "case_conflict": 409,
    "not_permitted_role": 403,
    "not_case_department": 404,  # hides the case like any out-of-scope access
    "reason_required": 422,
    "note_too_long": 422,
    "closure_kind_set_by_rules": 422,  # issue 15: the closure kind follows from the case, never the caller
    "supervisor_required": 403,  # issue 15: only a supervisor passes a check or closes a case
    "escalated_above_you": 403,  # issue 15: escalation moved authority to a superior centre
    "invalid_argument": 422,
    "unknown_event_class": 422,
    "invalid_jurisdiction": 422,
    "no_route": 422,
    "unknown_action": 422,
    "invalid_range": 422,
    "invalid_report_time": 422,
    "case_error": 422,
    "transition_refused": 422,
    "no_holder_reference": 404,
    # honest routing (issue 15): the city's unrouted queue, departments serving the case's place
    "case_unrouted": 409,
    "department_out_of_jurisdiction": 422,
    # holder reads (GET /v1/cases/{id}/holder, issue 14): minimal, bound to the case, rate-limited per principal
    "case_closed": 409,
    "holder_not_needed": 403,  # the case's event class needs no holder (setting holder_read_classes)
    "unseal_failed": 409,  # the sealed reference is not this case's (copied from another) or not readable
    "rate_limited": 429,
    # case attachments (gateway/dispatch/attachments.py, policy/evidence.py)
    "attachment_too_large": 413,
    "unsupported_attachment_type": 415,  # the content is no JPEG, PNG or PDF, whatever was declared
    "attachments_full": 409,
    "not_durable": 503,
    # privacy (policy/purpose.py codes): who may read personal data, for what, over which window
    "purpose_not_allowed": 403,
    "approval_required": 403,
    "approval_invalid": 403,  # unknown, foreign, used and expired approvals look the same
    "case_ref_required": 422,
    "outside_retention": 422,  # past the retention window the day keys are gone: unlinkable
    "range_too_long": 422,
    "page_too_large": 422,
    # the web console (gateway/console/): a form without this session's form token, a page of another role
    "csrf_failed": 403,
}


def status_for(code: str) -> int:
    return ERROR_STATUS.get(code, 500)


class GatewayError(Exception):
    code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.instance_code = code or self.code

    @property
    def status(self) -> int:
        return status_for(self.instance_code)


class BadRequestError(GatewayError):
    code = "invalid_request"


class MalformedJsonError(BadRequestError):
    code = "malformed_json"


class MalformedCodeError(BadRequestError):
    code = "malformed_code"


class AuthError(GatewayError):
    code = "invalid_token"


class ForbiddenError(GatewayError):
    code = "forbidden"


class NotFoundError(GatewayError):
    code = "not_found"


class RequestTimeoutError(GatewayError):
    code = "request_timeout"


class PayloadTooLargeError(GatewayError):
    code = "payload_too_large"


class UnsupportedMediaTypeError(GatewayError):
    code = "unsupported_media_type"


class StoreUnavailableError(GatewayError):
    code = "store_unavailable"


class NotDurableError(GatewayError):
    code = "not_durable"


class CaseRefusedError(GatewayError):
    """A refusal of the dispatch core, carrying the policy error's stable code as its instance code."""

    code = "case_error"


class RateLimitedError(GatewayError):
    """Too many requests of one kind by one principal; ``retry_after_s`` goes into the Retry-After header."""

    code = "rate_limited"

    def __init__(self, detail: str = "", *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s
