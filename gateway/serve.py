"""`placegate serve`: the gateway on a configured Redis, or on the embedded server in the data directory."""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from dataclasses import replace

from gateway.cli_common import add_common_args, embedded_dir, settings_from
from gateway.demo import prepare_demo
from gateway.embedded import EmbeddedServer, Supervisor, socket_alive
from gateway.logjson import configure_logging
from gateway.workers import serve_process, serve_workers

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the gateway (embedded Redis when no --redis-url)")
    serve.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default 8080)")
    serve.add_argument("--workers", type=int, default=None,
                       help="gateway processes sharing the port via SO_REUSEPORT, one per core (default 1)")
    serve.add_argument("--demo", action="store_true",
                       help="create demo keys, place, device and holder, and print a curl command that scans")
    add_common_args(serve)
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(settings.log_format)
    supervisor: Supervisor | None = None
    if settings.redis_url is None:
        embedded = EmbeddedServer(embedded_dir(settings), die_with_parent=True, root=settings.data_dir)
        if socket_alive(embedded.socket_path):
            print(f"using the embedded server already running in {embedded.directory}", file=sys.stderr)
        else:
            # Supervised: restarted on its AOF if it dies while the gateway runs (only a server this gateway started).
            supervisor = Supervisor(embedded.start()).start()
            print(f"embedded Redis-compatible server (AOF on) in {embedded.directory}", file=sys.stderr)
        settings = replace(settings, redis_url=embedded.url)
    settings = settings.with_secret()
    try:
        demo_line = asyncio.run(prepare_demo(settings)) if args.demo else None

        def announce(message: str) -> None:
            print(message, flush=True)
            if demo_line:
                print("\nDemo ready. Scan a freshly minted demo code (valid 5 minutes) — expect \"admit\"; run the "
                      "same line again and expect \"deny\" with reason \"replayed\":\n", flush=True)
                print(demo_line + "\n", flush=True)
                command = shlex.quote(sys.argv[0]) if sys.argv and sys.argv[0].endswith("placegate") else "placegate"
                print(f"A fresh code: {command} issue --holder demo-holder-0001\n", flush=True)

        if settings.workers > 1:
            return serve_workers(settings, settings.workers, announce=announce)
        serve_process(settings, announce=announce)
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0
