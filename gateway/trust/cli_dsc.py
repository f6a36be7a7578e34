"""`placegate trust import FILE...` and `placegate trust list`: the EU DCC document-signer (DSC) list.

Files are PEM bundles or JSON bundles of base64 DER (``[...]`` or ``{"certificates": [...]}``).  Every file is
parsed and every certificate checked before anything is written, so a bad file never leaves a half-imported
list; an import replaces the stored list (a trust list is published whole) unless ``--merge`` is given, and
stamps the import time that the gateway's freshness limits are measured from.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from crypto.dcc_trustlist import load_anchor
from crypto.errors import TrustListError
from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.privacy.audit import cli_actor
from gateway.trust.dccrules import RuleSetRegistry, read_rule_dir
from gateway.trust.dsc import DscRegistry, freshness, parse_trust_file
from gateway.trust.sync import sync_dsc_list
from gateway.trust.valuesets import ValueSetRegistry, read_value_set_dir
from policy.dcc_rules import DccRuleError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``trust`` sub-command."""
    trust = sub.add_parser("trust", help="manage the EU DCC (HC1) document-signer trust list")
    tsub = trust.add_subparsers(dest="trust_cmd", required=True)
    imp = tsub.add_parser("import", help="import DSC certificates from PEM files or JSON bundles")
    imp.add_argument("files", nargs="+", metavar="FILE", help="PEM bundle or JSON bundle of base64 DER")
    imp.add_argument("--merge", action="store_true", help="keep certificates already stored (default: replace)")
    add_common_args(imp)
    imp.set_defaults(func=_import)
    lst = tsub.add_parser("list", help="list the stored DSC certificates and the list's age")
    add_common_args(lst)
    lst.set_defaults(func=_list)
    vs = tsub.add_parser("valuesets", help="EU DCC value sets (vaccine products, countries, test types...)")
    vsub = vs.add_subparsers(dest="valuesets_cmd", required=True)
    vimp = vsub.add_parser("import", help="replace the stored value sets with the *.json value-set files of DIR")
    vimp.add_argument("directory", type=Path, metavar="DIR", help="folder of value-set JSON files")
    add_common_args(vimp)
    vimp.set_defaults(func=_import_valuesets)
    vlst = vsub.add_parser("list", help="list the stored value sets, their dates and sizes")
    add_common_args(vlst)
    vlst.set_defaults(func=_list_valuesets)
    sync = tsub.add_parser("sync", help="pull the signed DSC list from the national backend now (once)")
    sync.add_argument("--url", help="the list's URL (default PLACEGATE_DSC_SYNC_URL)")
    sync.add_argument("--anchor", type=Path, metavar="PEM",
                      help="trust-anchor certificate (default PLACEGATE_DSC_SYNC_ANCHOR_FILE)")
    add_common_args(sync)
    sync.set_defaults(func=_sync)
    rs = tsub.add_parser("rules", help="EU DCC business-rule sets (EU templates, country rules, the city's own)")
    rsub = rs.add_subparsers(dest="rules_cmd", required=True)
    rimp = rsub.add_parser("import", help="store (or replace) the rule set NAME from the rules in DIR")
    rimp.add_argument("name", metavar="NAME", help="the rule set's name, as a rules file's dcc_rule_set names it")
    rimp.add_argument("directory", type=Path, metavar="DIR", help="folder of */rule.json or *.json rules")
    add_common_args(rimp)
    rimp.set_defaults(func=_import_rules)
    rrm = rsub.add_parser("remove", help="remove the stored rule set NAME (classes naming it then refuse DCCs)")
    rrm.add_argument("name", metavar="NAME")
    add_common_args(rrm)
    rrm.set_defaults(func=_remove_rules)
    rlst = rsub.add_parser("list", help="list the stored rule sets and their rules")
    add_common_args(rlst)
    rlst.set_defaults(func=_list_rules)


def _import(args: argparse.Namespace) -> int:
    ders: list[bytes] = []
    for name in args.files:
        try:
            ders.extend(parse_trust_file(Path(name).read_bytes()))
        except OSError as exc:
            print(f"placegate: cannot read {name}: {exc.strerror}", file=sys.stderr)
            return 1
        except TrustListError as exc:
            print(f"placegate: {name}: {exc}", file=sys.stderr)
            return 1

    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            stored = await DscRegistry(redis).import_certificates(
                ders, now=datetime.now(UTC), replace=not args.merge
            )
        print(f"imported={len(ders)} stored={stored}")
        return 0

    return run(go())


def _list(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args)
        async with admin_redis(settings) as redis:
            snapshot = await DscRegistry(redis).load()
        now = datetime.now(UTC)
        state = freshness(snapshot.imported_at, now, degraded_after_s=settings.dsc_trust_degraded_after_s,
                          fail_after_s=settings.dsc_trust_fail_after_s)
        imported = "never" if snapshot.imported_at is None else snapshot.imported_at.isoformat()
        print(f"imported_at={imported} freshness={state.value} version={snapshot.version} "
              f"certificates={len(snapshot.trust)} unusable={snapshot.skipped}")
        print(f"{'kid':16}  {'key':4}  {'types':5}  {'not_before':25}  {'not_after':25}  valid_now")
        for key in sorted(snapshot.trust.keys, key=lambda k: (k.kid, k.not_before)):
            kind = "ec" if isinstance(key.public_key, ec.EllipticCurvePublicKey) else "rsa"
            types = "".join(sorted(key.entry_types)) if key.entry_types is not None else "all"
            print(f"{key.kid.hex():16}  {kind:4}  {types:5}  {key.not_before.isoformat():25}  "
                  f"{key.not_after.isoformat():25}  {'yes' if key.valid_at(now) else 'no'}")
        return 0

    return run(go())


def _import_valuesets(args: argparse.Namespace) -> int:
    try:
        sets, skipped = read_value_set_dir(args.directory)
    except OSError as exc:
        print(f"placegate: cannot read {args.directory}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except TrustListError as exc:
        print(f"placegate: {exc}", file=sys.stderr)
        return 1

    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            version = await ValueSetRegistry(redis).import_sets(sets, now=datetime.now(UTC))
        print(f"imported={len(sets)} version={version} skipped={','.join(skipped) or '-'}")
        return 0

    return run(go())


def _list_valuesets(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            snapshot = await ValueSetRegistry(redis).load()
        imported = "never" if snapshot.imported_at is None else snapshot.imported_at.isoformat()
        print(f"imported_at={imported} version={snapshot.version} sets={len(snapshot.value_sets.sets)}")
        for value_set in sorted(snapshot.value_sets.sets.values(), key=lambda v: v.id):
            print(f"{value_set.id:45}  {value_set.date:10}  codes={len(value_set.codes)}")
        return 0

    return run(go())


def _import_rules(args: argparse.Namespace) -> int:
    try:
        rule_set = read_rule_dir(args.name, args.directory)
    except OSError as exc:
        print(f"placegate: cannot read {args.directory}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except DccRuleError as exc:
        print(f"placegate: {exc}", file=sys.stderr)
        return 1

    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            version = await RuleSetRegistry(redis).import_set(rule_set, now=datetime.now(UTC))
        print(f"rule_set={rule_set.name} rules={len(rule_set.rules)} version={version}")
        return 0

    return run(go())


def _list_rules(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            snapshot = await RuleSetRegistry(redis).load()
        imported = "never" if snapshot.imported_at is None else snapshot.imported_at.isoformat()
        print(f"imported_at={imported} version={snapshot.version} rule_sets={len(snapshot.rule_sets)}")
        for name in sorted(snapshot.rule_sets):
            for rule in snapshot.rule_sets[name].rules:
                version = ".".join(str(part) for part in rule.version)
                print(f"{name:16}  {rule.identifier:12}  {version:8}  {rule.type:12}  "
                      f"{rule.valid_from.isoformat()} .. {rule.valid_to.isoformat()}")
        return 0

    return run(go())


def _sync(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    url = args.url or settings.dsc_sync_url
    anchor_file = args.anchor or settings.dsc_sync_anchor_file
    if url is None or anchor_file is None:
        print("placegate: trust sync needs --url and --anchor (or PLACEGATE_DSC_SYNC_URL and "
              "PLACEGATE_DSC_SYNC_ANCHOR_FILE)", file=sys.stderr)
        return 2
    try:
        anchor = load_anchor(Path(anchor_file).read_bytes())
    except OSError as exc:
        print(f"placegate: cannot read {anchor_file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except TrustListError as exc:
        print(f"placegate: {anchor_file}: {exc}", file=sys.stderr)
        return 1

    async def go() -> int:
        async with admin_redis(settings) as redis:
            outcome = await sync_dsc_list(redis, url=url, anchor=anchor, now=datetime.now(UTC), actor=cli_actor())
        print(f"outcome={outcome.outcome} stored={outcome.stored} dropped={outcome.dropped} code={outcome.code or '-'}")
        return 0 if outcome.outcome == "imported" else 1

    return run(go())


def _remove_rules(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            removed = await RuleSetRegistry(redis).remove_set(args.name, now=datetime.now(UTC))
        if not removed:
            print(f"placegate: no rule set named {args.name}", file=sys.stderr)
            return 1
        print(f"removed rule_set={args.name}")
        return 0

    return run(go())
