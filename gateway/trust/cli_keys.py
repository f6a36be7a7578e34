"""`placegate keys import|new|list|revoke` and `placegate issue` (a DEMO/TEST tool that mints health codes).

A deployment trusts the authorities' public keys (`keys import`); `keys new` and `issue` hold a private key in the
data directory and exist for demos and tests only, which both say whenever they run.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.errors import CodeFormatError, TrustListError
from crypto.keys import Alg, SigningKey, load_public_pem
from crypto.native import MAX_LIFETIME_S, Colour, issue_health_code
from crypto.paper import MAX_PAPER_LIFETIME_S, issue_paper_code
from crypto.trust import TrustedKey, Usage
from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.trust.checks import RegistryInputError
from gateway.trust.keystore import latest_signing_key, new_issuer_key
from gateway.trust.registry import Registry

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = sub.add_parser("keys", help="manage trusted issuer keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    imp = keys_sub.add_parser(
        "import", help="trust an authority's public key (SubjectPublicKeyInfo PEM)",
        description="Trust the public key of the health-code authority (--usage health) or of the place-code "
        "authority (--usage place). The kid is the first 8 bytes of SHA-256 over the key's SubjectPublicKeyInfo "
        "DER (docs/codes.md). P-256 (ES256) and Ed25519 keys only; a private key is refused.",
    )
    imp.add_argument("--usage", choices=["health", "place"], required=True)
    imp.add_argument("--pem", type=Path, required=True, metavar="PUBLIC.pem", help="the authority's public key")
    imp.add_argument("--not-before", metavar="TIME",
                     help="ISO 8601 with a UTC offset (default: now)")
    imp.add_argument("--not-after", metavar="TIME",
                     help="ISO 8601 with a UTC offset (default: 365 days after --not-before)")
    add_common_args(imp)
    imp.set_defaults(func=_keys_import)
    new = keys_sub.add_parser(
        "new", help="DEMO/TEST ONLY: generate a local issuer key and trust its public half",
        description="DEMO/TEST ONLY: generate an issuer key pair, keep the private half in the data directory and "
        "trust the public half. A deployment imports the authorities' public keys instead (keys import).",
    )
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
    issue.add_argument("--lifetime", type=int, default=None,
                       help=f"seconds, at most {MAX_LIFETIME_S} (a paper code: at most {MAX_PAPER_LIFETIME_S}, "
                       "the default)")
    issue.add_argument("--count", default="1", help="codes to print, one a line (1-10000)")
    issue.add_argument("--paper", action="store_true",
                       help="a paper code for a resident without a phone (docs/codes.md): no colour, valid up to 7 "
                       "days, printed as text and written as a QR image (--qr)")
    issue.add_argument("--qr", type=Path, default=None, metavar="FILE.png",
                       help="where --paper writes the QR image (PNG; .svg for SVG); default paper-HOLDER.png")
    add_common_args(issue)
    issue.set_defaults(func=_issue)


_MAX_COUNT = 10_000


# Parsed in the commands rather than by argparse types, so a refusal is one line (argparse adds its usage).
def _aware_time(text: str | None, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise RegistryInputError(f"{flag} {text[:40]!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise RegistryInputError(f"{flag} {text[:40]!r} has no UTC offset (e.g. 2027-01-01T00:00:00+00:00)")
    return value.astimezone(UTC)


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= _MAX_COUNT:
        raise RegistryInputError(f"--count {text[:20]!r}: a number from 1 to {_MAX_COUNT}")
    return int(text)


def _imported_key(args: argparse.Namespace, now: datetime) -> TrustedKey:
    """The trust-list entry of ``--pem``: every refusal a one-line RegistryInputError."""
    try:
        pem = args.pem.read_bytes()
    except OSError as exc:
        raise RegistryInputError(f"{args.pem}: {exc.strerror or exc}") from None
    try:
        public = load_public_pem(pem)
    except TrustListError as exc:
        raise RegistryInputError(f"{args.pem}: {exc}") from None
    not_before = _aware_time(args.not_before, "--not-before") or now
    not_after = _aware_time(args.not_after, "--not-after") or not_before + timedelta(days=365)
    if not_after <= not_before:
        raise RegistryInputError("--not-after must be later than --not-before")
    if not_after <= now:
        raise RegistryInputError(f"--not-after {not_after.isoformat()} has passed: the key could verify nothing")
    return TrustedKey.create(public, usage=Usage(args.usage), not_before=not_before, not_after=not_after)


def _keys_import(args: argparse.Namespace) -> int:
    async def go() -> int:
        key = _imported_key(args, datetime.now(UTC))
        async with admin_redis(settings_from(args)) as redis:
            if not await Registry(redis).import_trusted_key(key):
                raise RegistryInputError(f"kid {key.kid.hex()} is already on the trust list (keys list): "
                                         "an import never replaces or un-revokes a key")
        print(f"kid={key.kid.hex()} alg={key.alg.value} usage={key.usage.value} "
              f"not_before={key.not_before.isoformat()} not_after={key.not_after.isoformat()}")
        return 0

    return run(go())


def _keys_new(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args)
        async with admin_redis(settings) as redis:
            key = await new_issuer_key(Registry(redis), settings, usage=Usage(args.usage), alg=Alg(args.alg),
                                       days=args.days)
        print(f"kid={key.kid.hex()} alg={key.alg.value} usage={args.usage}")
        print("placegate: keys new is for demos and tests (its private key sits in the data directory); "
              "a deployment trusts the authority's public key with keys import", file=sys.stderr)
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
        count = _count(args.count)
        settings = settings_from(args)
        async with admin_redis(settings) as redis:
            key = await latest_signing_key(Registry(redis), settings, Usage.HEALTH)
        if key is None:
            print("no usable local health key: run `placegate keys new --usage health`", file=sys.stderr)
            return 1
        now, colour = datetime.now(UTC), Colour[args.colour.upper()]
        if args.paper:
            return _issue_paper(args, key, now, count)
        try:
            codes = [issue_health_code(key, holder_ref=args.holder, colour=colour, now=now, nonce=os.urandom(12),
                                       lifetime_s=args.lifetime or MAX_LIFETIME_S) for _ in range(count)]
        except CodeFormatError as exc:
            raise RegistryInputError(f"cannot issue: {exc}") from None
        print("placegate: issue is for demos and tests: real codes come from the health-code authority",
              file=sys.stderr)
        print("\n".join(codes))
        return 0

    return run(go())


def _issue_paper(args: argparse.Namespace, key: SigningKey, now: datetime, count: int) -> int:
    """One paper code: its text on stdout, its QR image in a file (segno: pure Python, no image library)."""
    import segno  # only this command draws images: the gateway itself never imports it

    if count != 1:
        raise RegistryInputError("--paper issues one code (one sheet, one QR image) per run")
    try:
        code = issue_paper_code(key, holder_ref=args.holder, now=now, nonce=os.urandom(12),
                                lifetime_s=args.lifetime or MAX_PAPER_LIFETIME_S)
    except CodeFormatError as exc:
        raise RegistryInputError(f"cannot issue: {exc}") from None
    target = args.qr or Path(f"paper-{args.holder}.png")
    # Alphanumeric mode holds the base45 text as it is; error correction M survives a creased or smudged sheet.
    try:
        segno.make_qr(code, error="m").save(str(target), scale=8, border=4)
    except OSError as exc:
        raise RegistryInputError(f"{target}: {exc.strerror or exc}") from None
    print("placegate: issue is for demos and tests: real codes come from the health-code authority",
          file=sys.stderr)
    print(code)
    print(f"placegate: QR image written to {target}", file=sys.stderr)
    return 0
