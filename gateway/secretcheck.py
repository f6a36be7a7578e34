"""The store remembers which secret it was initialised with, so a process holding another one refuses to start.

Two processes of one deployment with different secrets do not fail: they disagree. A status loaded under one
secret sits in fields the other cannot find (every holder ``review status_unknown``), and cases sealed by one
cannot be opened by the other. The first process to use a store writes a keyed fingerprint of its secret there
(``SET NX``); every later one compares. The fingerprint is an HMAC under a sub-key of the secret, so the stored
value reveals nothing a dictionary of secrets could be checked against without the secret itself.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError

from crypto.kdf import derive_key
from gateway.errors import StoreUnavailableError
from gateway.keyspace import SECRET_FINGERPRINT
from gateway.redisio import redis_errors
from gateway.settings import Secret, SettingsError

__all__ = ["check_secret", "public_url", "secret_fingerprint"]

_LABEL = b"placegate/fingerprint/v1"
# Shown in messages: enough to tell two secrets apart, too short to matter.
_SHOWN = 12


def secret_fingerprint(secret: Secret) -> str:
    """A keyed fingerprint of ``secret`` (hex): never the secret, nor a plain hash of it."""
    return hmac.new(derive_key(secret.reveal(), _LABEL), b"fingerprint", hashlib.sha256).hexdigest()


def public_url(url: str) -> str:
    """``url`` without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _refused_credentials(error: BaseException | None) -> bool:
    # redis-py's connection re-raises the server's AuthenticationError as a ConnectionError from it.
    while error is not None:
        if isinstance(error, AuthenticationError):
            return True
        error = error.__cause__ or error.__context__
    return False


async def check_secret(redis: Redis, secret: Secret, *, url: str) -> None:
    """Record the secret's fingerprint in a fresh store, or check it against the recorded one.

    :raises SettingsError: the store was initialised with another secret (named as PLACEGATE_SECRET).
    :raises StoreUnavailableError: the store did not answer.
    """
    mine = secret_fingerprint(secret)
    try:
        with redis_errors("secret check"):
            stored = await redis.set(SECRET_FINGERPRINT, mine, nx=True, get=True)
    except StoreUnavailableError as exc:  # the first command of every start: say which store did not answer
        if _refused_credentials(exc.__cause__):  # a wrong password is the operator's to fix, not an outage
            raise SettingsError("PLACEGATE_REDIS_URL", f"the store at {public_url(url)} refused the credentials: "
                                f"{exc.__cause__}") from None
        raise StoreUnavailableError(f"the store at {public_url(url)} did not answer") from exc.__cause__
    if stored is None:
        return
    theirs = stored.decode() if isinstance(stored, bytes) else str(stored)
    if not hmac.compare_digest(theirs, mine):
        raise SettingsError(
            "PLACEGATE_SECRET",
            f"the store at {public_url(url)} was initialised with another secret (fingerprint {theirs[:_SHOWN]}…, "
            f"this process has {mine[:_SHOWN]}…); set PLACEGATE_SECRET to that deployment's secret",
        )
