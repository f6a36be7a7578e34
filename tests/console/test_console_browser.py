"""The console in a real browser: Debian's Chromium, headless, driven by playwright against a live gateway on the
suite's Redis. Each role signs in through the form and does its main task; a site manager's report becomes a case
that a dispatcher dispatches, a handler feeds back and a supervisor passes. Screenshots of each main page go to
``$PLACEGATE_CONSOLE_ARTIFACTS`` (default ``tests/console/artifacts/``, not committed).

Skipped, saying why, when ``/usr/bin/chromium`` or playwright is missing (``make test`` installs Chromium from
Debian's packages when it can). No browser is ever downloaded: playwright only starts the system's binary.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crypto.keys import Alg
from crypto.trust import Usage
from gateway.console.web import CSP
from gateway.trust.keystore import new_issuer_key
from gateway.trust.registry import Registry
from tests.console.conftest import ConsoleWorld

CHROMIUM = Path(os.environ.get("PLACEGATE_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("PLACEGATE_CONSOLE_ARTIFACTS", Path(__file__).parent / "artifacts"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

if not CHROMIUM.exists():
    pytest.skip(f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api", reason="browser tests skipped: playwright not installed")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            await b.close()


def _shot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


async def _person(browser: Any, cw: ConsoleWorld, who: str, **context: Any) -> Any:
    """A fresh browser context (its own cookies) signed in as ``who`` through the form, by keyboard."""
    ctx = await browser.new_context(**{"viewport": {"width": 1100, "height": 900}, **context})
    page = await ctx.new_page()
    resp = await page.goto(str(cw.client.make_url("/console/signin")))
    assert resp.headers["content-security-policy"] == CSP
    await page.focus("#token")
    await page.keyboard.type(cw.token(who))
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r".*/console/(?!signin).*"))
    return page


async def _act(page: Any, cw: ConsoleWorld, case_id: str, action: str, *, note: str = "", result: str = "") -> str:
    await page.goto(str(cw.client.make_url(f"/console/cases/{case_id}")))
    form = page.locator(f'form[data-action="{action}"]')
    if note:
        await form.locator("textarea[name=note]").fill(note)
    button = form.locator(f'button[value="{result}"]') if result else form.locator("button")
    await button.click()
    await page.wait_for_selector(f'[data-done="{action}"]')
    return str(await page.get_attribute("[data-state]", "data-state"))


async def test_a_report_goes_from_site_manager_to_closure_in_the_browser(cw: ConsoleWorld, browser: Any) -> None:
    for place in ("place-a", "place-a", "place-b"):  # other open cases, so the queue shows more than one
        await cw.dw.event("status_red", place=place)
    await cw.dw.pump()

    sm = await _person(browser, cw, "sm-a", viewport={"width": 390, "height": 844})  # a phone at the door
    await sm.select_option("#event_class", "refused_verification")
    await sm.fill("#note", "refused to show a code; phone 13812345678")
    await sm.click("form.card button[type=submit]")
    confirmation = sm.locator("[data-case]")
    case_id = str(await confirmation.get_attribute("data-case"))
    assert "13812345678" not in await sm.content()  # masked before it was stored and shown
    assert await sm.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling on a phone
    await sm.screenshot(path=_shot_path("site-manager-report"), full_page=True)
    refused = await sm.goto(str(cw.client.make_url("/console/queue")))
    assert refused.status == 403 and await sm.get_attribute("[data-error]", "data-error") == "forbidden"
    await cw.dw.pump()

    disp = await _person(browser, cw, "disp-1")
    await disp.goto(str(cw.client.make_url("/console/queue")))
    assert await disp.locator(f'tr[data-case="{case_id}"]').count() == 1
    await disp.screenshot(path=_shot_path("dispatcher-queue"), full_page=True)
    for action, state in (("accept", "accepted"), ("file", "filed"), ("dispatch", "dispatched")):
        assert await _act(disp, cw, case_id, action) == state
    await disp.screenshot(path=_shot_path("dispatcher-case"), full_page=True)

    handler = await _person(browser, cw, "h-police")
    assert await _act(handler, cw, case_id, "start") == "in_progress"
    assert await _act(handler, cw, case_id, "feed_back", note="spoke to the guard; code checked") == "checking"

    sup = await _person(browser, cw, "sup-d1")
    assert await sup.locator(f'tr[data-case="{case_id}"]').count() == 1  # the checks waiting: its landing page
    assert await _act(sup, cw, case_id, "check", result="pass") == "closed"
    await sup.screenshot(path=_shot_path("supervisor-case-closed"), full_page=True)
    await sup.goto(str(cw.client.make_url("/console/figures?days=1")))
    assert await sup.locator('tr[data-department="d1-police"]').count() == 1
    assert await sup.locator("svg.chart rect.bar").count() >= 1
    await sup.screenshot(path=_shot_path("supervisor-figures"), full_page=True)


async def test_a_form_without_its_token_is_refused_in_the_browser(cw: ConsoleWorld, browser: Any) -> None:
    page = await _person(browser, cw, "sm-a")
    resp = await page.request.post(str(cw.client.make_url("/console/site/report")),
                                   form={"place": "place-a", "event_class": "crowding", "ago": "0"})
    assert (resp.status, resp.headers["x-placegate-error"]) == (403, "csrf_failed")
    assert await cw.dw.world.redis.xlen("pg:dispatch:intake") == 0


async def test_the_language_switch_and_keyboard_sign_out(cw: ConsoleWorld, browser: Any) -> None:
    page = await _person(browser, cw, "disp-1")
    await page.click('a[lang="zh-CN"]')
    await page.wait_for_selector("html[lang=zh-CN]")
    assert await page.inner_text("h1") == "案件队列"
    await page.screenshot(path=_shot_path("dispatcher-queue-zh"), full_page=True)
    await page.focus("form[action='/console/signout'] button")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r".*/console/signin$"))
    assert [k async for k in cw.dw.world.redis.scan_iter(match="pg:console:session:*")] == []


async def test_the_privacy_officer_verifies_the_chain_in_the_browser(cw: ConsoleWorld, browser: Any) -> None:
    await cw.dw.event("status_red")
    await cw.dw.pump()
    po = await _person(browser, cw, "po-1")
    assert po.url.endswith("/console/privacy/audit")
    await po.click("#verify")
    await po.wait_for_selector('[data-chain="ok"]')
    await po.screenshot(path=_shot_path("privacy-audit-verified"), full_page=True)
    await po.goto(str(cw.client.make_url("/console/privacy/retention")))
    await po.wait_for_selector("[data-violations]")
    await po.screenshot(path=_shot_path("privacy-retention"), full_page=True)
    refused = await po.goto(str(cw.client.make_url("/console/admin")))
    assert refused.status == 403


async def test_the_admin_adds_a_place_and_gets_its_qr_in_the_browser(cw: ConsoleWorld, browser: Any) -> None:
    await new_issuer_key(Registry(cw.dw.world.redis), cw.dw.world.settings, usage=Usage.PLACE, alg=Alg.ES256)
    adm = await _person(browser, cw, "admin-1")
    await adm.fill("#place_id", "place-door")
    await adm.fill("#name", "Library")
    await adm.fill("#place_jurisdiction", "city/d1/s1/g1/c1")
    await adm.click("form[action='/console/admin/places'] button")
    await adm.wait_for_selector('[data-place="place-door"] svg.segno')
    await adm.screenshot(path=_shot_path("admin-place-qr"), full_page=True)


async def test_a_case_is_opened_and_acted_on_by_keyboard_alone(cw: ConsoleWorld, browser: Any) -> None:
    case_id = await cw.dw.event("status_red")
    await cw.dw.pump()
    page = await _person(browser, cw, "h-clinic")
    await page.keyboard.press("Tab")  # the first stop is the skip link
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    link = page.locator(f'a[href="/console/cases/{case_id}"]')
    for _ in range(40):  # tab on from the main content to the case's link
        await page.keyboard.press("Tab")
        if await link.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError("the case link is not reachable by Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(f".*/console/cases/{case_id}$"))
    start = page.locator('form[data-action="start"] button')
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await start.evaluate("el => el === document.activeElement"):
            break
    else:
        raise AssertionError("the start button is not reachable by Tab")
    await page.keyboard.press("Enter")
    await page.wait_for_selector('[data-done="start"]')
    assert await page.get_attribute("[data-state]", "data-state") == "in_progress"
    await page.screenshot(path=_shot_path("handler-case"), full_page=True)


def test_artifacts_are_not_committed() -> None:
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text("utf-8")
    assert "tests/console/artifacts/" in ignored
