"""The OpenAPI document: every route described, docs/openapi.json equal to what the code builds, and a
schemathesis run against a live gateway process (a real `placegate serve` on the suite's store) that finds no
5xx and no answer outside the document."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from redis.asyncio import Redis

from gateway.apidocs import ROUTE_DOCS
from gateway.app import create_app
from gateway.openapi import build, render
from gateway.settings import Secret, Settings
from tests.gateway.conftest import SECRET, World

ROOT = Path(__file__).resolve().parents[2]
schemathesis = pytest.importorskip("schemathesis")


def _app_document() -> dict[str, Any]:
    return build(create_app(Settings(secret=Secret(bytes(32)))))


def test_every_route_of_the_app_is_described_and_nothing_else() -> None:
    doc = _app_document()
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert described == set(ROUTE_DOCS)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "default" in op["responses"], (method, path)
            assert ("security" in op) == (path not in ("/healthz", "/readyz", "/metrics", "/openapi.json")), path


def test_docs_openapi_json_is_what_the_code_builds() -> None:
    expected = render(create_app(Settings(secret=Secret(bytes(32)))))
    regenerate = "placegate openapi > docs/openapi.json"
    assert (ROOT / "docs" / "openapi.json").read_bytes() == expected, regenerate


async def test_the_gateway_serves_its_document(world: World) -> None:
    resp = await world.client.get("/openapi.json")
    assert resp.status == 200
    assert orjson.loads(await resp.read()) == build(world.client.app)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gateway did not start")


# Which principal schemathesis acts as on each route: one that the route admits, so that the generated
# requests reach the handlers (a 401/403 for every call would prove nothing about them).
# The scan routes run as a digital sentry (issue 18): the generated identity cards and temperatures reach the
# handlers instead of a 403 id_card_not_allowed.
_ACTOR = {"scan": "sentry", "scan_batch": "sentry", "put_status": "feeder", "post_report": None,
          "list_cases": "dispatcher"}


def _token_for(op_id: str, roles_text: str, world: World) -> str | None:
    if "public" in roles_text:
        return None
    if op_id in _ACTOR and _ACTOR[op_id] is not None:
        return world.tokens[_ACTOR[op_id]]
    for role, who in (("device", "dev-a"), ("feeder", "feeder"), ("dispatcher", "dispatcher"),
                      ("privacy_officer", "officer"), ("supervisor", "supervisor"), ("handler", "handler"),
                      ("site_manager", "manager"), ("app", "app")):
        if role in roles_text and who in world.tokens:
            return world.tokens[who]
    return None


async def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(
    world: World, redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    from gateway.principals import Principal, Role
    from gateway.trust.cli_registry import create_principal
    from gateway.trust.registry import Registry

    registry = Registry(redis)
    for who, principal in {
        "officer": Principal("po-st", Role.PRIVACY_OFFICER),
        "supervisor": Principal("sup-st", Role.SUPERVISOR, jurisdiction="city/d1"),
        "handler": Principal("hd-st", Role.HANDLER, department="community_health"),
        "manager": Principal("sm-st", Role.SITE_MANAGER, frozenset({"place-a"})),
        "sentry": Principal("sentry-st", Role.DEVICE, frozenset({"place-a"}), id_card=True),
    }.items():
        world.tokens[who] = await create_principal(registry, principal)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PLACEGATE_SECRET": SECRET.reveal().hex(), "PLACEGATE_DATA_DIR": str(tmp_path),
           "PLACEGATE_ACCESS_LOG": "false", "PLACEGATE_READY_TRUST_LISTS": "native"}
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--redis-url", redis_url, "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        await asyncio.to_thread(_wait_ready, base, proc)
        failures = await asyncio.to_thread(_run_schemathesis, base, world)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert failures == [], "\n".join(failures[:20])


def _run_schemathesis(base: str, world: World) -> list[str]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    with urllib.request.urlopen(base + "/openapi.json", timeout=5) as resp:
        document = orjson.loads(resp.read())
    schema = schemathesis.openapi.from_dict(document)
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures: list[str] = []
    calls: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        op = document["paths"][operation.path][operation.method.lower()]
        token = _token_for(op["operationId"], op["description"], world)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        label = f"{operation.method.upper()} {operation.path}"

        run = given(case=operation.as_strategy())(_caller(base, headers, label, checks, failures, calls))
        settings(max_examples=25, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))(run)()
    # The run really exercised every operation, several times each.
    assert set(calls) == {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops}
    with_inputs = {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m, op in ops.items()
                   if op.get("parameters") or op.get("requestBody")}
    assert min(calls[label] for label in with_inputs) >= 5, calls  # an operation without inputs has one case
    return failures


def _caller(
    base: str, headers: dict[str, str], label: str, checks: list[Any], failures: list[str], calls: Counter[str]
) -> Callable[[Any], None]:
    def call(case: Any) -> None:
        calls[label] += 1
        response = case.call(base_url=base, headers=headers, timeout=10)
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # collected, reported together below
            failures.append(f"{label}: {type(exc).__name__}: {str(exc)[:300]}")

    return call
