"""`placegate places add|list`, `placegate devices add|revoke` and `placegate principals add|list|revoke`."""

from __future__ import annotations

import argparse
import sys
import time

from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.principals import Principal, Role
from gateway.trust import admin
from gateway.trust.admin import create_principal
from gateway.trust.checks import configured_routing, configured_rules
from gateway.trust.registry import Place, Registry

__all__ = ["create_principal", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    places = sub.add_parser("places", help="register places and print their signed place codes")
    psub = places.add_subparsers(dest="places_cmd", required=True)
    add = psub.add_parser("add", help="register a place and print its signed place code")
    add.add_argument("place_id")
    add.add_argument("--class", dest="venue_class", required=True,
                     help="venue class: one of the classes of the rules file (PLACEGATE_RULES_FILE, default A, B, C)")
    add.add_argument("--jurisdiction", required=True, help="city/district/street/grid/community/building")
    add.add_argument("--name", default="")
    add.add_argument("--days", type=int, default=365, help="place-code validity in days")
    add.add_argument("--replace", action="store_true", help="overwrite a registered place of this id")
    add_common_args(add)
    add.set_defaults(func=_places_add)
    lst = psub.add_parser("list", help="list registered places")
    add_common_args(lst)
    lst.set_defaults(func=_places_list)

    devices = sub.add_parser("devices", help="register scanner devices (token printed once)")
    dsub = devices.add_subparsers(dest="devices_cmd", required=True)
    dadd = dsub.add_parser("add", help="register a device bound to one place; prints its token once")
    dadd.add_argument("device_id")
    dadd.add_argument("--place", required=True)
    dadd.add_argument("--reissue", action="store_true", help="re-add a revoked device id with a new token")
    dadd.add_argument("--id-card", action="store_true",
                      help="a digital sentry: may present identity card numbers (POST /v1/scan id_card)")
    add_common_args(dadd)
    dadd.set_defaults(func=_devices_add)
    drev = dsub.add_parser("revoke", help="revoke a device token (other principals: principals revoke)")
    drev.add_argument("device_id")
    add_common_args(drev)
    drev.set_defaults(func=_devices_revoke)

    principals = sub.add_parser("principals", help="manage principals of every role (token printed once)")
    rsub = principals.add_subparsers(dest="principals_cmd", required=True)
    radd = rsub.add_parser("add", help="create a principal; prints its token once")
    radd.add_argument("principal_id")
    radd.add_argument("--role", choices=[r.value for r in Role], required=True)
    radd.add_argument("--places", default="", help="comma-separated place ids (devices, site managers)")
    radd.add_argument("--jurisdiction", default="",
                      help="jurisdiction subtree inside the routing table's city (dispatchers, supervisors)")
    radd.add_argument("--department", default="", help="department of the routing table (handlers)")
    radd.add_argument("--reissue", action="store_true", help="re-add a revoked principal id with a new token")
    radd.add_argument("--expires-days", type=int, default=0, help="0 = no expiry")
    add_common_args(radd)
    radd.set_defaults(func=_principals_add)
    rlst = rsub.add_parser("list", help="list principals (never their tokens)")
    add_common_args(rlst)
    rlst.set_defaults(func=_principals_list)
    rrev = rsub.add_parser("revoke", help="revoke a principal's token")
    rrev.add_argument("device_id", metavar="principal_id")
    add_common_args(rrev)
    rrev.set_defaults(func=_revoke)


def _places_add(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args)
        rules = configured_rules(settings)
        async with admin_redis(settings) as redis:
            place = Place(args.place_id, args.name or args.place_id, args.venue_class, args.jurisdiction)
            code = await admin.add_place(Registry(redis), settings, rules, place, days=args.days, replace=args.replace)
        if code is None:
            print("no usable local place key: run `placegate keys new --usage place`", file=sys.stderr)
            return 1
        print(code)
        return 0

    return run(go())


def _places_list(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            for p in await Registry(redis).list_places():
                print(f"{p.place_id}\tclass={p.venue_class}\t{p.jurisdiction}\t{p.name}")
        return 0

    return run(go())


def _devices_add(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            token = await admin.add_device(Registry(redis), args.device_id, args.place, reissue=args.reissue,
                                           id_card=args.id_card)
        print(token)
        return 0

    return run(go())


def _principals_add(args: argparse.Namespace) -> int:
    async def go() -> int:
        expires = int(time.time()) + args.expires_days * 86400 if args.expires_days > 0 else 0
        principal = Principal(
            args.principal_id, Role(args.role), frozenset(p for p in args.places.split(",") if p),
            args.jurisdiction, args.department, expires,
        )
        settings = settings_from(args)
        routing = configured_routing(settings)
        async with admin_redis(settings) as redis:
            token = await admin.add_principal(Registry(redis), routing, principal, reissue=args.reissue)
        print(token)
        return 0

    return run(go())


def _principals_list(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            for p in await Registry(redis).list_principals():
                scope = ",".join(sorted(p.places)) or p.jurisdiction or p.department
                # A sentry's identity-card capability (issue 18) shows as a fifth column; others have four.
                capability = "\tid_card" if p.id_card else ""
                print(f"{p.principal_id}\t{p.role.value}\t{scope}\t{'revoked' if p.revoked else 'active'}{capability}")
        return 0

    return run(go())


def _devices_revoke(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            ok = await admin.revoke(Registry(redis), args.device_id, device=True)
        if not ok:
            print(f"no device {args.device_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.device_id}")
        return 0

    return run(go())


def _revoke(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            ok = await Registry(redis).revoke_principal(args.device_id)
        if not ok:
            print(f"no principal {args.device_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.device_id}")
        return 0

    return run(go())
