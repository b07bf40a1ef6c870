"""Kuaidi100's own protocol (issue 13, item 3): each new tracking number subscribed durably, its pushes
taken as Kuaidi100 sends them, against a stand-in built from Kuaidi100's documentation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kuaidi100_standin import BAD_DATA, SERVER_ERROR, Kuaidi100StandIn, scan
from logistics_watcher import kuaidi100
from logistics_watcher.carriers import KUAIDI100_COMPANIES, kuaidi100_company
from logistics_watcher.models import Kuaidi100Subscription, ScanRecord
from watcher_testing import NOW, Watcher, watcher_on
from watcher_testing import scan as warehouse_scan

KEY, SALT = "k100-test-key", "k100-test-salt"
CALLBACK = "https://watcher.example.com/v1/carriers/kuaidi100/callback"
SETTINGS = {"kuaidi100_key": KEY, "kuaidi100_salt": SALT, "kuaidi100_callback_url": CALLBACK}
OK = {"result": True, "returnCode": "200", "message": "成功"}


@pytest.fixture
async def watcher(db: str, tmp_path: Path) -> AsyncIterator[Watcher]:
    async with watcher_on(db, tmp_path, **SETTINGS) as running:
        yield running


@pytest.fixture
def standin() -> Kuaidi100StandIn:
    return Kuaidi100StandIn(key=KEY)


async def subscribe(watcher: Watcher, standin: Kuaidi100StandIn) -> dict[str, int]:
    async with standin.client() as client:
        return await kuaidi100.subscribe_due(
            watcher.app.state.sessions, watcher.app.state.settings, client, watcher.clock.now()
        )


async def subscription(watcher: Watcher, number: str = "SF1000001") -> Kuaidi100Subscription:
    async with watcher.app.state.sessions() as session:
        found = await session.get(Kuaidi100Subscription, number)
        assert found is not None
        return found


async def shipped(watcher: Watcher, number: str = "SF1000001", carrier: str = "SF") -> None:
    await watcher.send(
        warehouse_scan("picked_up", at=-timedelta(hours=3), tracking_no=number, carrier=carrier)
    )


HISTORY = [  # newest first, as Kuaidi100 sends it
    scan("2026-11-05 09:30:00", "已签收,签收人:本人", "301"),
    scan("2026-11-05 08:10:00", "快件正在派送中", "5"),
    scan("2026-11-05 07:40:00", "快件已到达杭州转运中心", "1002"),
]


class TestCarrierTable:
    @pytest.mark.parametrize(
        ("carrier", "company"),
        [
            ("SF", "shunfeng"),
            ("ZTO", "zhongtong"),
            ("YTO", "yuantong"),
            ("STO", "shentong"),
            ("Yunda", "yunda"),
            ("JD", "jd"),
            ("EMS", "ems"),
            ("Deppon", "debangkuaidi"),
            ("J&T", "jtexpress"),
            ("jt", "jtexpress"),
            ("debangwuliu", "debangwuliu"),
            ("shunfeng", "shunfeng"),
            ("XYZ", None),
        ],
    )
    def test_common_carriers_map_to_kuaidi100_codes(self, carrier: str, company: str | None) -> None:
        assert kuaidi100_company(carrier) == company

    def test_the_table_covers_the_nine_carriers(self) -> None:
        assert set(KUAIDI100_COMPANIES) == {"SF", "ZTO", "YTO", "STO", "YUNDA", "JD", "EMS", "DEPPON", "JT"}


class TestSubscribing:
    async def test_each_new_number_is_subscribed_once_with_kuaidi100s_fields(
        self, watcher: Watcher, standin: Kuaidi100StandIn
    ) -> None:
        await shipped(watcher)
        await shipped(watcher, "XYZ1", carrier="XYZ")  # a carrier Kuaidi100 is not asked about
        await watcher.send(warehouse_scan("in_transit", at=-timedelta(hours=2)))  # not new: no second row
        assert await subscribe(watcher, standin) == {"subscribed": 1}
        assert standin.requests == [
            {
                "company": "shunfeng",
                "number": "SF1000001",
                "key": KEY,
                "parameters": {"callbackurl": CALLBACK, "resultv2": "1", "salt": SALT},
            }
        ]
        row = await subscription(watcher)
        assert (row.status, row.attempts, row.claimed_until) == ("subscribed", 1, None)
        assert await subscribe(watcher, standin) == {}  # nothing due any more

    async def test_a_failed_call_is_retried_later_and_a_refusal_is_not(
        self, watcher: Watcher, standin: Kuaidi100StandIn
    ) -> None:
        await shipped(watcher)
        await shipped(watcher, "YT1", carrier="YTO")
        standin.next_answers = [SERVER_ERROR, BAD_DATA]
        assert await subscribe(watcher, standin) == {"pending": 1, "failed": 1}
        rows = {r.status: r for r in [await subscription(watcher), await subscription(watcher, "YT1")]}
        retried, refused = rows["pending"], rows["failed"]
        assert retried.last_error and retried.last_error.startswith("500")
        assert refused.last_error and refused.last_error.startswith("700")
        assert await subscribe(watcher, standin) == {}  # backing off
        watcher.clock.advance(seconds=61)
        assert await subscribe(watcher, standin) == {"subscribed": 1}
        assert [r["number"] for r in standin.requests].count(refused.tracking_no) == 1

    async def test_a_claim_lost_in_a_crash_is_sent_after_its_lease(
        self, watcher: Watcher, standin: Kuaidi100StandIn
    ) -> None:
        await shipped(watcher)
        claimed = await kuaidi100.claim(watcher.app.state.sessions, watcher.clock.now())
        assert [r.tracking_no for r in claimed] == ["SF1000001"]  # ... and the process dies here
        assert await subscribe(watcher, standin) == {}  # still leased
        watcher.clock.advance(seconds=kuaidi100.LEASE.total_seconds() + 1)
        assert await subscribe(watcher, standin) == {"subscribed": 1}
        assert len(standin.requests) == 1

    async def test_no_key_no_subscriptions(self, tmp_path: Path, standin: Kuaidi100StandIn) -> None:
        async with watcher_on("sqlite", tmp_path) as watcher:
            await shipped(watcher)
            assert await watcher.count(Kuaidi100Subscription) == 0
            assert await subscribe(watcher, standin) == {}


class TestPushes:
    async def push(self, watcher: Watcher, standin: Kuaidi100StandIn, **kwargs: Any) -> Any:
        path, form = standin.push("SF1000001", kwargs.pop("data", HISTORY), **kwargs)
        return await watcher.client.post(path, data=form)

    async def test_a_push_goes_through_the_ingest_as_the_parcels_shop(
        self, watcher: Watcher, standin: Kuaidi100StandIn
    ) -> None:
        await shipped(watcher)
        await subscribe(watcher, standin)
        response = await self.push(watcher, standin, state="301")
        assert response.status_code == 200 and response.json() == OK
        parcel = await watcher.parcel()
        assert (parcel["status"], parcel["signed_by"], parcel["shop_id"]) == (
            "delivered",
            "recipient",
            "shop-a",
        )
        assert parcel["delivered_at"].startswith("2026-11-05T01:30:00")  # 09:30 Beijing time
        kuaidi = [s for s in parcel["history"] if s["event_id"].startswith("kuaidi100:")]
        assert [s["status"] for s in kuaidi] == ["in_transit", "out_for_delivery", "delivered"]
        # Every push carries the whole history: the same scans are not taken twice.
        again = await self.push(watcher, standin, state="301", status="shutdown")
        assert again.json() == OK
        assert await watcher.count(ScanRecord) == 4
        assert (await subscription(watcher)).status == "finished"

    async def test_pushed_scans_feed_the_detectors(self, watcher: Watcher, standin: Kuaidi100StandIn) -> None:
        await shipped(watcher)
        await subscribe(watcher, standin)
        transit = [scan("2026-11-05 17:00:00", "快件已到达杭州转运中心", "1002")]
        assert (await self.push(watcher, standin, state="0", data=transit)).json() == OK
        assert await watcher.detect(after=timedelta(hours=25)) == {"stalled": 1}

    @pytest.mark.parametrize("salt", ["another-salt", ""])
    async def test_a_bad_signature_is_refused_and_changes_nothing(
        self, watcher: Watcher, standin: Kuaidi100StandIn, salt: str
    ) -> None:
        await shipped(watcher)
        await subscribe(watcher, standin)
        response = await self.push(watcher, standin, state="301", salt=salt or "x")
        if not salt:
            path, form = standin.push("SF1000001", HISTORY, state="301")
            response = await watcher.client.post(path, data={**form, "sign": form["sign"].lower()[:-1] + "0"})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["result"] is False and response.json()["code"] == "bad_signature"
        assert (await watcher.parcel())["status"] == "picked_up"

    async def test_a_push_that_is_no_push_is_400(self, watcher: Watcher, standin: Kuaidi100StandIn) -> None:
        param = '{"status": "polling"}'
        response = await watcher.client.post(
            "/v1/carriers/kuaidi100/callback", data={"param": param, "sign": kuaidi100.sign(param, SALT)}
        )
        assert response.status_code == 400 and response.json()["code"] == "malformed_push"
        missing = await watcher.client.post("/v1/carriers/kuaidi100/callback", data={"param": param})
        assert missing.status_code == 422

    async def test_abort_subscribes_again_with_the_corrected_company(
        self, watcher: Watcher, standin: Kuaidi100StandIn
    ) -> None:
        await shipped(watcher)
        await subscribe(watcher, standin)
        response = await self.push(
            watcher, standin, state="0", status="abort", message="3天查询无记录", data=[], com_new="zhongtong"
        )
        assert response.json() == OK
        row = await subscription(watcher)
        assert (row.status, row.company) == ("pending", "zhongtong")
        assert row.next_attempt_at == NOW + kuaidi100.RESUBSCRIBE_AFTER_ABORT
        watcher.clock.advance(seconds=kuaidi100.RESUBSCRIBE_AFTER_ABORT.total_seconds())
        standin.subscriptions.clear()
        assert await subscribe(watcher, standin) == {"subscribed": 1}
        assert standin.requests[-1]["company"] == "zhongtong"

    async def test_a_number_not_subscribed_here_is_acknowledged_and_ignored(
        self, watcher: Watcher, standin: Kuaidi100StandIn
    ) -> None:
        standin.subscriptions["ZT1"] = {
            "company": "zhongtong",
            "number": "ZT1",
            "parameters": {"callbackurl": CALLBACK, "salt": SALT},
        }
        path, form = standin.push("ZT1", HISTORY, state="301")
        assert (await watcher.client.post(path, data=form)).json() == OK
        assert await watcher.count(ScanRecord) == 0

    async def test_scans_are_the_subscribed_shops_only(
        self, watcher: Watcher, standin: Kuaidi100StandIn
    ) -> None:
        await shipped(watcher)
        await subscribe(watcher, standin)
        async with watcher.app.state.sessions() as session:
            row = await session.get(Kuaidi100Subscription, "SF1000001")
            assert row is not None
            row.shop_id = "shop-b"  # as if another shop's number: its scans may not touch shop-a's parcel
            session.add(row)
            await session.commit()
        assert (await self.push(watcher, standin, state="301")).json() == OK
        assert (await watcher.parcel())["status"] == "picked_up"

    async def test_pushes_are_off_without_a_salt(self, tmp_path: Path) -> None:
        async with watcher_on("sqlite", tmp_path) as watcher:
            param = '{"lastResult": {"nu": "SF1000001"}}'
            response = await watcher.client.post(
                "/v1/carriers/kuaidi100/callback", data={"param": param, "sign": kuaidi100.sign(param, "")}
            )
            assert response.status_code == 404 and response.json()["code"] == "not_configured"
