"""`placegate keys new|list|revoke` and `placegate issue` (a DEMO/TEST tool that mints health codes)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from crypto.keys import Alg
from crypto.native import MAX_LIFETIME_S, Colour, issue_health_code
from crypto.trust import Usage
from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.trust.keystore import latest_signing_key, new_issuer_key
from gateway.trust.registry import Registry

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage trusted issuer keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    new = keys_sub.add_parser("new", help="generate an issuer key and trust its public half")
    new.add_argument("--usage", choices=["health", "place"], required=True)
    new.add_argument("--alg", choices=[a.value for a in Alg], default=Alg.ES256.value)
    new.add_argument("--days", type=int, default=365, help="validity window in days")
    add_common_args(new)
    new.set_defaults(func=_keys_new)
    lst = keys_sub.add_parser("list", help="list the trust list")
    add_common_args(lst)
    lst.set_defaults(func=_keys_list)
    rev = keys_sub.add_parser("revoke", help="revoke a key by kid (hex)")
    rev.add_argument("kid")
    add_common_args(rev)
    rev.set_defaults(func=_keys_revoke)

    issue = sub.add_parser(
        "issue", help="DEMO/TEST ONLY: mint a health code with a local test issuer key",
        description="Mint a native health code. This is a demo and load-test tool: real codes are issued by the "
        "health-code authority, never by the gateway.",
    )
    issue.add_argument("--holder", required=True, help="opaque holder reference ([A-Za-z0-9._-], <= 64)")
    issue.add_argument("--colour", choices=["green", "yellow", "red"], default="green")
    issue.add_argument("--lifetime", type=int, default=MAX_LIFETIME_S, help="seconds, at most 300")
    add_common_args(issue)
    issue.set_defaults(func=_issue)


def _keys_new(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args)
        async with admin_redis(settings) as redis:
            key = await new_issuer_key(Registry(redis), settings, usage=Usage(args.usage), alg=Alg(args.alg),
                                       days=args.days)
        print(f"kid={key.kid.hex()} alg={key.alg.value} usage={args.usage}")
        return 0

    return run(go())


def _keys_list(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            _, trust = await Registry(redis).load_trust()
        print(f"{'kid':16}  {'alg':7}  {'usage':6}  {'not_before':25}  {'not_after':25}  revoked")
        for k in sorted(trust, key=lambda k: k.not_before):
            print(f"{k.kid.hex():16}  {k.alg.value:7}  {k.usage.value:6}  {k.not_before.isoformat():25}  "
                  f"{k.not_after.isoformat():25}  {'yes' if k.revoked else 'no'}")
        return 0

    return run(go())


def _keys_revoke(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            registry = Registry(redis)
            _, trust = await registry.load_trust()
            try:
                entry = trust.get(bytes.fromhex(args.kid))
            except ValueError:
                entry = None
            if entry is None:
                print(f"no key {args.kid}", file=sys.stderr)
                return 1
            await registry.put_trusted_key(entry.revoke())
        print(f"revoked {args.kid}")
        return 0

    return run(go())


def _issue(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args)
        async with admin_redis(settings) as redis:
            key = await latest_signing_key(Registry(redis), settings, Usage.HEALTH)
        if key is None:
            print("no usable local health key: run `placegate keys new --usage health`", file=sys.stderr)
            return 1
        print(issue_health_code(key, holder_ref=args.holder, colour=Colour[args.colour.upper()],
                                now=datetime.now(UTC), nonce=os.urandom(12), lifetime_s=args.lifetime))
        return 0

    return run(go())
