"""Locust scenarios against a running ``placegate serve`` (see bench/README.md for headless, web UI, --processes).

Scenarios (user classes, weights in brackets):

- ``VenueScanner`` [10]: a door scanner bound to an office (class C). Mix per scan: 80 % fresh codes of
  holders whose status is loaded (85 % green, 5 % yellow, 5 % red, 5 % with no status), 4 % expired, 3 %
  tampered, 3 % signed by an unknown key (kid), 5 % replayed at the same door, 5 % shared (a code already used
  at another venue). Each answer is checked against the expected decision.
- ``TurnstileBank`` [3]: a stadium turnstile bank presenting 8 to 32 fresh codes per ``POST /v1/scan/batch``.
- ``SiteManager`` [1]: ``POST /v1/reports`` (crowding, device fault or other at their venue). Stops itself with a clear
  message when the gateway answers 404 (route not deployed in this version).
- ``HealthAuthorityFeed`` [1]: ``PUT /v1/status`` batches of 500 records (colour changes, new test results).
- ``DigitalSentry`` [2]: a residential compound's digital sentry (class C, ``devices add --id-card``), issue 18.
  Per scan: 85 % a resident's identity card (one holder in ten has one in the feed), 3 % in the 15-digit old form,
  5 % a paper code, 5 % a number the feed never named (``review`` / ``status_unknown``), 2 % an invalid number
  (400 ``invalid_id_card``); every scan but the invalid ones carries a temperature, 3 % of them a fever (``deny``
  / ``fever``).

Set-up runs once (in the master or the single process) through the CLI, exactly as an operator would, against
the same data directory or Redis URL as the server: ``placegate keys new --usage health|place``,
``places add``, ``devices add``, ``principals add --role feeder|site_manager|app`` and ``status load`` of a
generated feed. Environment: ``PLACEGATE_DATA_DIR`` or ``PLACEGATE_REDIS_URL`` (as for ``placegate serve``),
``PLACEGATE_LOCUST_HOLDERS`` (default 20000). The issuer's private key is read from the data directory (the
test issuer created by ``keys new``), so codes are minted locally per request and are always fresh.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.exception import StopUser
from locust.runners import WorkerRunner

from crypto.keys import Alg, SigningKey
from crypto.native import Colour, issue_health_code
from crypto.paper import issue_paper_code
from policy.masking import id_check_char

PLACEGATE = str(Path(sys.executable).parent / "placegate")
STATE = Path(os.environ.get("PLACEGATE_LOCUST_STATE", Path(tempfile.gettempdir()) / "placegate-locust.json"))
HOLDERS = int(os.environ.get("PLACEGATE_LOCUST_HOLDERS", "20000"))
JURISDICTION = "loadtest-city/d1/s1/g1/c1"
_COLOURS = {"green": Colour.GREEN, "yellow": Colour.YELLOW, "red": Colour.RED}
_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def _cli(*args: str) -> str:
    out = subprocess.run([PLACEGATE, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"placegate {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def _holder_colour(i: int) -> str | None:
    """85 % green, 5 % yellow, 5 % red, 5 % never reported (no status in the cache)."""
    r = i % 20
    return "yellow" if r == 17 else "red" if r == 18 else None if r == 19 else "green"


def _id_card(i: int) -> str | None:
    """One holder in ten carries an identity card number in the feed (a valid GB 11643 number, synthetic)."""
    if i % 10:
        return None
    first17 = f"3101{i % 100:02d}19{60 + i % 40:02d}{1 + i % 12:02d}{1 + i % 28:02d}{i // 10 % 1000:03d}"
    return first17 + id_check_char(first17)


def _seed() -> dict[str, Any]:
    """Register keys, places, principals and statuses through the CLI; returns what the users need."""
    run = secrets.token_hex(3)
    _cli("keys", "new", "--usage", "health", "--alg", "ES256")
    _cli("keys", "new", "--usage", "place", "--alg", "ES256")
    _cli("places", "add", "lt-office", "--class", "C", "--jurisdiction", JURISDICTION, "--name", "Load-test office")
    _cli("places", "add", "lt-mall", "--class", "B", "--jurisdiction", JURISDICTION, "--name", "Load-test mall")
    _cli("places", "add", "lt-stadium", "--class", "B", "--jurisdiction", JURISDICTION, "--name", "Load-test stadium")
    _cli("places", "add", "lt-compound", "--class", "C", "--jurisdiction", JURISDICTION,
         "--name", "Load-test residential compound")
    token = re.compile(r"pgt_[A-Za-z0-9_-]+")

    def principal(*args: str) -> str:
        found = token.search(_cli(*args))
        assert found is not None, args
        return found.group(0)

    state = {
        "office": principal("devices", "add", f"lt-door-{run}", "--place", "lt-office"),
        "mall": principal("devices", "add", f"lt-mall-door-{run}", "--place", "lt-mall"),
        "stadium": principal("devices", "add", f"lt-turnstiles-{run}", "--place", "lt-stadium"),
        "sentry": principal("devices", "add", f"lt-sentry-{run}", "--place", "lt-compound", "--id-card"),
        "feeder": principal("principals", "add", f"lt-feeder-{run}", "--role", "feeder"),
        "site_manager": principal("principals", "add", f"lt-manager-{run}", "--role", "site_manager",
                                  "--places", "lt-office"),
    }
    now = int(time.time())
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as feed:
        for i in range(HOLDERS):
            colour = _holder_colour(i)
            if colour is not None:
                record = {"holder": f"lt{i:07d}", "colour": colour, "tested_at": now - 7200,
                          "test_result": "negative", "updated_at": now - 60}
                if (number := _id_card(i)) is not None:
                    record["id_card"] = number
                feed.write(json.dumps(record) + "\n")
    print(_cli("status", "load", feed.name, "--quiet").strip(), file=sys.stderr)
    os.unlink(feed.name)
    data_dir = Path(os.environ.get("PLACEGATE_DATA_DIR", ".placegate"))
    keys = sorted((data_dir / "keys").glob("health-*.pem"), key=lambda p: p.stat().st_mtime)
    if not keys:
        raise RuntimeError(f"no health issuer key in {data_dir}/keys: set PLACEGATE_DATA_DIR to the server's")
    state["health_key"] = str(keys[-1].resolve())
    time.sleep(2.5)  # the gateway reloads the trust list every 2 s
    return state


@events.init.add_listener  # type: ignore[untyped-decorator,unused-ignore]
def _on_init(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return  # the master seeds; workers read the state file
    STATE.write_text(json.dumps(_seed()))


def _state() -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while not STATE.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{STATE} never appeared: did the master seed?")
        time.sleep(0.5)
    return dict(json.loads(STATE.read_text()))


class _Minter:
    """Mints fresh codes with the test issuer key; a second, untrusted key signs the unknown-kid codes."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.key = SigningKey.from_pem(Path(state["health_key"]).read_bytes())
        self.stranger = SigningKey.generate(Alg.ES256)

    def code(self, i: int, *, key: SigningKey | None = None, age_s: int = 0) -> str:
        colour = _COLOURS.get(_holder_colour(i) or "green", Colour.GREEN)
        now = datetime.now(UTC) - timedelta(seconds=age_s)
        return issue_health_code(key or self.key, holder_ref=f"lt{i:07d}", colour=colour, now=now,
                                 nonce=os.urandom(12))


def _expected(i: int) -> set[str]:
    colour = _holder_colour(i)
    if colour == "red":
        return {"status_red"}
    if colour == "yellow":
        return {"status_yellow"}
    return {"ok", "status_unknown", "review", "status_missing"} if colour is None else {"ok"}


class VenueScanner(FastHttpUser):
    """One office door scanner: mostly valid green codes, with the abuse and failure mix of a real entrance."""

    weight = 10
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        state = _state()
        self.minter = _Minter(state)
        self.headers = {"Authorization": f"Bearer {state['office']}"}
        self.mall_headers = {"Authorization": f"Bearer {state['mall']}"}
        self.used: list[str] = []

    def _scan(self, code: str, name: str, expect: set[str], *, headers: dict[str, str] | None = None) -> None:
        with self.client.post("/v1/scan", json={"code": code}, headers=headers or self.headers, name=name,
                              catch_response=True) as resp:
            if resp.status_code == 400 and name == "/v1/scan [tampered]":
                resp.success()  # a flipped character may leave no decodable code at all: malformed_code
                return
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
                return
            body = resp.json()
            if body.get("reason") not in expect and not ("*" in expect and body.get("decision") == "deny"):
                resp.failure(f"unexpected {body.get('decision')}/{body.get('reason')}")
            elif body.get("reason") == "ok" and len(self.used) < 200:
                self.used.append(code)

    @task(80)
    def valid(self) -> None:
        i = random.randrange(HOLDERS)
        self._scan(self.minter.code(i), "/v1/scan [fresh]", _expected(i))

    @task(4)
    def expired(self) -> None:
        self._scan(self.minter.code(random.randrange(HOLDERS), age_s=3600), "/v1/scan [expired]", {"*"})

    @task(3)
    def tampered(self) -> None:
        code = list(self.minter.code(random.randrange(HOLDERS)))
        at = random.randrange(10, len(code) - 4)
        code[at] = random.choice([c for c in _B45 if c != code[at]])
        self._scan("".join(code), "/v1/scan [tampered]", {"*"})

    @task(3)
    def unknown_kid(self) -> None:
        code = self.minter.code(random.randrange(HOLDERS), key=self.minter.stranger)
        self._scan(code, "/v1/scan [unknown kid]", {"*"})

    @task(5)
    def replayed(self) -> None:
        if self.used:
            self._scan(random.choice(self.used), "/v1/scan [replayed]", {"replayed"})

    @task(5)
    def shared(self) -> None:
        if self.used:
            code = self.used.pop(random.randrange(len(self.used)))
            self._scan(code, "/v1/scan [shared]", {"code_shared"}, headers=self.mall_headers)


class TurnstileBank(FastHttpUser):
    """A bank of stadium turnstiles forwarding what it scanned since its last call as one batch."""

    weight = 3
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        state = _state()
        self.minter = _Minter(state)
        self.headers = {"Authorization": f"Bearer {state['stadium']}"}

    @task
    def batch(self) -> None:
        codes = [self.minter.code(random.randrange(HOLDERS)) for _ in range(random.randint(8, 32))]
        with self.client.post("/v1/scan/batch", json={"codes": codes}, headers=self.headers,
                              name="/v1/scan/batch", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            elif len(resp.json().get("results", [])) != len(codes):
                resp.failure("one answer per code expected")


class SiteManager(FastHttpUser):
    """A site manager filing an incident report for their venue."""

    weight = 1
    wait_time = between(1, 3)
    _announced = False

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {_state()['site_manager']}"}

    @task
    def report(self) -> None:
        body = {"place": "lt-office", "event_class": random.choice(("crowding", "device_fault", "other")),
                "note": "load test", "time": datetime.now(UTC).isoformat(timespec="seconds")}
        with self.client.post("/v1/reports", json=body, headers=self.headers, name="/v1/reports",
                              catch_response=True) as resp:
            if resp.status_code == 404:
                resp.success()
                if not SiteManager._announced:
                    SiteManager._announced = True
                    print("SiteManager: POST /v1/reports answers 404 on this gateway (reports not deployed); "
                          "stopping the site-manager users", file=sys.stderr)
                raise StopUser()
            if resp.status_code >= 300:
                resp.failure(f"HTTP {resp.status_code}")


class HealthAuthorityFeed(FastHttpUser):
    """The health authority pushing status changes in batches of 500."""

    weight = 1
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {_state()['feeder']}"}

    @task
    def push(self) -> None:
        now = int(time.time())
        records = []
        for _ in range(500):
            i = random.randrange(HOLDERS)
            colour = _holder_colour(i) or "green"
            record = {"holder": f"lt{i:07d}", "colour": colour, "tested_at": now - 3600,
                      "test_result": "negative", "updated_at": now}
            if (number := _id_card(i)) is not None:
                record["id_card"] = number  # keeps the sentry's index entry alive with the status
            records.append(record)
        with self.client.put("/v1/status", json={"records": records}, headers=self.headers, name="/v1/status",
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
            elif resp.json().get("rejected"):
                resp.failure(f"{resp.json()['rejected']} records rejected")


class DigitalSentry(FastHttpUser):
    """A residential compound's digital sentry (issue 18): residents show their identity card or a paper code and
    have their temperature taken."""

    weight = 2
    wait_time = between(0.1, 0.4)

    def on_start(self) -> None:
        state = _state()
        self.minter = _Minter(state)
        self.headers = {"Authorization": f"Bearer {state['sentry']}"}

    def _post(self, body: dict[str, Any], name: str, expect: set[str], status: int = 200) -> None:
        with self.client.post("/v1/scan", json=body, headers=self.headers, name=name, catch_response=True) as resp:
            if resp.status_code != status:
                resp.failure(f"HTTP {resp.status_code}")
                return
            got = resp.json().get("reason") or resp.json().get("error")
            if got not in expect:
                resp.failure(f"unexpected {got}")
            else:
                resp.success()  # a 400 invalid_id_card is the answer this task expects

    @staticmethod
    def _resident() -> tuple[int, str]:
        i = random.randrange(0, HOLDERS, 10)
        number = _id_card(i)
        assert number is not None  # every tenth holder has one
        return i, number

    @staticmethod
    def _stranger() -> str:
        """The first 17 characters of a valid number the feed never names (another region, a real date)."""
        return f"5101{random.randrange(100):02d}19{random.randrange(40, 99):02d}0{random.randint(1, 9)}" \
               f"{random.randint(10, 28)}{random.randrange(1000):03d}"

    @staticmethod
    def _temperature() -> tuple[float, bool]:
        if random.random() < 0.03:
            return round(random.uniform(37.5, 39.5), 1), True
        return round(random.uniform(35.8, 37.1), 1), False

    def _expect(self, i: int, fever: bool) -> set[str]:
        if fever:
            return {"fever"}
        return _expected(i)

    @task(85)
    def id_card(self) -> None:
        i, number = self._resident()
        reading, fever = self._temperature()
        self._post({"id_card": number, "temperature_c": reading}, "/v1/scan [id card]", self._expect(i, fever))

    @task(3)
    def id_card_old_form(self) -> None:
        i, number = self._resident()
        if number[6:8] != "19":
            return
        reading, fever = self._temperature()
        self._post({"id_card": number[:6] + number[8:17], "temperature_c": reading}, "/v1/scan [id card, old form]",
                   self._expect(i, fever))

    @task(5)
    def paper(self) -> None:
        i = random.randrange(HOLDERS)
        sheet = issue_paper_code(self.minter.key, holder_ref=f"lt{i:07d}",
                                 now=datetime.now(UTC) - timedelta(days=random.randint(0, 6)), nonce=os.urandom(12))
        reading, fever = self._temperature()
        self._post({"code": sheet, "temperature_c": reading}, "/v1/scan [paper code]", self._expect(i, fever))

    @task(5)
    def unknown_number(self) -> None:
        first17 = self._stranger()
        reading, fever = self._temperature()
        self._post({"id_card": first17 + id_check_char(first17), "temperature_c": reading},
                   "/v1/scan [id card, unknown]", {"fever"} if fever else {"status_unknown"})

    @task(2)
    def invalid_number(self) -> None:
        first17 = self._stranger()
        wrong = "0" if id_check_char(first17) != "0" else "1"
        self._post({"id_card": first17 + wrong}, "/v1/scan [id card, invalid]", {"invalid_id_card"}, status=400)
