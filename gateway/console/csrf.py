"""Form tokens (CSRF): every console form carries one and every POST is refused without it (403 ``csrf_failed``).

A signed-in form carries its session's token (stored with the session, compared in constant time). The sign-in
form, which has no session yet, carries a fresh random value that must equal the one in a short-lived cookie set
with the form (double submit): a page of another site can neither read that cookie nor set it. The session
cookie is ``SameSite=Strict`` as well; the token is the check that does not depend on the browser.
"""

from __future__ import annotations

import secrets

from gateway.errors import GatewayError
from gateway.principals import secrets_equal

__all__ = ["FIELD", "PRE_COOKIE", "PRE_TTL_S", "CsrfError", "check", "new_pre_token"]

FIELD = "csrf"  # the hidden input of every form
PRE_COOKIE = "pg_console_pre"  # the sign-in form's double-submit cookie
PRE_TTL_S = 600


class CsrfError(GatewayError):
    code = "csrf_failed"


def new_pre_token() -> str:
    return secrets.token_urlsafe(32)


def check(expected: str | None, given: object) -> None:
    """:raises CsrfError: ``given`` is missing or is not ``expected``."""
    if not expected or not isinstance(given, str) or not given or not secrets_equal(expected, given):
        raise CsrfError("the form token is missing or is not this session's")
