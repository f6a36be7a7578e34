"""`placegate openapi`: print the OpenAPI document of a gateway built from the configured settings.

docs/openapi.json is this command's output (``placegate openapi > docs/openapi.json``), held equal to the code by
tests/gateway/test_openapi.py. Nothing is started: the app is built, its router read, and nothing is opened.
"""

from __future__ import annotations

import argparse
import sys

from gateway.app import create_app
from gateway.openapi import render
from gateway.settings import Secret, Settings

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doc = sub.add_parser("openapi", help="print the OpenAPI document of this gateway (docs/openapi.json)")
    doc.set_defaults(func=_print)


def _print(args: argparse.Namespace) -> int:
    # The document depends on the routes only; a throw-away secret builds the app without touching any store.
    sys.stdout.buffer.write(render(create_app(Settings(secret=Secret(bytes(32))))))
    return 0
