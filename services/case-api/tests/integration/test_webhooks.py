"""Signed webhooks end to end: a case change reaches a local HTTP receiver, signed so that the official
`standardwebhooks` verifier accepts it; retries with the clock moved keep the `webhook-id`; a sender killed
between claim and send is replaced and the delivery goes out again with the same id; a failing endpoint is
disabled (API and metrics); another shop's events never reach a subscription; SSRF destinations are
refused."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared import topics
from aftersales_shared.signing import private_text, public_text
from aftersales_testing import fresh_postgres_database
from case_api.config import Settings
from case_api.consumers import REACTION_TOPICS
from case_api.jobs import webhook_dispatcher
from case_api.webhooks import schedule
from case_api.webhooks.catalog import source_topics, subscribable_types
from case_api.webhooks.dispatcher import Dispatcher
from case_api_testing import Api, eventually, running_api
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from webhook_testing import verify

QUIET = 3600.0  # the app's own dispatcher polls this rarely: the tests drive theirs by hand


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A local HTTP endpoint that records what it receives and answers with the statuses it is given."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn; then 200

    def answer(self) -> int:
        return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            state.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.answer())
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


def settings(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(data_dir=tmp_path, webhook_poll_interval_seconds=QUIET, **changes)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for running in running_api(settings(tmp_path), tmp_path):
        yield running


async def subscribe(api: Api, url: str, who: str = "storefront", **fields: Any) -> dict[str, Any]:
    response = await api.call("POST", "/v1/webhooks", who, json={"url": url, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def deliveries(api: Api, webhook: dict[str, Any], who: str = "storefront") -> list[dict[str, Any]]:
    response = await api.call("GET", f"/v1/webhooks/{webhook['id']}/deliveries", who)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def opened_case(api: Api) -> dict[str, Any]:
    await api.put_order()
    response = await api.open_case()
    assert response.status_code == 201, response.text
    return dict(response.json())


async def queued(api: Api, webhook: dict[str, Any], count: int = 1) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        found = await deliveries(api, webhook)
        return found if len(found) >= count else None

    return list(await eventually(enough))


def dispatcher(api: Api, **changes: Any) -> Dispatcher:
    return (
        webhook_dispatcher(api.app)
        if not changes
        else Dispatcher(api.app.state.sessions, api.clock, timeout=5.0, **{"allow_private": True, **changes})
    )


class TestDelivery:
    async def test_a_case_change_arrives_signed_with_the_cloudevent_as_body(
        self, api: Api, receiver: Receiver
    ) -> None:
        webhook = await subscribe(api, receiver.url, event_types=["aftersales.case.opened.v1"])
        assert webhook["secret"].startswith("whsec_") and webhook["shop_id"] == "shop-a"
        case = await opened_case(api)
        (delivery,) = await queued(api, webhook)
        assert await dispatcher(api).dispatch_once() == 1

        (got,) = receiver.received
        assert got.headers["webhook-id"] == delivery["id"]
        assert got.headers["webhook-timestamp"] == str(int(api.clock.now().timestamp()))
        assert got.headers["content-type"] == "application/cloudevents+json"
        event = verify(webhook["secret"], got.headers, got.body)
        assert event["type"] == "aftersales.case.opened.v1" and event["specversion"] == "1.0"
        assert event["data"]["case_id"] == case["id"] and event["id"] == delivery["event_id"]
        (logged,) = await deliveries(api, webhook)
        assert (logged["status"], logged["attempts"], logged["last_status_code"]) == ("delivered", 1, 200)
        assert "secret" not in (await api.call("GET", f"/v1/webhooks/{webhook['id']}", "storefront")).json()

    async def test_only_the_types_asked_for_and_all_when_none_named(
        self, api: Api, receiver: Receiver
    ) -> None:
        approvals = await subscribe(api, receiver.url, event_types=["aftersales.case.approved.v1"])
        everything = await subscribe(api, receiver.url)
        assert everything["event_types"] == []
        await opened_case(api)
        await queued(api, everything)
        await asyncio.sleep(0.3)
        assert await deliveries(api, approvals) == []

    async def test_a_payout_result_reaches_the_shop_of_its_cashback_task(
        self, api: Api, receiver: Receiver
    ) -> None:
        from case_api_testing import deliver_payout

        webhook = await subscribe(api, receiver.url, event_types=["payouts.payout.paid.v1"])
        await api.put_order()
        task = await api.call(
            "POST",
            "/v1/cashback-tasks",
            "support",
            json={
                "order_id": "o-1",
                "line_id": "L1",
                "reason": "other",
                "amount": "5.00",
                "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
            },
        )
        assert task.status_code == 201, task.text
        await deliver_payout(api, task.json(), "paid")
        (delivery,) = await queued(api, webhook)
        assert delivery["event_type"] == "payouts.payout.paid.v1"

    async def test_another_shops_events_never_reach_a_subscription(
        self, api: Api, receiver: Receiver
    ) -> None:
        theirs = await subscribe(api, receiver.url, who="storefront_b")
        assert theirs["shop_id"] == "shop-b"
        ours = await subscribe(api, receiver.url)
        await opened_case(api)  # shop-a's order
        await queued(api, ours)
        await dispatcher(api).dispatch_once()
        assert await deliveries(api, theirs, who="storefront_b") == []
        assert len(receiver.received) == 1


class TestRetries:
    async def test_retries_follow_the_schedule_with_the_same_webhook_id(
        self, api: Api, receiver: Receiver
    ) -> None:
        webhook = await subscribe(api, receiver.url)
        await opened_case(api)
        await queued(api, webhook)
        sender = dispatcher(api)
        receiver.statuses = [500, 503]
        assert await sender.dispatch_once() == 1
        (failed,) = await deliveries(api, webhook)
        assert (failed["status"], failed["attempts"], failed["last_status_code"]) == ("pending", 1, 500)
        first_retry = datetime.fromisoformat(failed["next_attempt_at"]) - api.clock.now()
        assert timedelta(0) < first_retry <= timedelta(seconds=10)

        assert await sender.dispatch_once() == 0  # not due yet
        api.clock.advance(seconds=first_retry.total_seconds())
        assert await sender.dispatch_once() == 1
        (again,) = await deliveries(api, webhook)
        second_retry = datetime.fromisoformat(again["next_attempt_at"]) - api.clock.now()
        assert second_retry == first_retry * schedule.FACTOR
        api.clock.advance(seconds=second_retry.total_seconds())
        assert await sender.dispatch_once() == 1

        ids = {r.headers["webhook-id"] for r in receiver.received}
        assert len(receiver.received) == 3 and ids == {failed["id"]}
        stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.received]
        assert stamps == sorted(stamps) and len(set(stamps)) == 3  # each attempt signed at its own time
        for got in receiver.received:
            verify(webhook["secret"], got.headers, got.body)
        (done,) = await deliveries(api, webhook)
        assert (done["status"], done["attempts"]) == ("delivered", 3)

    async def test_a_sender_killed_between_claim_and_send_is_replaced_with_the_same_id(
        self, api: Api, receiver: Receiver
    ) -> None:
        webhook = await subscribe(api, receiver.url)
        await opened_case(api)
        (delivery,) = await queued(api, webhook)
        killed = dispatcher(api)
        (claimed,) = await killed.claim()  # committed; then the process dies before sending
        replacement = dispatcher(api)
        assert await replacement.dispatch_once() == 0  # the claim holds for its lease
        api.clock.advance(seconds=schedule.CLAIM_LEASE.total_seconds())
        assert await replacement.dispatch_once() == 1
        (got,) = receiver.received
        assert got.headers["webhook-id"] == claimed.delivery_id == delivery["id"]
        verify(webhook["secret"], got.headers, got.body)
        (done,) = await deliveries(api, webhook)
        assert (done["status"], done["attempts"]) == ("delivered", 1)

    async def test_a_restarted_app_sends_what_was_queued_before(
        self, tmp_path: Path, receiver: Receiver
    ) -> None:
        async for first in running_api(settings(tmp_path), tmp_path):
            webhook = await subscribe(first, receiver.url)
            await opened_case(first)
            await queued(first, webhook)
        async for second in running_api(settings(tmp_path), tmp_path):
            assert await dispatcher(second).dispatch_once() == 1
            assert receiver.received[0].headers["webhook-id"] == (await deliveries(second, webhook))[0]["id"]

    async def test_manual_redelivery_sends_again_with_the_same_id(self, api: Api, receiver: Receiver) -> None:
        webhook = await subscribe(api, receiver.url)
        await opened_case(api)
        (delivery,) = await queued(api, webhook)
        await dispatcher(api).dispatch_once()
        path = f"/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver"
        assert (await api.call("POST", path, "storefront_b")).status_code == 404
        response = await api.call("POST", path, "storefront")
        assert response.status_code == 202 and response.json()["status"] == "pending"
        await dispatcher(api).dispatch_once()
        assert [r.headers["webhook-id"] for r in receiver.received] == [delivery["id"], delivery["id"]]


class TestFailingEndpoints:
    async def test_an_endpoint_failing_for_a_day_is_disabled_visibly(
        self, api: Api, receiver: Receiver
    ) -> None:
        webhook = await subscribe(api, receiver.url)
        await opened_case(api)
        await queued(api, webhook)
        sender = dispatcher(api)
        receiver.statuses = [500] * 100
        started = api.clock.now()
        while (await deliveries(api, webhook))[0]["status"] == "pending":
            assert await sender.dispatch_once() == 1
            next_at = (await deliveries(api, webhook))[0]["next_attempt_at"]
            if next_at:
                api.clock.set(datetime.fromisoformat(next_at))
        (given_up,) = await deliveries(api, webhook)
        assert given_up["status"] == "failed" and given_up["attempts"] == schedule.RETRIES + 1
        assert api.clock.now() - started >= timedelta(hours=24)
        read = (await api.call("GET", f"/v1/webhooks/{webhook['id']}", "storefront")).json()
        assert read["status"] == "disabled" and "no successful delivery" in read["disabled_reason"]
        metrics = await api.metrics()
        assert metrics.value("aftersales_webhook_subscriptions", status="disabled") == 1
        assert metrics.value("aftersales_webhook_attempts_total", outcome="given_up") >= 1

        # a disabled endpoint is sent nothing and queues nothing (the change feed catches up), until resumed
        own_topics = api.app.state.consumers[1]
        handled = own_topics.processed
        case = (await api.call("GET", "/v1/cases", "support")).json()["items"][0]
        assert (await api.act(case, "withdraw", "storefront")).status_code == 200
        await eventually(lambda: _more(own_topics, handled))
        assert len(await deliveries(api, webhook)) == 1
        assert await sender.dispatch_once() == 0
        path = f"/v1/webhooks/{webhook['id']}"
        resumed = await api.call("PATCH", path, "storefront", json={"enabled": True})
        assert resumed.json()["status"] == "active" and resumed.json()["failing_since"] is None
        redeliver = f"{path}/deliveries/{given_up['id']}/redeliver"
        assert (await api.call("POST", redeliver, "storefront")).status_code == 202
        receiver.statuses = []
        assert await sender.dispatch_once() == 1
        assert (await deliveries(api, webhook))[0]["status"] == "delivered"

    async def test_410_gone_disables_at_once(self, api: Api, receiver: Receiver) -> None:
        webhook = await subscribe(api, receiver.url)
        await opened_case(api)
        await queued(api, webhook)
        receiver.statuses = [410]
        await dispatcher(api).dispatch_once()
        assert (await deliveries(api, webhook))[0]["status"] == "failed"
        read = (await api.call("GET", f"/v1/webhooks/{webhook['id']}", "storefront")).json()
        assert read["status"] == "disabled"


async def _more(runner: Any, than: int) -> bool:
    return bool(runner.processed > than)


class TestRotation:
    async def test_the_old_secret_still_verifies_for_24_hours(self, api: Api, receiver: Receiver) -> None:
        webhook = await subscribe(api, receiver.url)
        rotated = await api.call("POST", f"/v1/webhooks/{webhook['id']}/rotate-secret", "storefront")
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != webhook["secret"]
        await opened_case(api)
        (delivery,) = await queued(api, webhook)
        await dispatcher(api).dispatch_once()
        got = receiver.received[-1]
        verify(new_secret, got.headers, got.body)
        verify(webhook["secret"], got.headers, got.body)

        api.clock.advance(hours=24)
        await api.call(
            "POST", f"/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver", "storefront"
        )
        await dispatcher(api).dispatch_once()
        got = receiver.received[-1]
        verify(new_secret, got.headers, got.body)
        with pytest.raises(Exception, match="No matching signature"):
            verify(webhook["secret"], got.headers, got.body)


class TestApi:
    async def test_roles_and_shops(self, api: Api, receiver: Receiver) -> None:
        assert (await api.client.get("/v1/webhooks")).status_code == 401
        for who in ("warehouse", "support"):
            response = await api.call("POST", "/v1/webhooks", who, json={"url": receiver.url})
            assert response.status_code == 403, who
        refused = await api.call(
            "POST", "/v1/webhooks", "storefront", json={"url": receiver.url, "shop_id": "shop-b"}
        )
        assert refused.status_code == 403
        webhook = await subscribe(api, receiver.url, description="ERP")
        for method in ("GET", "PATCH", "DELETE"):
            response = await api.call(
                method,
                f"/v1/webhooks/{webhook['id']}",
                "storefront_b",
                json={} if method == "PATCH" else None,
            )
            assert response.status_code == 404, method
        assert (await api.call("GET", "/v1/webhooks", "storefront_b")).json()["items"] == []
        listed = (await api.call("GET", "/v1/webhooks", "ops")).json()["items"]
        assert [w["id"] for w in listed] == [webhook["id"]] and "secret" not in listed[0]

    async def test_update_and_delete(self, api: Api, receiver: Receiver) -> None:
        webhook = await subscribe(api, receiver.url)
        path = f"/v1/webhooks/{webhook['id']}"
        stale = await api.call("PATCH", path, "storefront", json={"description": "x", "expected_version": 7})
        assert stale.status_code == 409
        changed = await api.call(
            "PATCH", path, "storefront", json={"event_types": ["logistics.alert.opened.v1"], "enabled": False}
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["event_types"] == ["logistics.alert.opened.v1"]
        assert changed.json()["status"] == "disabled" and changed.json()["version"] == 2
        assert (await api.call("DELETE", path, "storefront")).status_code == 204
        assert (await api.call("GET", path, "storefront")).status_code == 404

    async def test_bad_input_is_refused_and_creates_nothing(self, api: Api) -> None:
        for body in (
            {"url": "https://shop.example/h", "event_types": ["aftersales.case.nope.v1"]},
            {"url": "https://shop.example/h", "event_types": ["logistics.tracking.scan.v1"]},
            {"url": "ftp://shop.example/h"},
            {"url": "https://user:pw@shop.example/h"},
            {"url": "https://shop.example:99999/h"},
            {"url": ""},
            {"url": "https://shop.example/\x00"},
        ):
            response = await api.call("POST", "/v1/webhooks", "storefront", json=body)
            assert response.status_code == 422, body
            assert response.headers["content-type"] == "application/problem+json"
        malformed = await api.call(
            "POST", "/v1/webhooks", "storefront", content=b"{", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400
        assert (await api.call("GET", "/v1/webhooks", "ops")).json()["items"] == []
        bad_cursor = await api.call("GET", "/v1/webhooks", "ops", params={"cursor": "AA"})
        assert bad_cursor.status_code == 400

    async def test_the_subscribable_types(self, api: Api) -> None:
        listed = (await api.call("GET", "/v1/webhooks/event-types", "storefront")).json()
        assert listed == sorted(subscribable_types())
        for wanted in (
            "aftersales.case.opened.v1",
            "aftersales.case.approved.v1",
            "aftersales.cashback.approved.v1",
            "aftersales.cashback.cancelled.v1",
            "aftersales.cashback.created.v1",
            "aftersales.cashback.rejected.v1",
            "payouts.payout.paid.v1",
            "payouts.payout.failed.v1",
            "logistics.alert.opened.v1",
        ):
            assert wanted in listed
        assert "logistics.tracking.scan.v1" not in listed
        # case-api may read every topic those come from (its Kafka ACLs are made from CONSUMED_BY)
        assert set(source_topics()) <= set(topics.CONSUMED_BY["case-api"])
        assert set(REACTION_TOPICS) <= set(topics.CONSUMED_BY["case-api"])


SSRF_URLS = (
    "http://127.0.0.1:8000/h",
    "http://localhost/h",
    "http://[::1]/h",
    "http://10.0.0.8/h",
    "http://172.16.0.1/h",
    "http://192.168.1.1/h",
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/h",
    "http://[::ffff:127.0.0.1]/h",
    "http://100.64.0.1/h",
    "http://0.0.0.0/h",
    "http://[fc00::1]/h",
)


class TestSsrf:
    @pytest.fixture
    async def production_like(self, tmp_path: Path) -> AsyncIterator[Api]:
        async for running in running_api(
            settings(tmp_path, webhook_allow_private_destinations=False), tmp_path
        ):
            yield running

    async def test_private_destinations_are_refused(self, production_like: Api) -> None:
        for url in SSRF_URLS:
            response = await production_like.call("POST", "/v1/webhooks", "storefront", json={"url": url})
            assert response.status_code == 422, (url, response.text)
            body = response.json()
            assert body["code"] == "webhook_destination_refused" and body["message_zh"] and body["message_en"]
        assert (await production_like.call("GET", "/v1/webhooks", "ops")).json()["items"] == []

    async def test_a_public_address_is_accepted_and_an_update_is_checked_too(
        self, production_like: Api
    ) -> None:
        webhook = await subscribe(production_like, "https://93.184.216.34/hooks")
        moved = await production_like.call(
            "PATCH", f"/v1/webhooks/{webhook['id']}", "storefront", json={"url": "http://10.1.2.3/"}
        )
        assert moved.status_code == 422
        read = await production_like.call("GET", f"/v1/webhooks/{webhook['id']}", "storefront")
        assert read.json()["url"] == "https://93.184.216.34/hooks"

    async def test_the_sender_checks_again_at_connect_time(self, api: Api, receiver: Receiver) -> None:
        """A subscription made while allowed (or a name that now resolves privately) is not called."""
        webhook = await subscribe(api, receiver.url)
        await opened_case(api)
        await queued(api, webhook)
        await dispatcher(api, allow_private=False).dispatch_once()
        assert receiver.received == []
        (attempt,) = await deliveries(api, webhook)
        assert attempt["status"] == "pending" and "non-public address" in attempt["last_error"]

    def test_production_refuses_allowing_private_destinations(self) -> None:
        with pytest.raises(ValueError, match="SSRF"):
            Settings(
                environment="production",
                database_url="postgresql+asyncpg://u:p@db/",
                kafka_bootstrap_servers="kafka:9092",
                kafka_security_protocol="SASL_SSL",
                kafka_username="case-api",
                kafka_password="x",
                approval_signing_key=private_text(Ed25519PrivateKey.generate()),
                payout_result_public_keys=public_text(Ed25519PrivateKey.generate().public_key()),
                webhook_allow_private_destinations=True,
            )

    def test_development_allows_them_by_default(self, tmp_path: Path) -> None:
        assert Settings(data_dir=tmp_path).webhook_private_allowed


@pytest.mark.postgres
class TestReplicas:
    async def test_two_senders_claim_disjoint_deliveries(self, tmp_path: Path, receiver: Receiver) -> None:
        async with fresh_postgres_database("case_api_wh") as url:
            config = settings(tmp_path, database_url=url, database_name=url.rsplit("/", 1)[1])
            async for api in running_api(config, tmp_path):
                for n in range(6):
                    await subscribe(api, receiver.url, description=f"endpoint {n}")
                webhooks = (await api.call("GET", "/v1/webhooks", "ops")).json()["items"]
                await opened_case(api)
                for webhook in webhooks:
                    await queued(api, webhook)
                first, second = dispatcher(api, batch_size=4), dispatcher(api, batch_size=4)
                a, b = await asyncio.gather(first.claim(), second.claim())
                ids_a, ids_b = {c.delivery_id for c in a}, {c.delivery_id for c in b}
                assert not ids_a & ids_b and len(ids_a | ids_b) == 6
