"""Crypto-shredding that a test cannot break (issue 14): a deleted day key is never used again, `placegate privacy
shred --day` removes a day now, and neither Redis nor any byte of the server's directory links that day's records
to a holder afterwards."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from crypto.native import Colour
from gateway import keyspace
from gateway.cli import main
from gateway.embedded import EmbeddedServer
from gateway.errors import StoreUnavailableError
from gateway.privacy import compaction
from gateway.privacy.compaction import compact_if_keys_gone, compact_store
from gateway.privacy.shred import shred_day
from gateway.redisio import connect_redis
from gateway.scan.scanlog import day_of, partition_expiry, pseudonym
from tests.conftest import sync_client
from tests.gateway.conftest import SECRET, PrivateServerFactory, World, WorldFactory

HOLDERS = ("holder-1", "holder-2", "holder-3", "holder-quiet", "holder-red")  # holder-quiet: admits only


async def _drive_day(world: World) -> None:
    """Admits, a replay and a red status (both exceptions with intake events) for every holder, at two places."""
    for holder in HOLDERS[:-1]:
        await world.set_status(holder, Colour.GREEN)
        code = world.code(holder)
        assert (await world.scan(code, who="dev-c"))[0] == 200
        if holder == "holder-quiet":
            assert (await world.scan(world.code(holder), who="dev-b"))[1]["reason"] == "ok"
            continue
        status, body = await world.scan(code, who="dev-c")
        assert (status, body["reason"]) == (200, "replayed")
    await world.set_status("holder-red", Colour.RED)
    status, body = await world.scan(world.code("holder-red"), who="dev-a")
    assert (status, body["reason"]) == (200, "status_red")


async def _values(redis: Redis) -> list[tuple[bytes, bytes, bytes]]:
    """Every stored value as (key, field or b"", value): strings, hashes, sets, sorted sets, lists and streams."""
    out: list[tuple[bytes, bytes, bytes]] = []
    async for key in redis.scan_iter(count=1000):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out.append((key, b"", await redis.get(key)))
        elif kind == "hash":
            out += [(key, f, v) for f, v in (await redis.hgetall(key)).items()]
        elif kind == "set":
            out += [(key, b"", m) for m in await redis.smembers(key)]
        elif kind == "zset":
            out += [(key, b"", m) for m in await redis.zrange(key, 0, -1)]
        elif kind == "list":
            out += [(key, b"", m) for m in await redis.lrange(key, 0, -1)]
        elif kind == "stream":
            for _, fields in await redis.xrange(key):
                out += [(key, f, v) for f, v in fields.items()]
        else:
            raise AssertionError(f"unexpected type {kind} of {key!r}")
    return out


def _needles(old_key: bytes) -> list[bytes]:
    """The old key as raw bytes and in hex, and every pseudonym recomputed with it."""
    names = [pseudonym(old_key, holder).encode() for holder in HOLDERS]
    return [old_key, old_key.hex().encode(), old_key.hex().upper().encode(), *names]


def _files(directory: Path) -> Iterable[Path]:
    return (p for p in directory.rglob("*") if p.is_file() and not p.is_socket())


def _disk_bytes(directory: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in _files(directory))


async def test_a_day_key_deleted_mid_day_is_not_used_by_the_next_turn(world: World) -> None:
    day = day_of(datetime.now(UTC))
    log = keyspace.scan_log_key(day)
    await world.set_status("holder-1")
    assert (await world.scan(world.code("holder-1"), who="dev-c"))[0] == 200
    old_key = await world.redis.get(keyspace.day_key(day))
    assert old_key is not None
    (_, first), = await world.redis.xrevrange(log, count=1)
    assert first[b"pseudonym"] == pseudonym(old_key, "holder-1").encode()

    await world.redis.delete(keyspace.day_key(day))  # what expiry, an operator or `privacy shred` does
    assert (await world.scan(world.code("holder-1"), who="dev-c"))[0] == 200

    new_key = await world.redis.get(keyspace.day_key(day))
    assert new_key is not None and new_key != old_key
    (_, second), = await world.redis.xrevrange(log, count=1)
    assert second[b"pseudonym"] == pseudonym(new_key, "holder-1").encode() != first[b"pseudonym"]
    # the new key expires with its partition, like the first
    assert await world.redis.expiretime(keyspace.day_key(day)) == partition_expiry(day, world.settings.retention_days)


async def test_shred_leaves_no_redis_value_linking_the_day_and_later_scans_use_a_new_key(world: World) -> None:
    day = day_of(datetime.now(UTC))
    await _drive_day(world)
    old_key = await world.redis.get(keyspace.day_key(day))
    assert old_key is not None
    records = await world.redis.xlen(keyspace.scan_log_key(day))
    everything = b"\n".join(v for _, _, v in await _values(world.redis))
    assert pseudonym(old_key, "holder-1").encode() in everything  # the search sees what is there

    report = await shred_day(world.redis, day, actor="cli:test", grace_s=0.05)
    assert (report.day_key_present, report.log_records) == (True, records)
    assert await world.redis.exists(keyspace.day_key(day), keyspace.scan_log_key(day)) == 0

    await world.set_status("holder-1")
    assert (await world.scan(world.code("holder-1"), who="dev-c"))[0] == 200
    new_key = await world.redis.get(keyspace.day_key(day))
    assert new_key is not None and new_key != old_key
    (_, fields), = await world.redis.xrange(keyspace.scan_log_key(day))
    assert fields[b"pseudonym"] == pseudonym(new_key, "holder-1").encode()

    for key, field, value in await _values(world.redis):
        for needle in _needles(old_key):
            assert needle not in value, (key, field)
    entries = await world.redis.xrange(keyspace.AUDIT_STREAM)
    assert any(f[b"action"] == b"shred_day" and f[b"object"] == f"day:{day}".encode() for _, f in entries)


async def test_records_a_turn_in_flight_appends_after_the_shred_are_removed(world: World) -> None:
    day = day_of(datetime.now(UTC))
    await _drive_day(world)
    old_key = await world.redis.get(keyspace.day_key(day))
    assert old_key is not None
    stale = pseudonym(old_key, "holder-1")

    async def late_turn() -> None:
        # A turn that read the key just before the deletion writes its record just after it.
        await world.redis.xadd(keyspace.scan_log_key(day), {"pseudonym": stale})

    shredding = asyncio.ensure_future(shred_day(world.redis, day, actor="cli:test", grace_s=2.0))
    while await world.redis.exists(keyspace.day_key(day)):  # the deletion has happened once the key is gone
        await asyncio.sleep(0.005)
    await late_turn()
    report = await shredding
    assert report.late_records == 1
    assert await world.redis.exists(keyspace.scan_log_key(day)) == 0 or all(
        f[b"pseudonym"] != stale.encode() for _, f in await world.redis.xrange(keyspace.scan_log_key(day)))


@pytest.fixture
def cli_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI against an external store is given its secret and data directory, as an operator gives them: never a
    secret file generated in the working directory."""
    monkeypatch.setenv("PLACEGATE_SECRET", SECRET.reveal().hex())
    monkeypatch.setenv("PLACEGATE_DATA_DIR", str(tmp_path))


@pytest.mark.usefixtures("cli_secret")
def test_shred_refuses_a_malformed_day_with_exit_2(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("2026-12-02", "20261399", "2026120", "day"):
        with pytest.raises(SystemExit) as exc:
            main(["privacy", "shred", "--day", bad, "--redis-url", redis_url])
        assert exc.value.code == 2, bad
    assert "YYYYMMDD" in capsys.readouterr().err


@pytest.fixture
def disk_server(make_private_server: PrivateServerFactory) -> EmbeddedServer:
    # The embedded server's own command line (AOF on, multi-part, RDB preamble), in its own temp dir. Without RDB
    # compression, so that a byte search sees every stored value (LZF would hide one from grep, not from a reader);
    # the positive checks below prove the search finds what is there.
    return make_private_server(persistent=True, extra_args=("--rdbcompression", "no"))


class TestOnDisk:
    """On a private AOF server: what the data directory's files hold after a shred."""

    @pytest.fixture
    async def redis(self, disk_server: EmbeddedServer) -> AsyncIterator[Redis]:
        client = connect_redis(disk_server.url)
        yield client
        await client.aclose()

    async def test_shred_leaves_no_byte_of_the_data_directory_linking_the_day(
        self, world: World, disk_server: EmbeddedServer
    ) -> None:
        day = day_of(datetime.now(UTC))
        await _drive_day(world)
        old_key = await world.redis.get(keyspace.day_key(day))
        assert old_key is not None
        # Positive control: the key and the pseudonyms are on disk, in the incremental AOF and, after a rewrite,
        # in its RDB-format base.
        assert old_key in _disk_bytes(disk_server.directory)
        assert (await compact_store(world.redis)).aof_rewritten
        bases = [p for p in _files(disk_server.directory) if ".base." in p.name]
        assert bases and old_key in b"".join(p.read_bytes() for p in bases)
        assert pseudonym(old_key, "holder-quiet").encode() in b"".join(p.read_bytes() for p in bases)
        before = {p.name for p in _files(disk_server.directory / "aof")}

        report = await shred_day(world.redis, day, actor="cli:test", grace_s=0.05)
        assert report.compaction.aof_rewritten and report.compaction.history_left == 0
        await world.set_status("holder-1")
        assert (await world.scan(world.code("holder-1"), who="dev-c"))[0] == 200  # a new key, on disk too
        new_key = await world.redis.get(keyspace.day_key(day))
        assert new_key is not None and new_key != old_key

        after = {p.name for p in _files(disk_server.directory / "aof")}
        assert not (before - {"appendonly.aof.manifest"}) & after  # every older base and incr part is gone
        assert not list(disk_server.directory.rglob("*.rdb")) or all(".base." in p.name for p in
                                                                      disk_server.directory.rglob("*.rdb"))
        data = _disk_bytes(disk_server.directory)
        assert new_key in data
        for needle in _needles(old_key):
            assert needle not in data

    async def test_the_data_directory_is_0700_and_every_file_0600(
        self, world: World, disk_server: EmbeddedServer
    ) -> None:
        await _drive_day(world)
        await compact_store(world.redis)
        entries = [disk_server.directory, *disk_server.directory.rglob("*")]
        assert len(entries) > 4
        for path in entries:
            mode = stat.S_IMODE(path.lstat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))

    async def test_a_day_key_that_went_triggers_one_compaction(self, world: World) -> None:
        today = day_of(datetime.now(UTC))
        await world.redis.set(keyspace.day_key("20200101"), os.urandom(32), ex=3600)
        await world.redis.set(keyspace.day_key(today), os.urandom(32), ex=3600)
        assert await compact_if_keys_gone(world.redis) is None  # the first check only remembers the keyed days
        rewrites = (await world.redis.info("persistence"))["aof_rewrites"]
        assert await compact_if_keys_gone(world.redis) is None
        await world.redis.delete(keyspace.day_key("20200101"))
        result = await compact_if_keys_gone(world.redis)
        assert result is not None and result.aof_rewritten
        assert (await world.redis.info("persistence"))["aof_rewrites"] == rewrites + 1
        assert await compact_if_keys_gone(world.redis) is None


    async def test_a_running_gateway_compacts_once_a_day_key_is_deleted(self, make_world: WorldFactory) -> None:
        world = await make_world(compaction_check_s=1.0)
        day = day_of(datetime.now(UTC))
        await world.set_status("holder-1")
        assert (await world.scan(world.code("holder-1"), who="dev-c"))[0] == 200
        old_key = await world.redis.get(keyspace.day_key(day))
        assert old_key is not None
        await _until(lambda: _keyed_days_include(world.redis, day))  # the check has seen the key
        rewrites = (await world.redis.info("persistence"))["aof_rewrites"]
        await world.redis.delete(keyspace.day_key(day))

        async def rewritten() -> bool:
            return bool((await world.redis.info("persistence"))["aof_rewrites"] > rewrites)

        await _until(rewritten)


async def test_the_app_closes_when_a_cancelled_compaction_check_comes_out_as_a_store_error(
    make_world: WorldFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation landing inside a Redis command can come out as a redis-py timeout, translated to a store error
    the check's loop catches: the loop must still end at shutdown, not sleep its interval (it hung a teardown)."""
    checking = asyncio.Event()

    async def absorbing(redis: Redis) -> None:
        checking.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise StoreUnavailableError("compaction unavailable") from None

    monkeypatch.setattr(compaction, "compact_if_keys_gone", absorbing)
    world = await make_world(compaction_check_s=3600.0)
    await asyncio.wait_for(checking.wait(), 30)
    # Not wait_for: its cancellation at the bound would be suppressed inside the app's cleanup, and the close would
    # then "succeed". A bound, not a speed claim: before the fix the close waited the whole 3600 s interval.
    close = asyncio.ensure_future(world.client.close())
    done, _ = await asyncio.wait({close}, timeout=20)
    if close not in done:
        close.cancel()
        pytest.fail("the app did not close: the compaction loop slept through its cancellation")
    close.result()


async def _keyed_days_include(redis: Redis, day: str) -> bool:
    return keyspace.day_key(day).rsplit(":", 1)[-1].encode() in (await redis.get(keyspace.COMPACTION_DAYS) or b"")


async def _until(condition: Callable[[], Awaitable[bool]], *, limit_s: float = 30.0) -> None:
    """Poll until ``condition`` holds; fail after ``limit_s`` (a bound, not a speed claim)."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)


def test_embedded_server_tightens_an_old_world_readable_directory() -> None:
    top = Path(tempfile.mkdtemp(prefix="pg-perm-"))  # short: unix socket paths are limited to ~100 bytes
    root = top / "data"
    (root / "redis" / "aof").mkdir(parents=True, mode=0o755)
    old = root / "redis" / "aof" / "appendonly.aof.1.incr.aof"
    old.write_bytes(b"")
    os.chmod(old, 0o644)
    os.chmod(root, 0o755)
    server = EmbeddedServer(root / "redis", persistent=True, root=root).start()
    try:
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        for path in [root / "redis", *(root / "redis").rglob("*")]:
            assert stat.S_IMODE(path.lstat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    finally:
        server.stop()
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.usefixtures("cli_secret")
def test_privacy_shred_prints_what_it_removed(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    day = day_of(datetime.now(UTC) - timedelta(days=2))
    client = sync_client(redis_url)
    try:
        client.flushdb()
        client.set(keyspace.day_key(day), os.urandom(32), exat=partition_expiry(day, 21))
        for i in range(3):
            client.xadd(keyspace.scan_log_key(day), {"pseudonym": f"p{i}"})
        assert main(["privacy", "shred", "--day", day, "--redis-url", redis_url]) == 0
        printed = orjson.loads(capsys.readouterr().out)
        assert (printed["day"], printed["day_key"], printed["log_records"]) == (day, "present", 3)
        assert printed["compaction"]["done"] is True
        assert client.exists(keyspace.day_key(day), keyspace.scan_log_key(day)) == 0
        assert main(["privacy", "shred", "--day", day, "--redis-url", redis_url]) == 0  # nothing left: says so
        printed = orjson.loads(capsys.readouterr().out)
        assert (printed["day_key"], printed["log_records"]) == ("absent", 0)
        actions = [f[b"action"] for _, f in client.xrange(keyspace.AUDIT_STREAM)]
        assert actions.count(b"shred_day") == 2
    finally:
        client.flushdb()
        client.close()


async def test_the_documented_acl_allows_shred_and_compaction(disk_server: EmbeddedServer) -> None:
    doc = (Path(__file__).parents[3] / "ops" / "EXTERNAL-REDIS.md").read_text()
    (line,) = [text for text in doc.splitlines() if text.startswith("user placegate ")]
    rules = line.split()[2:]
    admin = connect_redis(disk_server.url)
    user = Redis(unix_socket_path=str(disk_server.socket_path), username="placegate", password="CHANGE-ME")
    try:
        assert await admin.acl_setuser("placegate", reset=True) is True
        await admin.execute_command("ACL", "SETUSER", "placegate", *rules)
        day = day_of(datetime.now(UTC))
        await user.set(keyspace.day_key(day), os.urandom(32), exat=partition_expiry(day, 21))
        await user.xadd(keyspace.scan_log_key(day), {"pseudonym": "p"})
        with pytest.raises(NoPermissionError):
            await user.flushall()  # the user is limited, yet:
        report = await shred_day(user, day, actor="cli:test", grace_s=0.05)
        assert (report.day_key_present, report.log_records) == (True, 1)
        assert report.compaction.aof_rewritten and report.compaction.history_left == 0
    finally:
        await user.aclose()
        await admin.aclose()


async def test_an_expired_key_not_yet_reclaimed_stays_out_of_the_rewritten_aof(
    make_private_server: PrivateServerFactory,
) -> None:
    server = make_private_server(
        persistent=True, extra_args=("--rdbcompression", "no", "--enable-debug-command", "yes"))
    client = connect_redis(server.url)
    try:
        await client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")  # only an access reclaims an expired key
        value = os.urandom(32)
        await client.set(keyspace.day_key("20200101"), value, px=50)
        await asyncio.sleep(0.2)
        assert await client.dbsize() == 1  # expired, still held
        result = await compact_store(client)
        assert result.aof_rewritten and result.history_left == 0
        assert await client.dbsize() == 0
        assert value not in _disk_bytes(server.directory)
    finally:
        await client.aclose()
