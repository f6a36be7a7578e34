"""Every query parameter of every route is checked (issue 15 "bad input"): an unknown, repeated or overlong one is
400 `invalid_request` naming it; out-of-range instants and cursors are 400, never a 500 or a 503. Over HTTP on
the real Redis, plus a property test that no query string at all gets a 5xx."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.apidocs import ROUTE_DOCS
from gateway.principals import Principal, Role
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw


async def _officer(dw: DispatchWorld) -> None:
    dw.world.tokens["officer"] = await create_principal(Registry(dw.world.redis),
                                                        Principal("po-q", Role.PRIVACY_OFFICER))  # fmt: skip


async def _get(dw: DispatchWorld, who: str | None, path: str, method: str = "GET") -> tuple[int, dict[str, str]]:
    headers = dw.world.auth(who) if who else {}
    resp = await dw.world.client.request(method, path, headers=headers)
    return resp.status, await resp.json()


@pytest.mark.parametrize(("method", "template"), sorted(ROUTE_DOCS))
async def test_an_unknown_query_parameter_is_refused_on_every_route_naming_it(
    dw: DispatchWorld, method: str, template: str
) -> None:
    path = template.replace("{case_id}", "c" + "0" * 20).replace("{place_id}", "place-a").replace("{n}", "1")
    for who in (None, "dispatcher"):  # before authentication: the parameter names are public (the OpenAPI)
        status, body = await _get(dw, who, path + "?bogus_param=1", method)
        assert (status, body["error"]) == (400, "invalid_request"), (method, path, body)
        assert "bogus_param" in body["detail"]


@pytest.mark.parametrize(
    ("who", "path", "named"),
    [
        ("dispatcher", "/v1/cases?state=reported&state=filed", "state"),  # repeated
        ("dispatcher", "/v1/cases?Limit=5", "Limit"),  # names are exact
        ("dispatcher", "/v1/cases?cursor=" + "1" * 129, "cursor"),  # overlong
        ("dispatcher", "/v1/cases?department=" + "d" * 200, "department"),
        ("sup-d1", "/v1/dispatch/metrics?from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z&to=2026-03-04T00:00:00Z",
         "to"),
        ("officer", "/v1/privacy/audit?since=2026-03-02T00:00:00Z&until=2026-03-03T00:00:00Z&foo=", "foo"),
        ("officer", "/v1/privacy/audit/verify?anchor=1:" + "a" * 64 + "&anchor=2:" + "b" * 64, "anchor"),
    ],
)
async def test_repeated_misspelt_and_overlong_parameters_are_400_naming_them(
    dw: DispatchWorld, who: str, path: str, named: str
) -> None:
    await _officer(dw)
    status, body = await _get(dw, who, path)
    assert (status, body["error"]) == (400, "invalid_request"), body
    assert repr(named) in body["detail"]


@pytest.mark.parametrize(
    "cursor", ["1" * 23, str(2**64), "99999999999999999999", "-1", "1e3", " 5", "1_0", "\u0665"]
)  # fmt: skip
async def test_a_cursor_no_page_returns_is_400_not_503(dw: DispatchWorld, cursor: str) -> None:
    status, body = await _get(dw, "dispatcher", "/v1/cases?cursor=" + urllib.parse.quote(cursor))
    assert (status, body["error"]) == (400, "invalid_request")


async def test_the_largest_cursor_redis_takes_is_answered(dw: DispatchWorld) -> None:
    status, body = await _get(dw, "dispatcher", f"/v1/cases?cursor={2**64 - 1}")
    assert status == 200 and body["cases"] == []


async def test_an_unknown_department_filter_is_400(dw: DispatchWorld) -> None:
    status, body = await _get(dw, "dispatcher", "/v1/cases?department=no-such-dept")
    assert (status, body["error"]) == (400, "invalid_request")
    assert (await _get(dw, "dispatcher", "/v1/cases?department=d1-cdc"))[0] == 200


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("from=0001-01-01T00:00:00%2B08:00&to=2026-03-03T00:00:00Z", "from"),  # year 1 east of UTC: overflowed
        ("from=0001-01-01T00:00:00Z&to=0001-01-02T00:00:00Z", "from"),
        ("from=9999-12-30T00:00:00Z&to=9999-12-31T00:00:00Z", "from"),
        ("from=2099-12-31T00:00:00Z&to=2100-01-02T00:00:00Z", "to"),  # a range past the bounds
        ("from=1999-12-31T00:00:00Z&to=2000-01-02T00:00:00Z", "from"),
        ("from=2026-03-02T00:00:00&to=2026-03-03T00:00:00Z", "from"),  # no offset
        ("to=2026-03-03T00:00:00Z", "from"),  # missing
        ("from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z&level=planet", "level"),
    ],
)
async def test_metrics_instants_out_of_range_are_400_naming_them(dw: DispatchWorld, query: str, named: str) -> None:
    status, body = await _get(dw, "sup-d1", "/v1/dispatch/metrics?" + query)
    assert (status, body["error"]) == (400, "invalid_request"), body
    assert repr(named) in body["detail"]


async def test_metrics_at_the_edges_of_the_bounds_are_answered(dw: DispatchWorld) -> None:
    for query in ("from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z",
                  "from=2099-12-31T00:00:00Z&to=2099-12-31T23:59:59.999999Z"):  # fmt: skip
        status, body = await _get(dw, "sup-d1", "/v1/dispatch/metrics?" + query)
        assert (status, body["overall"]["cases"]) == (200, 0)


@pytest.mark.parametrize(
    "query",
    ["since=0001-01-01T00:00:00%2B08:00&until=2026-03-03T00:00:00Z",
     "since=9999-12-30T00:00:00Z&until=9999-12-31T00:00:00Z",
     "since=2099-12-31T00:00:00Z&until=2100-01-02T00:00:00Z"],
)  # fmt: skip
async def test_audit_query_instants_out_of_range_are_400(dw: DispatchWorld, query: str) -> None:
    await _officer(dw)
    status, body = await _get(dw, "officer", "/v1/privacy/audit?" + query)
    assert (status, body["error"]) == (400, "invalid_request"), body


# --- property: whatever the query string, no 5xx ----------------------------------------------------------------

_ROUTES = [
    ("/v1/cases", "dispatcher", ("state", "overdue", "department", "limit", "cursor")),
    ("/v1/dispatch/metrics", "sup-d1", ("from", "to", "level")),
    ("/v1/privacy/audit", "officer", ("since", "until", "principal", "action", "limit", "cursor")),
    ("/v1/privacy/audit/verify", "officer", ("anchor",)),
    ("/v1/cases/c00000000000000000000", "dispatcher", ()),
]
_INSTANTS = st.builds(
    lambda at, minutes: at.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
_VALUES = st.one_of(
    _INSTANTS,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=2**64 - 8, max_value=10**20 - 1).map(str),  # around SSCAN's 64-bit cursor
    st.sampled_from(["", "true", "false", "reported", "unrouted", "d1-cdc", "district", "1-0", "0:" + "a" * 64]),
    st.text(max_size=40),
    st.text(alphabet="0123456789", min_size=15, max_size=160),
)


def _names(documented: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(documented), st.text(min_size=1, max_size=12)) if documented else st.text(
        min_size=1, max_size=12)


def _hammer(base: str, tokens: dict[str, str]) -> tuple[list[str], Counter[int]]:
    failures: list[str] = []
    statuses: Counter[int] = Counter()

    @settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data())
    def call(data: st.DataObject) -> None:
        path, who, documented = data.draw(st.sampled_from(_ROUTES))
        pairs = data.draw(st.lists(st.tuples(_names(documented), _VALUES), max_size=4))
        url = base + path + "?" + urllib.parse.urlencode(pairs)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {tokens[who]}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        statuses[status] += 1
        if status >= 500 or (status >= 400 and "error" not in json.loads(body)):
            failures.append(f"{status} {url[:300]}")

    call()
    return failures, statuses


async def test_no_query_string_gets_a_5xx(dw: DispatchWorld) -> None:
    await _officer(dw)
    base = str(dw.world.client.make_url("")).rstrip("/")
    failures, statuses = await asyncio.to_thread(_hammer, base, dw.world.tokens)
    assert failures == [], failures[:20]
    # The run reached the handlers and both kinds of answer, not only the name check.
    assert statuses[200] > 0 and statuses[400] > 0, statuses


async def test_a_head_request_is_held_to_its_get_routes_parameters(dw: DispatchWorld) -> None:
    assert (await dw.world.client.head("/healthz?bogus=1")).status == 400
    assert (await dw.world.client.head("/healthz")).status == 200
    resp = await dw.world.client.head("/v1/cases?limit=5", headers=dw.world.auth("dispatcher"))
    assert resp.status == 200
