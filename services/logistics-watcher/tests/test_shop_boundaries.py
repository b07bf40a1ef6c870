"""Whose parcel a scan may move, and when it may be dated (issue 11, item 1).

A tracking event counts only for parcels and orders of its sender's shops: a parcel's shop is the one its
first event named and never changes, a parcel without one is not taken over by a key of some shops, and a
parcel of another shop than the order's (as case-api knows it) confirms nothing for the order. No scan is
dated before its parcel was created or shipped, nor more than a few minutes ahead of the clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aftersales_shared import topics
from aftersales_shared.auth import Role, create_key
from aftersales_shared.db import unit_of_work
from aftersales_shared.migrations import upgrade
from aftersales_testing import fresh_postgres_database
from logistics_watcher.models import Parcel, ScanRecord, parcels, scans
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from test_consumer import eventually, publish_scans, read
from test_milestones import milestones, request_intercept
from watcher_testing import NOW, SERVICE_DIR, Watcher, running_watcher, scan

H = timedelta(hours=1)
DAY = timedelta(days=1)


async def warehouse_key(w: Watcher, *shops: str) -> dict[str, str]:
    """The headers of a new warehouse key for these shops (none: every shop)."""
    async with unit_of_work(w.app.state.sessions) as session:
        _, secret = await create_key(
            session,
            name=f"wh-{'-'.join(shops) or 'all'}",
            roles=[Role.warehouse],
            shops=list(shops) or None,
            now=w.clock.now(),
        )
    return {"Authorization": f"Bearer {secret}"}


async def post(w: Watcher, headers: dict[str, str], *events: dict[str, Any]) -> httpx.Response:
    return await w.client.post("/v1/tracking-events", headers=headers, json={"events": list(events)})


def refusals(response: httpx.Response) -> list[tuple[int, str]]:
    return [(r["index"], r["errors"][0]["field"]) for r in response.json()["rejected"]]


async def history(w: Watcher, tracking_no: str) -> list[str]:
    return [h["status"] for h in (await w.parcel(tracking_no, who="admin"))["history"]]


async def shop_b_parcel_being_intercepted(w: Watcher) -> None:
    """Shop-b's order o-b shipped in SFB1, and case-api asked for its intercept (R-RO-SHIPPED)."""
    shop_b = await warehouse_key(w, "shop-b")
    response = await post(
        w, shop_b, scan("picked_up", -30 * H, tracking_no="SFB1", order_id="o-b", shop_id=None)
    )
    assert (response.status_code, response.json()["accepted"]) == (202, 1), response.text
    await request_intercept(w, order_id="o-b", shop_id="shop-b")


class TestAnotherShopsParcel:
    @pytest.mark.parametrize("named", ["shop-a", "shop-b", None])
    async def test_a_key_of_shop_a_cannot_turn_back_a_parcel_of_shop_b(
        self, any_db_watcher: Watcher, named: str | None
    ) -> None:
        """The attack: shop-b's intercept was confirmed, and its refund paid, before anything turned back."""
        w = any_db_watcher
        await shop_b_parcel_being_intercepted(w)
        response = await post(
            w,
            w.keys.auth("warehouse"),  # shop-a's
            scan("in_transit", -2 * H, tracking_no="SFA1"),  # its own parcel goes through
            scan("returning", -1 * H, tracking_no="SFB1", order_id="o-b", shop_id=named),
        )
        assert response.status_code == 202, response.text
        assert (response.json()["accepted"], refusals(response)) == (1, [(1, "shop_id")])
        assert "shop-b" not in response.text  # nothing about the other shop's parcel is told
        parcel = await w.parcel("SFB1", who="admin")
        assert (parcel["status"], parcel["shop_id"], len(parcel["history"])) == ("picked_up", "shop-b", 1)
        assert await milestones(w) == []

    async def test_a_parcel_cannot_name_an_order_case_api_knows_as_another_shops(
        self, any_db_watcher: Watcher
    ) -> None:
        w = any_db_watcher
        await shop_b_parcel_being_intercepted(w)
        shop_a = w.keys.auth("warehouse")
        response = await post(w, shop_a, scan("returning", -1 * H, tracking_no="SFX1", order_id="o-b"))
        assert (response.status_code, refusals(response)) == (422, [(0, "order_id")])
        assert response.json()["rejected"][0]["errors"][0]["message"] == "the order is another shop's"
        by_admin = scan("returning", -1 * H, tracking_no="SFX2", order_id="o-b", shop_id="shop-a")
        response = await w.call("POST", "/v1/tracking-events", "admin", json={"events": [by_admin]})
        assert refusals(response) == [(0, "order_id")]  # not from a key for all shops either
        assert await w.count(Parcel) == 1
        await w.send(scan("returning", -1 * H, tracking_no="SFB1", order_id="o-b", shop_id=None), who="admin")
        assert await milestones(w) == [("intercepted", "SFB1")]

    async def test_an_intercept_is_confirmed_only_by_a_parcel_of_the_orders_shop(
        self, any_db_watcher: Watcher
    ) -> None:
        """A parcel that named the order before case-api said whose it is proves nothing for it, and does
        not keep the order's own parcels out (the first to name an order does not get it)."""
        w = any_db_watcher
        await w.send(scan("returning", -1 * H, tracking_no="SFA9", order_id="o-b"))  # shop-a's key
        await request_intercept(w, order_id="o-b", shop_id="shop-b")
        assert await milestones(w) == []
        refused = await post(
            w, w.keys.auth("warehouse"), scan("returned", timedelta(0), tracking_no="SFA9", order_id="o-b")
        )
        assert refusals(refused) == [(0, "order_id")]  # now the order's shop is known
        assert refused.json()["rejected"][0]["errors"][0]["message"] == "the order is another shop's"
        await w.send(
            scan("picked_up", -5 * H, tracking_no="SFB1", order_id="o-b", shop_id="shop-b"),
            scan("returning", -1 * H, tracking_no="SFB1", order_id="o-b", shop_id="shop-b"),
            who="admin",
        )
        assert await milestones(w) == [("intercepted", "SFB1")]

    async def test_a_scan_applied_before_the_orders_shop_was_known_is_a_duplicate_when_sent_again(
        self, any_db_watcher: Watcher
    ) -> None:
        """A scan already in the history is reported as a duplicate, even where it would be refused now:
        sent again (a retried request, a redelivery from the bus) it changes nothing and is not parked."""
        w = any_db_watcher
        applied = scan("returning", -1 * H, tracking_no="SFA9", order_id="o-b")
        await w.send(applied)
        await request_intercept(w, order_id="o-b", shop_id="shop-b")
        assert await w.send(applied) == {
            "accepted": 0,
            "duplicates": [{"index": 0, "event_id": applied["event_id"]}],
            "rejected": [],
        }
        assert await milestones(w) == []


class TestAParcelsShop:
    async def test_a_parcel_without_a_shop_is_not_taken_over(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("picked_up", -5 * H, shop_id=None), who="admin")  # a feed that knows no shop
        for named in ("shop-a", None):
            response = await post(w, w.keys.auth("warehouse"), scan("delivered", -1 * H, shop_id=named))
            assert (response.status_code, refusals(response)) == (422, [(0, "shop_id")])
        parcel = await w.parcel(who="admin")
        assert (parcel["shop_id"], parcel["status"]) == (None, "picked_up")
        # A key for every shop may say whose it is, once.
        await w.send(scan("in_transit", -4 * H, shop_id="shop-a"), who="admin")
        assert (await w.parcel(who="admin"))["shop_id"] == "shop-a"
        response = await w.call(
            "POST", "/v1/tracking-events", "admin", json={"events": [scan(shop_id="shop-b")]}
        )
        assert (response.status_code, refusals(response)) == (422, [(0, "shop_id")])

    async def test_a_key_for_several_shops_must_name_it(self, watcher: Watcher) -> None:
        both = await warehouse_key(watcher, "shop-a", "shop-b")
        response = await post(
            watcher,
            both,
            scan(tracking_no="SF1", shop_id=None),
            scan(tracking_no="SF2", shop_id="shop-b"),
            scan(tracking_no="SF3", shop_id="shop-c"),
        )
        assert (response.json()["accepted"], refusals(response)) == (1, [(0, "shop_id"), (2, "shop_id")])
        assert (await watcher.parcel("SF2", who="admin"))["shop_id"] == "shop-b"

    async def test_the_bus_cannot_move_a_parcel_to_another_shop(self, tmp_path: Path) -> None:
        async with running_watcher(tmp_path, background=True) as live:
            await live.send(scan("picked_up", -5 * H))
            await publish_scans(live.bus, scan("returning", -1 * H, shop_id="shop-b"))
            [parked] = await read(live.bus, topics.dlq(topics.TRACKING), 1)
            assert parked.data["status"] == "returning"
            assert await history(live, "SF1000001") == ["picked_up"]
            # The bus may still give a shop-less parcel its shop, which then holds.
            await publish_scans(live.bus, scan("picked_up", -5 * H, tracking_no="N1", shop_id=None))
            await publish_scans(live.bus, scan("in_transit", -4 * H, tracking_no="N1", shop_id="shop-b"))

            async def shop_of_n1() -> str | None:
                response = await live.call("GET", "/v1/parcels/N1", "admin")
                return response.json()["shop_id"] if response.status_code == 200 else None

            assert await eventually(shop_of_n1) == "shop-b"


class TestScanTimes:
    async def test_a_sign_off_backdated_before_the_shipment_is_refused(self, any_db_watcher: Watcher) -> None:
        """The attack's second half: a `delivered` dated 30 days back, before the order was even paid."""
        w = any_db_watcher
        await w.send(scan("picked_up", -30 * H), scan("in_transit", -20 * H))
        response = await post(
            w, w.keys.auth("warehouse"), scan("delivered", -30 * DAY, signed_by="recipient")
        )
        assert (response.status_code, refusals(response)) == (422, [(0, "occurred_at")])
        assert "before the parcel was shipped" in response.json()["rejected"][0]["errors"][0]["message"]
        parcel = await w.parcel()
        assert (parcel["status"], parcel["delivered_at"]) == ("in_transit", None)
        assert datetime.fromisoformat(parcel["shipped_at"]) == NOW - 30 * H
        assert await milestones(w) == []

    async def test_within_one_batch_in_any_order(self, watcher: Watcher) -> None:
        result = await watcher.send(
            scan("delivered", -3 * DAY), scan("created", -2 * DAY), scan("in_transit", -DAY)
        )
        assert (result["accepted"], [r["index"] for r in result["rejected"]]) == (2, [0])
        assert await history(watcher, "SF1000001") == ["created", "in_transit"]

    async def test_a_late_creation_or_pickup_scan_may_be_earlier(self, any_db_watcher: Watcher) -> None:
        w = any_db_watcher
        await w.send(scan("picked_up", -9 * H), scan("in_transit", -6 * H))
        await w.send(scan("created", -10 * H))  # the label was printed before the pickup
        assert datetime.fromisoformat((await w.parcel())["shipped_at"]) == NOW - 10 * H
        response = await post(w, w.keys.auth("warehouse"), scan("out_for_delivery", -11 * H))
        assert refusals(response) == [(0, "occurred_at")]

    async def test_a_scan_received_before_the_shipment_was_known_is_a_duplicate_when_sent_again(
        self, watcher: Watcher
    ) -> None:
        early = scan("in_transit", -20 * H)
        await watcher.send(early)
        await watcher.send(scan("created", -10 * H))  # a clock gone wrong somewhere
        result = await watcher.send(early)
        assert result == {
            "accepted": 0,
            "duplicates": [{"index": 0, "event_id": early["event_id"]}],
            "rejected": [],
        }

    @pytest.mark.parametrize(
        ("ahead", "accepted"), [(timedelta(minutes=9), True), (timedelta(minutes=11), False)]
    )
    async def test_at_most_a_few_minutes_ahead_of_the_clock(
        self, watcher: Watcher, ahead: timedelta, accepted: bool
    ) -> None:
        response = await post(watcher, watcher.keys.auth("warehouse"), scan("delivered", ahead))
        if accepted:
            assert response.json()["accepted"] == 1, response.text
        else:
            assert (response.status_code, refusals(response)) == (422, [(0, "occurred_at")])
            assert await watcher.count(ScanRecord) == 0


class TestMigration:
    @pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
    async def test_parcels_tracked_before_get_their_shipment_time(self, db: str, tmp_path: Path) -> None:
        if db == "sqlite":
            await self._check(f"sqlite+aiosqlite:///{tmp_path}/w.db")
            return
        async with fresh_postgres_database("logistics_watcher_s") as url:
            await self._check(url)

    @staticmethod
    async def _check(url: str) -> None:
        await upgrade(SERVICE_DIR, url, "0003")
        engine = create_async_engine(url)
        at = bindparam("at", type_=parcels.c.status_at.type)
        try:
            async with engine.begin() as conn:
                for tracking_no in ("SF1", "SF2"):
                    await conn.execute(
                        text(
                            "INSERT INTO parcels (tracking_no, carrier, direction, status, status_at, "
                            "last_event_at, out_for_delivery_seen, open_alerts, created_at, updated_at) "
                            "VALUES (:tn, 'SF', 'outbound', 'in_transit', :at, :at, false, 0, :at, :at)"
                        ).bindparams(at),
                        {"tn": tracking_no, "at": NOW},
                    )
                history = [
                    ("e1", "picked_up", -9 * H),
                    ("e2", "created", -10 * H),
                    ("e3", "in_transit", -12 * H),
                ]
                await conn.execute(
                    insert(scans),
                    [
                        {
                            "event_id": e,
                            "tracking_no": "SF1",
                            "status": st,
                            "occurred_at": NOW + d,
                            "received_at": NOW,
                        }
                        for e, st, d in history
                    ],
                )
            await upgrade(SERVICE_DIR, url)
            async with engine.connect() as conn:
                found = dict((await conn.execute(select(parcels.c.tracking_no, parcels.c.shipped_at))).all())
        finally:
            await engine.dispose()
        assert found == {"SF1": NOW - 10 * H, "SF2": None}
