"""`placegate audit verify|query|trim` and `placegate privacy retention|ropa|trace` for the privacy officer."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from gateway.cli_common import (
    CliRefusedError,
    add_common_args,
    add_token_arg,
    admin_redis,
    cli_principal,
    run,
    settings_from,
)
from gateway.errors import GatewayError
from gateway.principals import Role
from gateway.privacy import shred
from gateway.privacy.audit import cli_actor, query_audit, record_access, record_refusal, trim_before, verify_chain
from gateway.privacy.retention import retention_report
from gateway.privacy.ropa import build_ropa, render_markdown
from gateway.privacy.subjects import hasher_for
from gateway.privacy.tracing import (
    case_in_trace_scope,
    consume_approval,
    load_approval,
    place_filter,
    trace_holder,
)
from gateway.settings import Secret
from policy.purpose import ApprovalInvalidError, PurposeError, TraceRequest, check_audit_query, check_trace
from policy.rules import load_rules

__all__ = ["register"]

_ACTION = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a typed action filter enters the trail only if action-shaped


def _time(raw: str) -> datetime:
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _print(data: object) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify and query the hash-chained audit trail")
    asub = audit.add_subparsers(dest="audit_cmd", required=True)
    verify = asub.add_parser("verify", help="walk the chain; exit 1 on any edited, removed or reordered entry")
    verify.add_argument("--anchor", help="SEQ:HASH printed by an earlier verify, kept outside Redis")
    add_common_args(verify)
    verify.set_defaults(func=_verify)
    query = asub.add_parser("query", help="entries in a bounded time range (at most 31 days, 500 per page)")
    query.add_argument("--since", required=True, type=_time)
    query.add_argument("--until", required=True, type=_time)
    query.add_argument("--principal")
    query.add_argument("--action")
    query.add_argument("--limit", type=int, default=100)
    query.add_argument("--cursor")
    add_token_arg(query)
    add_common_args(query)
    query.set_defaults(func=_query)
    trim = asub.add_parser("trim", help="drop entries older than a cutoff at least 3 years back (PIPL Art. 56)")
    trim.add_argument("--before", required=True, type=_time)
    add_common_args(trim)
    trim.set_defaults(func=_trim)

    privacy = sub.add_parser("privacy", help="retention report, record of processing activities, contact tracing")
    psub = privacy.add_subparsers(dest="privacy_cmd", required=True)
    ret = psub.add_parser("retention", help="per data class: stored, oldest, expiry, expired days, violations")
    add_common_args(ret)
    ret.set_defaults(func=_retention)
    ropa = psub.add_parser("ropa", help="record of processing activities from the running configuration")
    ropa.add_argument("--format", choices=["md", "json"], default="md")
    add_common_args(ropa)
    ropa.set_defaults(func=_ropa)
    tr = psub.add_parser("trace", help="visits of one holder (epidemic prevention, a case, another officer's approval)")
    add_token_arg(tr)
    tr.add_argument("--holder", required=True)
    tr.add_argument("--case-ref", required=True)
    tr.add_argument("--approval", required=True,
                    help="approval id granted to the --token-file principal by ANOTHER privacy officer")
    tr.add_argument("--purpose", default="epidemic_prevention")
    tr.add_argument("--since", type=_time)
    tr.add_argument("--until", type=_time)
    add_common_args(tr)
    tr.set_defaults(func=_trace)
    shred.add_shred(psub)


def _verify(args: argparse.Namespace) -> int:
    async def go() -> int:
        anchor = None
        if args.anchor:
            seq, _, digest = args.anchor.partition(":")
            anchor = (int(seq), digest)
        async with admin_redis(settings_from(args)) as redis:
            report = await verify_chain(redis, anchor=anchor)
        _print(report.to_json())
        print(f"anchor: {report.head_seq}:{report.head_hash}", file=sys.stderr)
        return 0 if report.ok else 1

    return run(go())


def _query(args: argparse.Namespace) -> int:
    async def go() -> int:
        try:
            check_audit_query(args.since, args.until, args.limit)
        except PurposeError as exc:
            print(f"{exc.code}: {exc}", file=sys.stderr)
            return 2
        async with admin_redis(settings_from(args)) as redis:
            try:
                officer = await cli_principal(redis, args, (Role.PRIVACY_OFFICER,), command="audit_query")
            except CliRefusedError as exc:
                print(exc, file=sys.stderr)
                return 2
            page = await query_audit(redis, since=args.since, until=args.until, limit=args.limit,
                                     principal=args.principal, action=args.action, cursor=args.cursor)
            # Audited like GET /v1/privacy/audit, before the page is printed; filters only by kind.
            window = f"{args.since.isoformat()}/{args.until.isoformat()}"
            await record_access(redis, principal=officer, action="audit_query", obj="audit",
                                purpose="privacy_oversight", now=datetime.now(UTC), result_count=len(page.entries),
                                extra={"via": cli_actor(), "window": window,
                                       "filter_action": args.action if _ACTION.fullmatch(args.action or "") else ""})
        _print({"entries": [e.to_json() for e in page.entries], "next_cursor": page.next_cursor})
        return 0

    return run(go())


def _trim(args: argparse.Namespace) -> int:
    async def go() -> int:
        async with admin_redis(settings_from(args)) as redis:
            try:
                dropped = await trim_before(redis, cutoff=args.before, now=datetime.now(UTC), actor=cli_actor())
            except ValueError as exc:  # inside the 3-year retention, or a trail that does not verify
                print(f"placegate: {exc}", file=sys.stderr)
                return 1
        print(f"dropped {dropped}")
        return 0

    return run(go())


def _retention(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args)
        async with admin_redis(settings) as redis:
            report = await retention_report(redis, now=datetime.now(UTC), retention_days=settings.retention_days,
                                            status_ttl_s=settings.status_ttl_s,
                                            dcc_replay_window_s=settings.dcc_replay_window_s,
                                            grace_s=settings.retention_trim_s)
        _print(report)
        return 1 if report["violations"] else 0

    return run(go())


def _ropa(args: argparse.Namespace) -> int:
    from gateway.app import create_app  # the router is the source of the recipients

    settings = settings_from(args)
    rules = load_rules(settings.rules_file.read_text("utf-8") if settings.rules_file else None)
    app = create_app(replace(settings, secret=Secret(bytes(32))))  # routes only: never started
    record = build_ropa(settings, rules, app, now=datetime.now(UTC))
    if args.format == "json":
        _print(record)
    else:
        print(render_markdown(record), end="")
    return 0


_TRACE_ROLES = (Role.PRIVACY_OFFICER, Role.DISPATCHER, Role.SUPERVISOR)


def _trace(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args).with_secret()
        now = datetime.now(UTC)
        subject = hasher_for(settings).of(args.holder)
        async with admin_redis(settings) as redis:
            try:  # the roles of POST /v1/privacy/trace
                officer = await cli_principal(redis, args, _TRACE_ROLES, command="privacy_trace")
            except CliRefusedError as exc:
                print(exc, file=sys.stderr)
                return 2
            try:
                approval = await load_approval(redis, args.approval)
                since, until = check_trace(
                    TraceRequest(officer.principal_id, officer.role.value, args.purpose, args.case_ref, args.since,
                                 args.until, subject), approval, now=now, retention_days=settings.retention_days)
                if approval is None or not await case_in_trace_scope(redis, officer, args.case_ref) \
                        or not await consume_approval(redis, approval.approval_id):
                    raise ApprovalInvalidError("no usable approval")
            except PurposeError as exc:
                await record_refusal(redis, principal=officer, action="contact_trace_refused", obj="trace",
                                     purpose=args.purpose, code=exc.code, now=now, case_ref=args.case_ref,
                                     extra={"via": cli_actor(), "subject": subject})
                print(f"{exc.code}: {exc}", file=sys.stderr)
                return 2
            result = await trace_holder(redis, args.holder, since=since, until=until,
                                        keep_place=place_filter(redis, officer))
            try:
                await record_access(redis, principal=officer, action="contact_trace", obj=f"trace:{args.case_ref}",
                                    purpose=args.purpose, now=now, case_ref=args.case_ref,
                                    result_count=len(result.visits),
                                    extra={"via": cli_actor(), "subject": subject, "approval": approval.approval_id,
                                           "approver": approval.approver_id,
                                           "window": f"{since.isoformat()}/{until.isoformat()}"})
            except GatewayError as exc:
                print(f"{exc.instance_code}: nothing disclosed", file=sys.stderr)
                return 1
        _print(result.to_json())
        return 0

    return run(go())
