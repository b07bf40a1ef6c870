"""Buyer messages (R-MESSAGES): each case's messages kept as data, rendered from zh/en templates with the
case's facts and deadlines in Beijing time, readable per case, and delivered through a channel: the
storefront's webhook by default (an outbox event), or an SMS provider, here a local HTTP stand-in, that is
never reported to have sent what it did not take."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.events import CloudEvent
from aftersales_testing import free_port
from case_api.config import Settings
from case_api_checks import assert_problem, outbox_rows
from case_api_testing import Api, running_api
from pydantic import ValidationError

NOTIFICATION = "aftersales.notification.requested.v1"


async def declined_retention(api: Api, **fields: Any) -> dict[str, Any]:
    """A no-reason return past retention: open, waiting for support's decision."""
    case = (await api.open_case(**fields)).json()
    response = await api.act(case, "record_retention", offer="coupon", outcome="declined")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def approved_return(api: Api) -> dict[str, Any]:
    await api.put_order()
    response = await api.act(await declined_retention(api), "approve")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def messages(api: Api, case: dict[str, Any], who: str = "support") -> list[dict[str, Any]]:
    response = await api.call("GET", f"/v1/cases/{case['id']}/messages", who)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


class TestWebhookChannel:
    async def test_an_approved_return_tells_the_buyer_the_deadline_in_beijing_time(self, api: Api) -> None:
        api.clock.set(datetime.fromisoformat("2026-11-05T23:30:00+08:00"))  # 15:30 UTC
        case = await approved_return(api)
        (message,) = await messages(api, case)
        assert (message["template"], message["channel"], message["status"]) == (
            "return_instructions",
            "webhook",
            "queued",
        )
        assert "2026-11-12 23:30（北京时间）" in message["message_zh"]  # 7 days to send it back
        assert "by 2026-11-12 23:30 (Beijing time)" in message["message_en"]
        assert "吊牌" in message["message_zh"] and "WeChat" in message["message_en"]
        assert message["facts"]["ship_back_by"] == "2026-11-12 23:30"

    async def test_the_storefront_gets_it_through_the_outbox(self, api: Api) -> None:
        case = await approved_return(api)
        (message,) = await messages(api, case, "storefront")
        (row,) = [r for r in await outbox_rows(api) if CloudEvent.from_bytes(r.payload).type == NOTIFICATION]
        event = CloudEvent.from_bytes(row.payload)
        assert (event.subject, event.data["notification_id"]) == (case["id"], message["id"])
        assert (event.data["message_zh"], event.data["template"]) == (
            message["message_zh"],
            "return_instructions",
        )
        assert row.key == "o-1"

    async def test_a_rejection_and_a_refund(self, api: Api) -> None:
        await api.put_order()
        rejected = await declined_retention(api)
        response = await api.act(rejected, "reject", reason_code="worn", message="商品已穿着，影响二次销售。")
        assert response.status_code == 200, response.text
        (message,) = await messages(api, rejected)
        assert (
            message["template"] == "case_rejected" and "商品已穿着，影响二次销售。" in message["message_zh"]
        )
        refunded = (await api.open_case(remedy="refund_only", reason="shipping_fee", amount="8.00",
                                        lines=[{"line_id": "L2", "quantity": 1}])).json()  # fmt: skip
        for action in ("approve", "refund"):
            response = await api.act(refunded, action)
            assert response.status_code == 200, response.text
            refunded = response.json()
        (message,) = await messages(api, refunded)
        assert message["template"] == "refund_made" and "8.00 元" in message["message_zh"]
        assert "8.00 CNY" in message["message_en"] and "2026-11-05 10:00" in message["message_zh"]

    async def test_opening_or_a_refused_action_tells_the_buyer_nothing(self, api: Api) -> None:
        await api.put_order()
        case = await declined_retention(api)
        assert await messages(api, case) == []
        refused = await api.act(case, "refund", amount="1.00")  # not approved yet
        assert refused.status_code in (409, 422)
        assert await messages(api, case) == []

    async def test_roles_and_shops(self, api: Api) -> None:
        case = await approved_return(api)
        assert len(await messages(api, case, "ops")) == 1
        assert_problem(await api.call("GET", f"/v1/cases/{case['id']}/messages", "storefront_b"), 404)
        assert_problem(await api.call("GET", f"/v1/cases/{case['id']}/messages", "warehouse"), 403)
        assert_problem(await api.call("GET", "/v1/cases/case_missing/messages", "support"), 404)
        assert_problem(await api.call("GET", "/v1/cases/bad%20id/messages", "support"), 422)


@dataclass
class SmsStandIn:
    """A local SMS provider: records what it is asked to send and answers as it is told."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: bytes = b'{"ok": true, "message_id": "sms-1"}'
    delay: float = 0.0


@pytest.fixture
def provider() -> Iterator[SmsStandIn]:
    state = SmsStandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            state.received.append({"authorization": self.headers.get("authorization"), **request})
            time.sleep(state.delay)
            self.send_response(state.status)
            self.send_header("content-length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/sms"
    yield state
    server.shutdown()
    server.server_close()


def sms_settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        message_channel="sms",
        sms_url=url,
        sms_api_key="sms-test-key",
        sms_timeout_seconds=0.5,
        sms_poll_interval_seconds=0.05,
    )


@pytest.fixture
async def sms_api(tmp_path: Path, provider: SmsStandIn) -> AsyncIterator[Api]:
    async for running in running_api(sms_settings(tmp_path, provider.url), tmp_path):
        yield running


async def settled(api: Api, case: dict[str, Any]) -> dict[str, Any]:
    """The case's one message once the SMS job has tried it for the last time."""
    return await tried(api, case, lambda m: m["status"] in ("sent", "failed"))


async def tried(api: Api, case: dict[str, Any], until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The case's one message once it is as `until` wants it."""
    for _ in range(200):
        (message,) = await messages(api, case)
        if message["status"] != "sending" and until(message):
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"not tried in time: {message}")


async def tried_again(api: Api, case: dict[str, Any], attempts: int) -> dict[str, Any]:
    """The case's message after its `attempts`-th try, the clock moved to each retry as it comes due."""
    message = await tried(api, case, lambda m: m["attempts"] >= 1)
    while message["attempts"] < attempts and message["status"] == "queued":
        api.clock.set(datetime.fromisoformat(message["next_attempt_at"]))
        done = message["attempts"]
        message = await tried(api, case, lambda m: m["attempts"] > done)  # noqa: B023
    return message


class TestSmsChannel:
    async def test_sent_on_the_providers_success_answer(self, sms_api: Api, provider: SmsStandIn) -> None:
        case = await approved_return(sms_api)
        message = await settled(sms_api, case)
        assert (message["channel"], message["status"], message["attempts"]) == ("sms", "sent", 1)
        assert message["sent_at"] is not None and message["error"] is None
        (request,) = provider.received
        assert request == {
            "authorization": "Bearer sms-test-key",
            "to": "13812345678",
            "text": message["message_zh"],
            "reference": message["id"],
        }
        # the SMS channel instead of the storefront's: no notification event
        events = [CloudEvent.from_bytes(r.payload).type for r in await outbox_rows(sms_api)]
        assert NOTIFICATION not in events

    @pytest.mark.parametrize(
        ("status", "body", "says"),
        [
            (400, b'{"ok": false, "error": "invalid phone"}', "HTTP 400: invalid phone"),
            (200, '{"ok": false, "error": "余额不足"}'.encode(), "余额不足"),
            (200, b'{"ok": true}', "HTTP 200"),  # no message id: not a send
            (200, b"OK", "HTTP 200: OK"),
            (202, b'{"ok": true, "message_id": "x"}', "HTTP 202"),
        ],
        ids=["4xx", "refused", "no-id", "not-json", "not-200"],
    )
    async def test_anything_else_is_failed_with_the_reason(
        self, sms_api: Api, provider: SmsStandIn, status: int, body: bytes, says: str
    ) -> None:
        provider.status, provider.body = status, body
        message = await settled(sms_api, await approved_return(sms_api))
        assert (message["status"], message["sent_at"], message["next_attempt_at"]) == ("failed", None, None)
        assert says in message["error"] and len(provider.received) == 1

    @pytest.mark.parametrize("status", [429, 500, 503])
    async def test_a_busy_provider_is_tried_again_until_it_takes_it(
        self, sms_api: Api, provider: SmsStandIn, status: int
    ) -> None:
        provider.status, provider.body = status, b'{"ok": false, "error": "busy"}'
        case = await approved_return(sms_api)
        message = await tried(sms_api, case, lambda m: m["attempts"] == 1)
        assert (message["status"], message["error"]) == ("queued", f"HTTP {status}: busy")
        assert datetime.fromisoformat(message["next_attempt_at"]) == sms_api.clock.now() + timedelta(
            seconds=5
        )
        await asyncio.sleep(0.3)  # six polls: not due yet, not tried
        assert len(provider.received) == 1
        provider.status, provider.body = 200, b'{"ok": true, "message_id": "sms-2"}'
        message = await tried_again(sms_api, case, 2)
        assert (message["status"], message["attempts"], message["error"]) == ("sent", 2, None)
        assert message["next_attempt_at"] is None
        assert [r["reference"] for r in provider.received] == [message["id"]] * 2  # one reference

    async def test_a_provider_that_is_down_is_tried_for_a_day_then_given_up(self, tmp_path: Path) -> None:
        url = f"http://127.0.0.1:{free_port()}/sms"  # nothing listens there
        async for api in running_api(sms_settings(tmp_path, url), tmp_path):
            case = await approved_return(api)
            started = api.clock.now()
            message = await tried_again(api, case, 100)
            assert (message["status"], message["attempts"]) == ("failed", 11)
            assert message["error"].startswith("not reached") and message["next_attempt_at"] is None
            assert timedelta(hours=24) < api.clock.now() - started < timedelta(hours=26)

    async def test_no_answer_in_time_is_not_a_send_and_not_tried_again(
        self, sms_api: Api, provider: SmsStandIn
    ) -> None:
        provider.delay = 1.0  # the timeout is 0.5 s: it may have been sent, so it is not sent twice
        message = await settled(sms_api, await approved_return(sms_api))
        assert message["status"] == "failed" and "not known to be sent" in message["error"]
        assert message["next_attempt_at"] is None and len(provider.received) == 1

    async def test_no_phone_no_send(self, sms_api: Api, provider: SmsStandIn) -> None:
        buyer = {"id": "buyer-1", "name": "张三", "address": "浙江省杭州市西湖区文三路 1 号"}
        await sms_api.put_order(buyer=buyer)
        case = (await sms_api.act(await declined_retention(sms_api), "approve")).json()
        message = await settled(sms_api, case)
        assert (message["status"], message["error"]) == ("failed", "no buyer phone")
        assert provider.received == []

    def test_the_sms_channel_needs_its_provider(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError, match="CASE_API_SMS_URL"):
            Settings(data_dir=tmp_path, message_channel="sms")
        with pytest.raises(ValidationError):
            Settings(data_dir=tmp_path, message_channel="fax")
