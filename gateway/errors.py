"""Gateway errors and the ONE table from error code to HTTP status.

    GatewayError ("internal_error", 500)
    ├── BadRequestError ("invalid_request", 400)
    │   ├── MalformedJsonError ("malformed_json", 400)
    │   └── MalformedCodeError ("malformed_code", 400)   not base45 / no known prefix: not a code at all
    ├── AuthError ("missing_token" / "invalid_token", 401)
    ├── ForbiddenError ("forbidden", 403)
    ├── NotFoundError ("not_found", 404)
    ├── PayloadTooLargeError ("payload_too_large", 413)
    ├── UnsupportedMediaTypeError ("unsupported_media_type", 415)
    └── StoreUnavailableError ("store_unavailable", 503)   Redis failed; redis exceptions never leave store.py

A code that decodes but fails verification is not an error here: it is a ``deny`` with the crypto error's code.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ERROR_STATUS",
    "AuthError",
    "BadRequestError",
    "ForbiddenError",
    "GatewayError",
    "MalformedCodeError",
    "MalformedJsonError",
    "NotFoundError",
    "PayloadTooLargeError",
    "StoreUnavailableError",
    "UnsupportedMediaTypeError",
    "status_for",
]

ERROR_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "malformed_json": 400,
    "malformed_code": 400,
    "missing_token": 401,
    "invalid_token": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "too_many_requests": 429,
    "internal_error": 500,
    "store_unavailable": 503,
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


class PayloadTooLargeError(GatewayError):
    code = "payload_too_large"


class UnsupportedMediaTypeError(GatewayError):
    code = "unsupported_media_type"


class StoreUnavailableError(GatewayError):
    code = "store_unavailable"
