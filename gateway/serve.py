"""`placegate serve`: the gateway on a configured Redis, or on the embedded server in the data directory.

Everything an operator can get wrong is checked here, before any worker starts, and raised as a ``SettingsError``
naming what to fix (``cli.main`` prints one line and exits 2): the secret and the store's fingerprint of it, the
rules and dispatch tables, the listen port, ``--demo`` against an external store.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import shlex
import socket
import sys
from dataclasses import replace
from pathlib import Path

from gateway.cli_common import add_common_args, embedded_dir, settings_from
from gateway.demo import DEMO_DEVICE, DEMO_HOLDER, DEMO_PLACE, prepare_demo
from gateway.embedded import EmbeddedServer, Supervisor, socket_alive
from gateway.logjson import configure_logging
from gateway.redisio import connect_redis
from gateway.secretcheck import check_secret, public_url
from gateway.settings import Settings, SettingsError
from gateway.workers import serve_process, serve_workers

__all__ = ["check_port", "check_tables", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the gateway (embedded Redis when no --redis-url)")
    serve.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default 8080)")
    serve.add_argument("--workers", type=int, default=None,
                       help="gateway processes sharing the port via SO_REUSEPORT, one per core (default 1)")
    serve.add_argument("--demo", action="store_true",
                       help="create demo keys, place, device and holder, and print a curl command that scans")
    serve.add_argument("--demo-into-external", action="store_true",
                       help="let --demo write its keys, place, device and holder into an external store")
    add_common_args(serve)
    serve.set_defaults(func=_serve)


def check_tables(settings: Settings) -> None:
    """Load the rules and the dispatch tables as the workers will, so a bad file stops the start with its name.

    :raises SettingsError: a file that cannot be read or does not validate, named by its variable.
    """
    from gateway.dispatch.runtime import load_tables
    from policy.errors import PolicyError
    from policy.rules import load_rules

    files = ((settings.rules_file, "PLACEGATE_RULES_FILE"),
             (settings.dispatch.routing_file, "PLACEGATE_DISPATCH_ROUTING_FILE"),
             (settings.dispatch.deadlines_file, "PLACEGATE_DISPATCH_DEADLINES_FILE"),
             (settings.dispatch.calendar_file, "PLACEGATE_DISPATCH_CALENDAR_FILE"),
             (settings.dispatch.webhooks_file, "PLACEGATE_DISPATCH_WEBHOOKS_FILE"))
    for path, variable in files:
        if path is not None:
            _readable(path, variable)
    try:
        load_rules(settings.rules_file.read_text("utf-8") if settings.rules_file else None)
    except (PolicyError, ValueError) as exc:  # the rules' own validation message says what is wrong
        raise SettingsError("PLACEGATE_RULES_FILE", f"{settings.rules_file}: {exc}") from None
    try:
        load_tables(settings.dispatch)
    except (PolicyError, ValueError) as exc:  # the message names the table and the entry
        raise SettingsError("PLACEGATE_DISPATCH_ROUTING_FILE, PLACEGATE_DISPATCH_DEADLINES_FILE or "
                            "PLACEGATE_DISPATCH_CALENDAR_FILE", str(exc)) from None
    from gateway.dispatch.webhooks import WebhookTableError, load_webhooks

    try:
        load_webhooks(settings.dispatch.webhooks_file)
    except WebhookTableError as exc:  # names the department and the fault, never a key
        raise SettingsError("PLACEGATE_DISPATCH_WEBHOOKS_FILE", str(exc)) from None

def _readable(path: Path, variable: str) -> None:
    try:
        path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a UTF-8 text file"
        raise SettingsError(variable, f"cannot read {path}: {reason}") from None


def check_port(settings: Settings) -> None:
    """Bind the listen address once, as the workers will (SO_REUSEPORT), and let it go.

    :raises SettingsError: the port is taken by another program or the address is not this host's.
    """
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise SettingsError("PLACEGATE_HOST", f"cannot resolve {settings.host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if settings.workers > 1:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SettingsError("PLACEGATE_PORT", f"{settings.host}:{settings.port} is already in use "
                                    "(another gateway or program listens there)") from None
            raise SettingsError("PLACEGATE_HOST", f"cannot listen on {settings.host}:{settings.port}: "
                                f"{exc.strerror or exc}") from None


async def _check_store(settings: Settings) -> None:
    assert settings.redis_url is not None and settings.secret is not None
    redis = connect_redis(settings.redis_url, connect_timeout_s=settings.redis_connect_timeout_s,
                          socket_timeout_s=settings.redis_socket_timeout_s)
    try:
        await check_secret(redis, settings.secret, url=settings.redis_url)
    finally:
        await redis.aclose()


def _serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(settings.log_format)
    external = settings.redis_url is not None
    if args.demo and external and not args.demo_into_external:
        raise SettingsError("PLACEGATE_REDIS_URL", "serve --demo writes demo keys, a place, a device and a holder; "
                            "it refuses an external store unless --demo-into-external is given")
    settings = settings.with_secret()  # before anything starts: an external store needs the deployment's secret
    check_tables(settings)
    check_port(settings)
    supervisor: Supervisor | None = None
    if not external:
        embedded = EmbeddedServer(embedded_dir(settings), die_with_parent=True, root=settings.data_dir)
        if socket_alive(embedded.socket_path):
            print(f"using the embedded server already running in {embedded.directory}", file=sys.stderr)
        else:
            # Supervised: restarted on its AOF if it dies while the gateway runs (only a server this gateway started).
            supervisor = Supervisor(embedded.start()).start()
            print(f"embedded Redis-compatible server (AOF on) in {embedded.directory}", file=sys.stderr)
        settings = replace(settings, redis_url=embedded.url)
    try:
        assert settings.redis_url is not None
        asyncio.run(_check_store(settings))
        if args.demo and external:
            print(f"--demo-into-external: writing into the store at {public_url(settings.redis_url)}: demo issuer "
                  f"keys (health, place) unless present, the place {DEMO_PLACE.place_id!r}, the device "
                  f"{DEMO_DEVICE!r} (a new token) and the green status of {DEMO_HOLDER!r}", file=sys.stderr)
        demo_line = asyncio.run(prepare_demo(settings)) if args.demo else None

        def announce(message: str) -> None:
            print(message, flush=True)
            if demo_line:
                print("\nDemo ready. Scan a freshly minted demo code (valid 5 minutes) — expect \"admit\"; run the "
                      "same line again more than 5 s later and expect \"deny\" with reason \"replayed\" (sooner it is "
                      "a scanner's retry, answered like the first):\n", flush=True)
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
