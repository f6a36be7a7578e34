"""`placegate keys import` and `placegate issue`, run as subprocesses against the session's server.

An imported authority key verifies the codes its private half signs through POST /v1/scan, the import is audited,
and every refusal is exit 2 with one line on stderr and nothing written.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from redis.asyncio import Redis

from crypto.keys import Alg, SigningKey, kid_of
from gateway import keyspace
from gateway.privacy.audit import query_audit
from gateway.trust.refresh import refresh_trust
from tests.gateway.conftest import SECRET, World

PLACEGATE = [sys.executable, "-m", "gateway"]


def placegate(*args: str, redis_url: str, data_dir: Path,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One CLI run on the test server with the world's secret (an external store needs it explicitly)."""
    full_env = {**os.environ, "PLACEGATE_DATA_DIR": str(data_dir), "PLACEGATE_SECRET": SECRET.reveal().hex(),
                **(env or {})}
    return subprocess.run([*PLACEGATE, *args, "--redis-url", redis_url], capture_output=True, text=True,
                          env=full_env, timeout=60, check=False)


async def run_cli(*args: str, redis_url: str, data_dir: Path,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(placegate, *args, redis_url=redis_url, data_dir=data_dir, env=env)


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback, nothing on stdout."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""
    for word in words:
        assert word in done.stderr, done.stderr


def spki_pem(key: SigningKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("alg", [Alg.ES256, Alg.ED25519])
async def test_an_imported_authority_key_verifies_the_codes_its_private_half_signs(
    world: World, redis_url: str, tmp_path: Path, alg: Alg
) -> None:
    authority = SigningKey.generate(alg)  # held by the health-code authority, never by the gateway
    pem = tmp_path / "authority.pem"
    pem.write_bytes(spki_pem(authority))
    now = datetime.now(UTC)
    window = ["--not-before", (now - timedelta(days=1)).isoformat(),
              "--not-after", (now + timedelta(days=90)).isoformat()]
    done = await run_cli("keys", "import", "--usage", "health", "--pem", str(pem), *window,
                         redis_url=redis_url, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    kid = kid_of(authority.public_key()).hex()  # docs/codes.md: SHA-256 over the SPKI DER, first 8 bytes
    assert done.stdout.startswith(f"kid={kid} alg={alg.value} usage=health ")
    await refresh_trust(world.client.app, force=True)
    await world.set_status("holder-imp")
    status, body = await world.scan(world.code("holder-imp", key=authority))
    assert (status, body["decision"], body["reason"]) == (200, "admit", "ok")
    entries = (await query_audit(world.redis, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5),
                                 limit=10, action="key_import")).entries
    assert [(e.fields["object"], e.fields["usage"], e.fields["alg"]) for e in entries] == [
        (f"key:{kid}", "health", alg.value)]
    assert entries[0].fields["who"].startswith("cli:")


async def test_an_imported_place_key_is_not_trusted_for_health_codes(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    authority = SigningKey.generate(Alg.ES256)
    pem = tmp_path / "place-authority.pem"
    pem.write_bytes(spki_pem(authority))
    done = await run_cli("keys", "import", "--usage", "place", "--pem", str(pem), redis_url=redis_url,
                         data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    await refresh_trust(world.client.app, force=True)
    await world.set_status("holder-imp")
    _, body = await world.scan(world.code("holder-imp", key=authority))
    assert (body["decision"], body["reason"]) == ("deny", "wrong_key_usage")


def _pem_of_private(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_of_public(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


_P256 = ec.generate_private_key(ec.SECP256R1())
REFUSED_PEMS: dict[str, tuple[bytes, str]] = {
    "private_p256": (_pem_of_private(_P256), "private key"),
    "private_ed25519": (_pem_of_private(ed25519.Ed25519PrivateKey.generate()), "private key"),
    "p384": (_pem_of_public(ec.generate_private_key(ec.SECP384R1())), "only P-256 and Ed25519"),
    "rsa": (_pem_of_public(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "only P-256 and Ed25519"),
    "truncated": (_pem_of_public(_P256)[:60] + b"\n-----END PUBLIC KEY-----\n", "malformed PEM"),
    "not_pem": (b"hello\n", "not a PEM public key"),
    "two_keys": (_pem_of_public(_P256) * 2, "not a PEM public key"),
    "certificate_label": (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "not a PEM public key"),
}


@pytest.mark.parametrize("name", list(REFUSED_PEMS))
async def test_keys_import_refuses_what_is_not_a_supported_public_key(
    redis: Redis, redis_url: str, tmp_path: Path, name: str
) -> None:
    pem, reason = REFUSED_PEMS[name]
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    done = await run_cli("keys", "import", "--usage", "health", "--pem", str(path), redis_url=redis_url,
                         data_dir=tmp_path)
    assert_refused(done, reason)
    assert await redis.hlen(keyspace.TRUST) == 0


WINDOW_REFUSALS: dict[str, tuple[list[str], str]] = {
    "naive_time": (["--not-before", "2026-01-01T00:00:00"], "no UTC offset"),
    "not_a_time": (["--not-after", "soon"], "not an ISO 8601 time"),
    "empty_window": (["--not-before", "2030-01-02T00:00:00+00:00", "--not-after", "2030-01-01T00:00:00+00:00"],
                     "later than --not-before"),
    "past_window": (["--not-before", "2020-01-01T00:00:00+00:00", "--not-after", "2020-06-01T00:00:00+00:00"],
                    "has passed"),
    "missing_file": (["--pem", "/nonexistent/authority.pem"], "/nonexistent/authority.pem"),
}


@pytest.mark.parametrize("name", list(WINDOW_REFUSALS))
async def test_keys_import_refuses_a_bad_window_or_file(
    redis: Redis, redis_url: str, tmp_path: Path, name: str
) -> None:
    extra, reason = WINDOW_REFUSALS[name]
    path = tmp_path / "authority.pem"
    path.write_bytes(spki_pem(SigningKey.generate()))
    args = ["--pem", str(path), *extra] if "--pem" not in extra else extra
    done = await run_cli("keys", "import", "--usage", "health", *args, redis_url=redis_url, data_dir=tmp_path)
    assert_refused(done, reason)
    assert await redis.hlen(keyspace.TRUST) == 0


async def test_keys_import_refuses_a_kid_already_listed_even_for_another_usage(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "authority.pem"
    path.write_bytes(spki_pem(SigningKey.generate()))
    first = await run_cli("keys", "import", "--usage", "health", "--pem", str(path), redis_url=redis_url,
                          data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    stored = await redis.hgetall(keyspace.TRUST)
    again = await run_cli("keys", "import", "--usage", "place", "--pem", str(path), redis_url=redis_url,
                          data_dir=tmp_path)
    assert_refused(again, "already on the trust list")
    assert await redis.hgetall(keyspace.TRUST) == stored
    now = datetime.now(UTC)
    imports = await query_audit(redis, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5),
                                limit=10, action="key_import")
    assert len(imports.entries) == 1  # a refused import writes nothing, its audit entry included


async def test_keys_new_and_issue_say_they_are_for_demos_and_issue_count_prints_distinct_valid_codes(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    helptext = await run_cli("keys", "new", "--help", redis_url=redis_url, data_dir=tmp_path)
    assert "DEMO/TEST ONLY" in helptext.stdout and "keys import" in helptext.stdout
    new = await run_cli("keys", "new", "--usage", "health", redis_url=redis_url, data_dir=tmp_path)
    assert new.returncode == 0, new.stderr
    assert "usage=health" in new.stdout and "for demos and tests" in new.stderr
    done = await run_cli("issue", "--holder", "holder-n", "--count", "3", redis_url=redis_url, data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "for demos and tests" in done.stderr
    codes = done.stdout.splitlines()
    assert len(codes) == 3 and len(set(codes)) == 3
    await refresh_trust(world.client.app, force=True)
    await world.set_status("holder-n")
    for code in codes:  # distinct nonces: none is a replay of another
        _, body = await world.scan(code)
        assert (body["decision"], body["reason"]) == ("admit", "ok")


@pytest.mark.parametrize("count", ["0", "-1", "x", "10001"])
async def test_issue_refuses_a_count_out_of_range(redis: Redis, redis_url: str, tmp_path: Path, count: str) -> None:
    done = await run_cli("issue", "--holder", "h-1", "--count", count, redis_url=redis_url, data_dir=tmp_path)
    assert_refused(done, "--count")
