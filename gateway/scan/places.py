"""Which place a scan request is for: a device's bound place, or the venue's signed place code (self-scan)."""

from __future__ import annotations

from datetime import datetime

from crypto.errors import Base45Error, CodeError, UnknownFormatError
from crypto.place_cache import PlaceCodeVerifier
from gateway.errors import BadRequestError, ForbiddenError, MalformedCodeError
from gateway.principals import Principal, Role
from gateway.trust.registry import Place
from gateway.trust.state import PlaceCache, TrustState

__all__ = ["PlaceResolver"]


class PlaceResolver:
    """Resolves the place of a scan from the caller's binding or from a signed place code, checked against the
    worker's current trust lists."""

    def __init__(self, places: PlaceCache, trust: TrustState) -> None:
        self.places = places
        self.trust = trust
        # Every visitor of a venue presents the same place code: its signature is checked once (place_cache.py).
        self.place_codes = PlaceCodeVerifier()

    async def resolve(
        self, principal: Principal, place_code: str | None, place_id: str | None, now: datetime
    ) -> Place | str:
        """The place, or the deny reason when the venue's place code is refused.

        :raises ForbiddenError: a device asking for a place it is not bound to (the same answer whether or not
            that place exists).
        :raises BadRequestError, MalformedCodeError: a self-scan without a place code, or one that is not a code.
        """
        if principal.role is Role.DEVICE:
            bound = next(iter(principal.places), None)
            if bound is None or (place_id is not None and place_id not in principal.places):
                raise ForbiddenError("device is not bound to this place")
            place = await self.places.get(place_id or bound)
            if place is None:
                raise ForbiddenError("device is not bound to this place")
            return place
        if place_code is None:
            raise BadRequestError("self-scan needs the venue's place_code")
        try:
            verified = self.place_codes.verify(place_code, self.trust.native, now=now)
        except (Base45Error, UnknownFormatError) as exc:
            raise MalformedCodeError("place_code is not a place code") from exc
        except CodeError as exc:
            # A forged, revoked or expired place code is refused like a forged health code: a deny.
            return "place_" + exc.code
        place = await self.places.get(verified.place_id)
        if place is None:
            return "place_unknown"
        return Place(place.place_id, place.name, verified.venue_class, verified.jurisdiction)
