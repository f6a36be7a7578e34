"""The trust list of native issuer keys: kid -> key, algorithm, usage, validity window, revoked flag.

Rotation keeps an old key verifying until its window ends, so a new key is added before the old one's window
closes. Each refusal has its own reason (docs/codes.md "Verification order and reasons").
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

from crypto.errors import (
    AlgorithmMismatchError,
    KeyOutOfWindowError,
    KeyRevokedError,
    TrustListError,
    UnknownKeyError,
    WrongKeyUsageError,
)
from crypto.keys import Alg, PublicKey, alg_of, kid_of, load_public_key, public_key_der

__all__ = ["TrustList", "TrustedKey", "Usage"]


class Usage(StrEnum):
    """What a key may sign: a key for place codes must never validate a health code, and vice versa."""

    HEALTH = "health"
    PLACE = "place"
    DCC = "dcc"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One public key the gateway trusts, for one usage, inside one validity window."""

    kid: bytes
    alg: Alg
    usage: Usage
    public_key: PublicKey
    not_before: datetime
    not_after: datetime
    revoked: bool = False

    @classmethod
    def create(
        cls, public_key: PublicKey, *, usage: Usage, not_before: datetime, not_after: datetime
    ) -> TrustedKey:
        """A trusted key whose kid and algorithm are derived from the key itself."""
        if not_after <= not_before:
            raise TrustListError("validity window is empty")
        return cls(kid_of(public_key), alg_of(public_key), usage, public_key, not_before, not_after)

    def to_dict(self) -> dict[str, str | bool]:
        """Plain-JSON form (public material only) as stored in the registry."""
        return {
            "kid": self.kid.hex(),
            "alg": self.alg.value,
            "usage": self.usage.value,
            "public_key": base64.b64encode(public_key_der(self.public_key)).decode("ascii"),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "revoked": self.revoked,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TrustedKey:
        """Parse and validate the plain-JSON form.

        :raises TrustListError: on any missing or inconsistent field (a kid that is not the key's, an algorithm
            that does not match the key).
        """
        try:
            key = load_public_key(base64.b64decode(str(data["public_key"]), validate=True))
            entry = cls(
                kid=bytes.fromhex(str(data["kid"])),
                alg=Alg(str(data["alg"])),
                usage=Usage(str(data["usage"])),
                public_key=key,
                not_before=_aware(datetime.fromisoformat(str(data["not_before"]))),
                not_after=_aware(datetime.fromisoformat(str(data["not_after"]))),
                revoked=data.get("revoked") is True,
            )
        except (KeyError, ValueError) as exc:
            raise TrustListError(f"invalid trust-list entry: {exc.__class__.__name__}") from exc
        if entry.kid != kid_of(key) or entry.alg is not alg_of(key):
            raise TrustListError("kid or algorithm does not match the public key")
        return entry

    def revoke(self) -> TrustedKey:
        return replace(self, revoked=True)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC)


class TrustList:
    """An immutable set of trusted keys, looked up by kid."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[bytes, TrustedKey] = {}
        for key in keys:
            if key.kid in self._keys:
                raise TrustListError(f"duplicate kid {key.kid.hex()}")
            self._keys[key.kid] = key

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def keys(self) -> list[TrustedKey]:
        return list(self._keys.values())

    def get(self, kid: bytes) -> TrustedKey | None:
        return self._keys.get(kid)

    def resolve(self, kid: bytes, *, alg: Alg, usage: Usage, now: datetime) -> TrustedKey:
        """The key that may verify a code of this usage and algorithm at ``now``.

        :raises UnknownKeyError, WrongKeyUsageError, AlgorithmMismatchError, KeyRevokedError, KeyOutOfWindowError:
            each refusal distinct, in that order of precedence.
        """
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKeyError("kid not in trust list")
        if key.usage is not usage:
            raise WrongKeyUsageError("key is not trusted for this usage")
        if key.alg is not alg:
            raise AlgorithmMismatchError("algorithm does not match the key")
        if key.revoked:
            raise KeyRevokedError("key revoked")
        if not key.not_before <= now <= key.not_after:
            raise KeyOutOfWindowError("key outside its validity window")
        return key
