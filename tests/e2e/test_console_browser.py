"""The support workbench in a real browser: Debian's Chromium, driven by Playwright, against the whole
system as `make run` starts it (embedded default). Staff accounts are made through the console's API, the
order and the case through case-api's with the development key; then, as a person would, in the browser:

- a wrong password is refused, and the support agent signs in;
- finds the case in the queue, takes it (领取), opens it, approves it, and reads their name in the timeline;
- downloads a register as xlsx, which openpyxl opens with its Chinese headers and the case in it;
- tries an ops action (releasing a held payout) and is refused by payout-worker, word for word;
- the main pages are photographed at 1366×768: into docs/screenshots/ with UPDATE_SCREENSHOTS=1, else
  beside the test's other files (so that a test run leaves the committed pictures alone).

Without Chromium or the built web app the test skips and says what is missing; with REQUIRE_INFRA=1 (CI)
it fails instead. `make test` installs Chromium and builds the app before it runs.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from case_api_testing import encoded
from openpyxl import load_workbook
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from .harness import ROOT, Stack, order, running_stack
from .test_stack import scan

CHROMIUM = Path("/usr/bin/chromium")
BUILT = ROOT / "services" / "ops-console" / "web" / "dist" / "index.html"
SCREENSHOTS = ROOT / "docs" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1366, "height": 768}
# Release a held payout (an ops action) from the signed-in page, as the app's client would call it.
RELEASE = """async () => {
    const session = await (await fetch("/api/session")).json();
    const answer = await fetch("/api/payout-worker/v1/payouts/po_any/release", {
        method: "POST",
        headers: {"X-CSRF-Token": session.csrf_token, "Content-Type": "application/json"},
        body: "{}",
    });
    const type = answer.headers.get("content-type");
    return {status: answer.status, type, body: await answer.json()};
}"""


def require_browser_and_app() -> None:
    """Build the web app when its sources changed (as `make run` would, but before the stack's clock
    starts); skip with what is missing; in CI (REQUIRE_INFRA=1) fail instead."""
    spec = importlib.util.spec_from_file_location("run_script", ROOT / "scripts" / "run.py")
    assert spec and spec.loader
    run_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_script)
    run_script.build_console()
    missing = [
        what
        for ready, what in (
            (CHROMIUM.exists(), f"Chromium at {CHROMIUM} (apt-get install chromium)"),
            (BUILT.exists(), "the built web app (python scripts/run.py build-console)"),
        )
        if not ready
    ]
    if missing:
        message = "the console's browser test needs " + " and ".join(missing)
        if os.environ.get("REQUIRE_INFRA") == "1":
            pytest.fail(message + " (REQUIRE_INFRA=1)")
        pytest.skip(message)


class Console:
    """The stack, the console's address and its first admin's password."""

    def __init__(self, stack: Stack, url: str, admin_password: str) -> None:
        self.stack, self.url, self.admin_password = stack, url, admin_password

    async def staff(self, username: str, display_name: str, roles: list[str]) -> str:
        """A staff account made by the admin through the console's API; returns its password."""
        password = secrets.token_urlsafe(12)
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as admin:
            signed = await admin.post(
                "/api/session", json={"username": "admin", "password": self.admin_password}
            )
            assert signed.status_code == 200, signed.text
            made = await admin.post(
                "/api/accounts",
                json={
                    "username": username,
                    "display_name": display_name,
                    "password": password,
                    "roles": roles,
                    "shops": None,
                },
                headers={"X-CSRF-Token": signed.json()["csrf_token"]},
            )
            assert made.status_code == 201, made.text
        return password


@pytest.fixture
async def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Console]:
    await asyncio.to_thread(require_browser_and_app)
    admin_password = secrets.token_urlsafe(16)
    monkeypatch.setenv("DEV_ADMIN_PASSWORD", admin_password)
    async with running_stack("embedded", tmp_path) as stack:
        url = str(stack.clients["ops-console"].base_url)
        yield Console(stack, url.rstrip("/"), admin_password)


async def a_case_waiting_for_support(s: Stack) -> dict[str, Any]:
    """A return of a signed order with a photo, opened through case-api; retention recorded (declined):
    open. And a cashback task on the same order, waiting for verification."""
    order_id, tracking_no = f"o-{uuid.uuid4().hex[:8]}", f"SF{uuid.uuid4().int % 10**12:012d}"
    await s.call("case-api", "PUT", f"/v1/orders/{order_id}", json=order(tracking_no, signed=True))
    photo = encoded("JPEG", (320, 240))
    evidence = await s.call(
        "case-api", "POST", "/v1/evidence", files={"file": ("photo.jpg", photo, "image/jpeg")}
    )
    body = {
        "order_id": order_id,
        "lines": [{"line_id": "L1", "quantity": 1}],
        "remedy": "return_refund",
        "reason": "no_reason",
        "description": "尺码偏小",
        "evidence_ids": [evidence["id"]],
    }
    cashback = {
        "order_id": order_id,
        "line_id": "L2",
        "reason": "shipping_fee",
        "amount": "8.00",
        "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
    }
    await s.call(
        "case-api", "POST", "/v1/cashback-tasks", json=cashback, headers={"Idempotency-Key": f"cb-{order_id}"}
    )
    case = await s.call("case-api", "POST", "/v1/cases", json=body, headers={"Idempotency-Key": order_id})
    return dict(
        await s.call(
            "case-api",
            "POST",
            f"/v1/cases/{case['id']}/actions/record_retention",
            json={"expected_version": case["version"], "offer": "coupon", "outcome": "declined"},
        )
    )


async def stalled_parcels(s: Stack) -> None:
    """Two parcels of two carriers with no scan for 30 hours, for the logistics page's alerts."""
    for carrier in ("SF", "YTO"):
        order_id, tracking_no = f"o-{uuid.uuid4().hex[:8]}", f"{carrier}{uuid.uuid4().int % 10**10:010d}"
        event = scan(tracking_no, order_id, "in_transit", timedelta(hours=30)) | {"carrier": carrier}
        await s.call("logistics-watcher", "POST", "/v1/tracking-events", json={"events": [event]})
    await s.call("logistics-watcher", "POST", "/v1/scans/run")


async def sign_in(browser: Browser, url: str, username: str, password: str) -> Page:
    page = await (await browser.new_context(viewport=VIEWPORT, locale="zh-CN")).new_page()
    await page.goto(url + "/")
    # With the keyboard alone: the name field has the focus, Tab to the password, Enter signs in.
    await expect(page.get_by_label("用户名")).to_be_focused()
    await page.keyboard.type(username)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("密码")).to_be_focused()
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")
    return page


async def shot(page: Page, name: str, folder: Path) -> None:
    """The page as it settles (no request running), without the passing toasts."""
    await page.wait_for_load_state("networkidle")
    await page.add_style_tag(content=".ant-message { display: none !important; }")
    await page.screenshot(path=folder / f"{name}.png")


async def pick(page: Page, field: str, option: str) -> None:
    """Choose `option` in the queue's select labelled `field`."""
    await page.get_by_label(field).click(force=True)  # the chosen value's label lies over the input
    await page.locator(".ant-select-dropdown:visible").get_by_title(option, exact=True).click()


async def test_a_support_agent_works_a_case_in_the_browser(console: Console, tmp_path: Path) -> None:
    s = console.stack
    pictures = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    support_password = await console.staff("li.na", "李娜", ["support"])
    ops_password = await console.staff("wang.qiang", "王强", ["ops"])
    case = await a_case_waiting_for_support(s)
    assert case["status"] == "open"
    await stalled_parcels(s)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            # A wrong password is refused, in the console's words, and nobody is signed in.
            page = await sign_in(browser, console.url, "li.na", "not-the-password")
            await expect(page.get_by_test_id("refusal")).to_contain_text("401")
            await expect(page.get_by_test_id("user-name")).to_have_count(0)
            await shot(page, "sign-in", pictures)
            await page.context.close()

            page = await sign_in(browser, console.url, "li.na", support_password)
            await expect(page.get_by_test_id("user-name")).to_have_text("李娜")

            # The queue shows the case with its 7-day clock; open it.
            link = page.get_by_role("link", name=case["id"], exact=True)
            await expect(link).to_be_visible()
            row = page.get_by_role("row").filter(has=link)
            await expect(row.locator("[data-clock=seven_day]")).to_contain_text("7天时限")
            await shot(page, "queue", pictures)
            carrier = page.get_by_label("快递公司")
            await carrier.fill("ZTO")  # the order went by SF
            await expect(link).to_have_count(0)
            await carrier.fill("SF")
            await expect(link).to_be_visible()

            # She takes the case (领取): the queue names her, and lists it under 我的 but not 未领取.
            await row.get_by_role("button", name=f"领取 {case['id']}").click()
            await expect(row.get_by_role("button", name=f"释放 {case['id']}")).to_be_visible()
            await expect(row).to_contain_text("li.na")
            await pick(page, "处理人", "未领取")
            await expect(link).to_have_count(0)
            await pick(page, "处理人", "我的")
            await expect(link).to_be_visible()
            await link.focus()
            await page.keyboard.press("Enter")

            # The detail: the order's lines with paid and still grantable, the options, the photo.
            await expect(page.get_by_test_id("case-status")).to_have_text("待处理")
            [evidence] = case["evidence"]
            thumbnail = page.get_by_role("img", name=evidence["evidence_id"])
            await expect(thumbnail).to_be_visible()
            # Visible is not loaded: decode() settles once the picture is (and fails if it cannot be).
            assert await thumbnail.evaluate("img => img.decode().then(() => img.naturalWidth)") == 320
            lines = page.get_by_role("table", name="商品行")
            await expect(lines).to_contain_text("238.00")
            await expect(page.get_by_role("table", name="售后选项")).to_contain_text("R-7D-WINDOW")

            # Approve: the same command as the API; the case moves on and the timeline names her.
            await page.get_by_role("button", name="同意", exact=True).click()
            await page.get_by_role("dialog").get_by_role("button", name="执行").click()
            await expect(page.get_by_test_id("case-status")).not_to_have_text("待处理")
            timeline = page.get_by_test_id("timeline")
            await expect(timeline).to_contain_text("同意")
            await expect(timeline).to_contain_text("li.na")
            await shot(page, "case-detail", pictures)
            approved = await s.call("case-api", "GET", f"/v1/cases/{case['id']}")
            assert approved["status"] != "open"
            assert approved["assignee"] == "staff:li.na"
            entries = await s.call("case-api", "GET", f"/v1/cases/{case['id']}/timeline")
            [approval] = [e for e in entries if e["action"] == "approve"]
            assert "li.na" in approval["actor"]

            # A register as xlsx: Chinese headers, the case's retention entry in it.
            await page.get_by_role("menuitem", name="返现").click()
            await expect(page.get_by_role("tabpanel")).to_contain_text("8.00")
            await shot(page, "cashback", pictures)
            await page.get_by_role("tab", name="每日返现表").click()
            async with page.expect_download() as download_info:
                await page.get_by_role("button", name="下载 Excel retention").click()
            download = await download_info.value
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
            assert saved.suffix == ".xlsx"
            sheet = load_workbook(saved).active
            rows = [[cell for cell in row] for row in sheet.iter_rows(values_only=True)]
            assert any("\u4e00" <= ch <= "\u9fff" for ch in "".join(str(h) for h in rows[0] if h))
            assert any(case["id"] in [str(v) for v in row] for row in rows[1:]), rows

            # An ops action is not hers: payout-worker refuses her release of a held payout.
            await page.get_by_role("tab", name="待复核打款").click()
            refused = await page.evaluate(RELEASE)
            assert refused["status"] == 403, refused
            assert refused["type"].startswith("application/problem+json")
            assert refused["body"]["code"] == "forbidden", refused

            await page.get_by_role("menuitem", name="物流").click()
            await expect(page.get_by_role("img", name="物流停滞 · 各快递异常趋势")).to_be_visible()
            await expect(page.get_by_role("table", name="未处理预警")).to_contain_text("YTO")
            await shot(page, "logistics", pictures)

            # English is one click away.
            await page.get_by_role("button", name="界面语言").click()
            await expect(page.get_by_role("menuitem", name="Case queue")).to_be_visible()
            await page.context.close()

            # The same call as ops passes the role check: there is only no such payout.
            page = await sign_in(browser, console.url, "wang.qiang", ops_password)
            await expect(page.get_by_test_id("user-name")).to_have_text("王强")
            assert (await page.evaluate(RELEASE))["status"] == 404
        finally:
            await browser.close()
    names = ("sign-in", "queue", "case-detail", "cashback", "logistics")
    assert all((pictures / f"{name}.png").stat().st_size > 10_000 for name in names)
    assert s.server_errors == []
