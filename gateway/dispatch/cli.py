"""`placegate dispatch sweep|report|worker`: one sweeper pass, an evaluation report, a standalone consumer."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime, timedelta

import orjson

from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.dispatch.evaluation import evaluation_document, parse_instant
from gateway.dispatch.runtime import consumer_name, make_runtime
from gateway.dispatch.worker import IntakeWorker, sweep_open_cases
from policy.routing import JurisdictionLevel

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dispatch = sub.add_parser("dispatch", help="dispatch core: sweep deadlines, evaluation report, intake worker")
    dsub = dispatch.add_subparsers(dest="dispatch_cmd", required=True)
    sweep = dsub.add_parser("sweep", help="one pass: flag overdue cases (100 %%) and escalate (2x)")
    sweep.add_argument("--now", help="ISO 8601 instant to judge at (default: the clock)")
    add_common_args(sweep)
    sweep.set_defaults(func=_sweep)
    report = dsub.add_parser("report", help="evaluation per department and jurisdiction as JSON")
    report.add_argument("--from", dest="start", required=True, help="ISO 8601 instant (inclusive)")
    report.add_argument("--to", dest="end", required=True, help="ISO 8601 instant (exclusive)")
    report.add_argument("--level", default="district", choices=[lv.value for lv in JurisdictionLevel])
    report.add_argument("--jurisdiction", default="", help="only cases inside this subtree")
    add_common_args(report)
    report.set_defaults(func=_report)
    worker = dsub.add_parser("worker", help="consume the intake stream until interrupted")
    add_common_args(worker)
    worker.set_defaults(func=_worker)


def _sweep(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args).with_secret()
        now = parse_instant(args.now) if args.now else datetime.now(UTC)
        async with admin_redis(settings) as redis:
            runtime = make_runtime(redis, settings, settings.dispatch)
            result = await sweep_open_cases(runtime.store, now=now)
        print(f"open={result.checked} flagged={result.flagged} escalated={result.escalated}")
        return 0

    return run(go())


def _report(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args).with_secret()
        dispatch = settings.dispatch
        start, end = parse_instant(args.start), parse_instant(args.end)
        if not start < end <= start + timedelta(days=dispatch.metrics_max_days):
            print(f"--to must follow --from by at most {dispatch.metrics_max_days} days", file=sys.stderr)
            return 2
        scope = tuple(s for s in args.jurisdiction.split("/") if s)
        async with admin_redis(settings) as redis:
            runtime = make_runtime(redis, settings, dispatch)
            cases = await runtime.store.created_between(start, end, limit=dispatch.metrics_max_cases)
        cases = [c for c in cases if c.jurisdiction[: len(scope)] == scope]
        doc = evaluation_document(cases, start=start, end=end, level=JurisdictionLevel(args.level))
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return 0

    return run(go())


def _worker(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args).with_secret()
        dispatch = settings.dispatch
        async with admin_redis(settings) as redis:
            runtime = make_runtime(redis, settings, dispatch)
            worker = IntakeWorker(
                redis, runtime.store, routing=runtime.routing, deadlines=runtime.deadlines,
                consumer=consumer_name(), claim_idle_ms=dispatch.claim_idle_ms,
                max_deliveries=dispatch.max_deliveries, auto_intake_reports=dispatch.auto_intake_reports,
            )  # fmt: skip
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            await worker.run(stop)
        return 0

    return run(go())
