"""Every answer is counted (``placegate_http_requests_total{route,status}``) and every failed store call too
(``placegate_store_errors_total{op}``), on a real aiohttp server and a real Redis, a killed one included; the
labels carry route templates and call-site names, never an id, a token or a code (issue 13, point 7)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from gateway import redisio
from gateway.app import create_app
from gateway.appstate import METRICS
from gateway.batcher import CommandBatcher
from gateway.dispatch.store import case_id_for_event
from gateway.errors import StoreUnavailableError
from gateway.metrics import Metrics
from gateway.observe import UNMATCHED
from gateway.redisio import connect_redis, count_store_errors, redis_errors, store_op
from gateway.settings import Secret, Settings
from tests.gateway.conftest import PLACES, World

ROOT = Path(__file__).resolve().parents[2]


def _samples(text: str, name: str) -> dict[tuple[str, ...], float]:
    """The samples of one metric in a /metrics text, keyed by their label values in label-name order."""
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(v for _, v in sorted(sample.labels.items()))] = sample.value
    return out


def _requests(text: str) -> dict[tuple[str, str], float]:
    return {(route, status): v for (route, status), v in _samples(text, "placegate_http_requests_total").items()}


def _store_errors(text: str) -> dict[str, float]:
    return {op: v for (op,), v in _samples(text, "placegate_store_errors_total").items()}


async def _metrics(client: TestClient) -> str:  # type: ignore[type-arg]
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


# --- every answer, by route template and final status -----------------------------------------------------------
UNKNOWN_ID = "c0ffee0ddba11f00d1234"  # case-id shaped, in an unknown path and on the case route


async def _one_of_each(world: World) -> dict[tuple[str, str], float]:
    """An admit, a 400, a 401, a 403, two 404s (an unknown path, an unknown case) and a 413; the counts they make."""
    await world.set_status("holder-1")
    status, body = await world.scan(world.code("holder-1"))
    assert (status, body["decision"]) == (200, "admit")
    client = world.client
    bad_json = await client.post("/v1/scan", data=b"{not json", headers={**world.auth("dev-a"),
                                                                         "Content-Type": "application/json"})
    assert bad_json.status == 400
    assert (await client.post("/v1/scan", json={"code": world.code("holder-1")})).status == 401
    assert (await client.get(f"/v1/cases/{UNKNOWN_ID}", headers=world.auth("app"))).status == 403
    assert (await client.get(f"/v1/nothing/{UNKNOWN_ID}", headers=world.auth("dev-a"))).status == 404
    assert (await client.get(f"/v1/cases/{UNKNOWN_ID}", headers=world.auth("dispatcher"))).status == 404
    big = b'{"code": "' + b"A" * (world.settings.max_body_bytes + 1) + b'"}'
    too_large = await client.post("/v1/scan", data=big, headers={**world.auth("dev-a"),
                                                                  "Content-Type": "application/json"})
    assert too_large.status == 413
    return {
        ("/v1/scan", "200"): 1, ("/v1/scan", "400"): 1, ("/v1/scan", "401"): 1, ("/v1/scan", "413"): 1,
        ("/v1/cases/{case_id}", "403"): 1, ("/v1/cases/{case_id}", "404"): 1, (UNMATCHED, "404"): 1,
    }


async def test_every_answer_is_counted_once_by_route_template_and_final_status(world: World) -> None:
    expected = await _one_of_each(world)
    assert _requests(await _metrics(world.client)) == expected  # a scrape counts itself after it rendered
    assert _requests(await _metrics(world.client)) == {**expected, ("/metrics", "200"): 1}


async def test_route_labels_are_templates_or_unmatched_never_an_id(world: World) -> None:
    await _one_of_each(world)
    templates = {r.canonical for r in world.client.app.router.resources()} | {UNMATCHED}
    for route, status in _requests(await _metrics(world.client)):
        assert route in templates
        assert UNKNOWN_ID not in route and re.fullmatch(r"[1-5]\d\d", status)


async def test_the_metrics_text_carries_no_token_holder_code_case_id_or_place_id(world: World) -> None:
    codes: list[str] = []
    holders = [f"citizen-{i:03d}" for i in range(5)]
    for holder in holders:
        await world.set_status(holder)
        codes.append(world.code(holder))
        await world.scan(codes[-1])
        await world.scan(codes[-1], who="dev-b")  # shared: an exception event and a case id on its way
    case_id = case_id_for_event("ev-visible")
    await world.client.get(f"/v1/cases/{case_id}", headers=world.auth("dispatcher"))
    await world.client.post("/v1/scan", json={"code": codes[0], "place_code": world.place_codes["place-c"]},
                            headers=world.auth("app"))
    await _one_of_each(world)
    text = await _metrics(world.client)
    secrets = [*world.tokens.values(), *holders, *(c.split(":", 1)[1][:40] for c in codes), case_id, UNKNOWN_ID,
               *(p.place_id for p in PLACES), *(c[-40:] for c in world.place_codes.values())]
    for secret in secrets:
        assert secret not in text, secret


@pytest.fixture
async def boom_client(tmp_path: Path, redis: Redis) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = create_app(Settings(data_dir=tmp_path, secret=Secret(bytes(32))), redis=redis)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/healthz")

    app.router.add_get("/test/boom", boom)
    app.router.add_get("/test/moved", moved)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_an_unexpected_exception_counts_as_the_500_it_became_and_a_redirect_as_its_302(
    boom_client: TestClient,  # type: ignore[type-arg]
) -> None:
    assert (await boom_client.get("/test/boom")).status == 500
    assert (await boom_client.get("/test/moved", allow_redirects=False)).status == 302
    assert (await boom_client.post("/healthz")).status == 405
    assert _requests(await _metrics(boom_client)) == {
        ("/test/boom", "500"): 1, ("/test/moved", "302"): 1, (UNMATCHED, "405"): 1,
    }


# --- the hook behind placegate_store_errors_total ---------------------------------------------------------------
def test_the_translator_counts_under_the_call_sites_name() -> None:
    seen: list[str] = []
    remove = count_store_errors(seen.append)
    try:
        with pytest.raises(StoreUnavailableError), redis_errors("principal registry"):
            raise ConnectionRefusedError(111, "refused")
        with pytest.raises(ValueError), redis_errors("principal registry"):
            raise ValueError("not the store's")  # passes unchanged, uncounted
    finally:
        remove()
    assert seen == ["principal_registry"]


def test_the_newest_sink_counts_and_each_removes_only_itself() -> None:
    older: list[str] = []
    newer: list[str] = []
    remove_older = count_store_errors(older.append)
    remove_newer = count_store_errors(newer.append)

    def fail() -> None:
        with pytest.raises(StoreUnavailableError), redis_errors("cases"):
            raise TimeoutError

    fail()
    remove_older()  # out of order: the newer one still counts
    fail()
    remove_newer()
    fail()  # nobody counts; nothing breaks
    assert (older, newer) == ([], ["cases", "cases"])


async def test_a_failed_batcher_group_counts_once_per_group(tmp_path: Path) -> None:
    seen: list[str] = []
    client = connect_redis(f"unix://{tmp_path}/no-such.sock")
    batcher = CommandBatcher(client)
    remove = count_store_errors(seen.append)
    try:
        with pytest.raises(StoreUnavailableError):
            await batcher.run((("PING",),))
    finally:
        remove()
        await batcher.aclose()
        await client.aclose()
    assert seen == [redisio.BATCHER_OP]  # the connect failure inside the flush is not counted a second time


async def test_an_error_reply_the_batcher_raises_is_counted(redis: Redis) -> None:
    await redis.set("k", "not a hash")
    seen: list[str] = []
    batcher = CommandBatcher(redis)
    remove = count_store_errors(seen.append)
    try:
        with pytest.raises(StoreUnavailableError):
            await batcher.run((("HGET", "k", "f"),))
        assert seen == [redisio.BATCHER_OP]
    finally:
        remove()
        await batcher.aclose()


async def test_a_running_app_counts_store_errors_and_a_stopped_one_no_longer_does(
    tmp_path: Path, redis: Redis
) -> None:
    app = create_app(Settings(data_dir=tmp_path, secret=Secret(bytes(32))), redis=redis)
    async with TestClient(TestServer(app)) as client:
        with pytest.raises(StoreUnavailableError), redis_errors("audit trail"):
            raise ConnectionResetError
        assert _store_errors(await _metrics(client)) == {"audit_trail": 1}
    with pytest.raises(StoreUnavailableError), redis_errors("audit trail"):
        raise ConnectionResetError
    assert _store_errors(app[METRICS].render().decode()) == {"audit_trail": 1}


# --- the op label set is bounded and documented -----------------------------------------------------------------
def _translator_names() -> set[str]:
    """The ``what`` of every ``redis_errors(...)`` call in the source; each must be a string literal."""
    names: set[str] = set()
    for folder in ("gateway", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == (
                    "redis_errors"
                ):
                    (arg,) = node.args
                    assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), f"{path}:{node.lineno}"
                    names.add(arg.value)
    return names


def _documented_ops() -> set[str]:
    text = (ROOT / "docs" / "operations.md").read_text("utf-8")
    (row,) = [line for line in text.splitlines() if line.startswith("| `placegate_store_errors_total{op}`")]
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[2].split("by call site:", 1)[1]))


def test_every_store_op_is_a_literal_call_site_name_listed_in_the_operations_doc() -> None:
    ops = {store_op(name) for name in _translator_names()} | {redisio.BATCHER_OP}
    assert all(re.fullmatch(r"[a-z][a-z_]{1,30}", op) for op in ops), ops
    assert ops == _documented_ops()


# --- serve --workers N: the counters are summed over the workers' files ----------------------------------------
_COUNT_IN_A_WORKER = textwrap.dedent("""
    from gateway.metrics import Metrics
    m = Metrics()
    m.count_http("/v1/scan", 200)
    m.count_http("/v1/scan", 200)
    m.count_http("unmatched", 404)
    m.count_store_error("batcher")
""")
_RENDER = "import sys; from gateway.metrics import Metrics; sys.stdout.write(Metrics().render().decode())"


def test_the_counters_are_summed_over_workers_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(2):  # two processes, as two workers: each writes its own files
        subprocess.run([sys.executable, "-c", _COUNT_IN_A_WORKER], env=env, cwd=ROOT, check=True, timeout=60)
    text = subprocess.run([sys.executable, "-c", _RENDER], env=env, cwd=ROOT, check=True, timeout=60,
                          capture_output=True, text=True).stdout
    assert _requests(text) == {("/v1/scan", "200"): 4, (UNMATCHED, "404"): 2}
    assert _store_errors(text) == {"batcher": 2}


def test_the_metrics_object_counts_through_cached_children() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.count_http("/v1/scan", 200)
        metrics.count_store_error("cases")
    text = metrics.render().decode()
    assert _requests(text) == {("/v1/scan", "200"): 3}
    assert _store_errors(text) == {"cases": 3}
