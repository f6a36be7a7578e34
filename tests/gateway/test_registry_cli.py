"""The registry commands validate before they write (issue 16 item 7), run as subprocesses on the session's server:
`places add` neither overwrites without --replace nor takes a class the rules lack, `devices revoke` revokes only
devices, a revoked id comes back only with --reissue, and `principals add` holds departments and jurisdictions to
the routing table. Every refusal is exit 2, one line, nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway import keyspace
from gateway.principals import hash_token
from gateway.privacy.audit import query_audit
from gateway.trust.registry import Registry
from tests.gateway.conftest import World
from tests.gateway.test_keys_cli import assert_refused, run_cli

RULES_Q_ONLY = """\
version = "test-q"
status_max_age_h = 24

[classes.Q]
name = "quarantine hotels"
on_unknown = "deny"
on_degraded = "deny"
"""


async def _audited(redis: Redis, action: str) -> list[str]:
    now = datetime.now(UTC)
    page = await query_audit(redis, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5), limit=50,
                             action=action)
    return [e.fields["object"] for e in page.entries]


async def test_places_add_refuses_to_overwrite_without_replace(redis: Redis, redis_url: str, tmp_path: Path) -> None:
    cli = {"redis_url": redis_url, "data_dir": tmp_path}
    assert (await run_cli("keys", "new", "--usage", "place", **cli)).returncode == 0
    first = await run_cli("places", "add", "mall-1", "--class", "B", "--jurisdiction", "metro/east", **cli)
    assert first.returncode == 0 and first.stdout.startswith("PGP:"), first.stderr
    again = await run_cli("places", "add", "mall-1", "--class", "A", "--jurisdiction", "metro/west", **cli)
    assert_refused(again, "place mall-1 exists", "--replace")
    place = await Registry(redis).get_place("mall-1")
    assert place is not None and (place.venue_class, place.jurisdiction) == ("B", "metro/east")
    replaced = await run_cli("places", "add", "mall-1", "--class", "A", "--jurisdiction", "metro/west", "--replace",
                             **cli)
    assert replaced.returncode == 0, replaced.stderr
    place = await Registry(redis).get_place("mall-1")
    assert place is not None and (place.venue_class, place.jurisdiction) == ("A", "metro/west")
    assert await _audited(redis, "place_add") == ["place:mall-1"]
    assert await _audited(redis, "place_replace") == ["place:mall-1"]


async def test_places_add_takes_classes_from_the_rules_file(redis: Redis, redis_url: str, tmp_path: Path) -> None:
    cli = {"redis_url": redis_url, "data_dir": tmp_path}
    # The packaged rules (no PLACEGATE_RULES_FILE) define A, B and C only; refused before any key is needed.
    assert_refused(await run_cli("places", "add", "p-z", "--class", "Z", "--jurisdiction", "metro", **cli),
                   "venue class 'Z' is not in the rules", "A,B,C")
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_Q_ONLY, "utf-8")
    env = {"PLACEGATE_RULES_FILE": str(rules)}
    assert (await run_cli("keys", "new", "--usage", "place", **cli)).returncode == 0
    assert_refused(await run_cli("places", "add", "p-b", "--class", "B", "--jurisdiction", "metro", env=env, **cli),
                   "venue class 'B' is not in the rules (version test-q)", "use one of Q")
    done = await run_cli("places", "add", "p-q", "--class", "Q", "--jurisdiction", "metro", env=env, **cli)
    assert done.returncode == 0, done.stderr
    assert [p.place_id for p in await Registry(redis).list_places()] == ["p-q"]


async def test_devices_revoke_refuses_a_site_manager_and_revokes_a_device(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    cli = {"redis_url": redis_url, "data_dir": tmp_path}
    added = await run_cli("principals", "add", "sm-1", "--role", "site_manager", "--places", "place-a", **cli)
    assert added.returncode == 0, added.stderr
    assert_refused(await run_cli("devices", "revoke", "sm-1", **cli), "not a device", "use principals revoke")
    registry = Registry(world.redis)
    manager = await registry.principal_by_id("sm-1")
    assert manager is not None and not manager.revoked
    assert (await run_cli("devices", "revoke", "dev-a", **cli)).stdout == "revoked dev-a\n"
    device = await registry.principal_by_id("dev-a")
    assert device is not None and device.revoked
    assert (await run_cli("principals", "revoke", "sm-1", **cli)).returncode == 0
    assert await _audited(world.redis, "token_revoke") == ["principal:dev-a", "principal:sm-1"]


async def test_a_revoked_device_is_re_added_only_with_reissue(world: World, redis_url: str, tmp_path: Path) -> None:
    cli = {"redis_url": redis_url, "data_dir": tmp_path}
    add = ("devices", "add", "dev-a", "--place", "place-a")
    assert_refused(await run_cli(*add, **cli), "dev-a exists and is active", "devices revoke dev-a")
    assert (await run_cli("devices", "revoke", "dev-a", **cli)).returncode == 0
    assert_refused(await run_cli(*add, **cli), "dev-a was revoked", "--reissue")
    done = await run_cli(*add, "--reissue", **cli)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    registry = Registry(world.redis)
    old = await registry.get_principal(hash_token(world.tokens["dev-a"]))
    new = await registry.get_principal(hash_token(token))
    assert old is not None and old.revoked  # the old token stays dead
    assert new is not None and not new.revoked and new.places == frozenset({"place-a"})
    await world.set_status("holder-r")
    world.tokens["dev-new"] = token
    status, body = await world.scan(world.code("holder-r"), who="dev-new")
    assert (status, body["decision"]) == (200, "admit")
    assert_refused(await run_cli(*add, "--reissue", **cli), "dev-a exists and is active")  # only a revoked id


SCOPE_REFUSALS: dict[str, tuple[list[str], str]] = {
    "handler_without_department": (["--role", "handler"], "a handler needs --department"),
    "unknown_department": (["--role", "handler", "--department", "moon-cdc"], "'moon-cdc' is not in the routing"),
    "dispatcher_without_jurisdiction": (["--role", "dispatcher"], "a dispatcher needs --jurisdiction"),
    "supervisor_outside_city": (["--role", "supervisor", "--jurisdiction", "city/d1"], "outside the routing table's"),
    "malformed_jurisdiction": (["--role", "dispatcher", "--jurisdiction", "Metro//x"], "is malformed"),
    "officer_outside_city": (["--role", "privacy_officer", "--jurisdiction", "gotham"], "outside the routing"),
    "device_with_two_places": (["--role", "device", "--places", "place-a,place-b"], "exactly one place"),
    "site_manager_without_places": (["--role", "site_manager"], "a site manager needs --places"),
    "unknown_place": (["--role", "site_manager", "--places", "place-a,nowhere"], "no place nowhere"),
}


@pytest.mark.parametrize("name", list(SCOPE_REFUSALS))
async def test_principals_add_refuses_a_scope_the_routing_table_cannot_serve(
    world: World, redis_url: str, tmp_path: Path, name: str
) -> None:
    extra, reason = SCOPE_REFUSALS[name]
    done = await run_cli("principals", "add", "p-new", *extra, redis_url=redis_url, data_dir=tmp_path)
    assert_refused(done, reason)
    assert not await world.redis.hexists(keyspace.PRINCIPAL_IDS, "p-new")


async def test_principals_add_takes_departments_from_the_configured_routing_table(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    cli = {"redis_url": redis_url, "data_dir": tmp_path}
    for args in (["h-1", "--role", "handler", "--department", "east-cdc"],
                 ["d-1", "--role", "dispatcher", "--jurisdiction", "metro/east"],
                 ["s-1", "--role", "supervisor", "--jurisdiction", "metro"]):
        done = await run_cli("principals", "add", *args, **cli)
        assert done.returncode == 0 and done.stdout.startswith("pgt_"), done.stderr
    default_routing = (Path(__file__).parents[2] / "policy" / "default_routing.toml").read_text("utf-8")
    routing = tmp_path / "routing.toml"
    routing.write_text(default_routing.replace('"east-cdc"', '"harbour-cdc"'), "utf-8")
    env = {"PLACEGATE_DISPATCH_ROUTING_FILE": str(routing)}
    assert_refused(await run_cli("principals", "add", "h-2", "--role", "handler", "--department", "east-cdc",
                                 env=env, **cli), "'east-cdc' is not in the routing table")
    done = await run_cli("principals", "add", "h-3", "--role", "handler", "--department", "harbour-cdc", env=env,
                         **cli)
    assert done.returncode == 0, done.stderr
    assert [p.principal_id for p in await Registry(redis).list_principals()] == ["d-1", "h-1", "h-3", "s-1"]
