"""The manual's workflows over HTTP (issue 12): the exchange's replacement parcel followed to its sign-off
(R-EXCHANGE-7D, R-EXCHANGE-ONCE), usage consultations (R-USAGE), inspections as data in their register
(R-INSPECT, R-RESALEABLE) and the five-photo limit (R-EVIDENCE). Refusals change nothing."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.events import CloudEvent, ParcelMilestone, envelope
from case_api_checks import assert_problem, unchanged, upload
from case_api_testing import NOW, Api, deliver, image, outbox_events, read_money

Case = dict[str, Any]
H = timedelta(hours=1)
SECOND = timedelta(seconds=1)
REPLACEMENT = "SF2000001"
SHIPPED_AT = NOW - 3 * H
SIGNED_AT = NOW - H  # 2026-11-05 09:00 (+08:00)
REPLACEMENT_CLOSE = datetime.fromisoformat("2026-11-13T00:00:00+08:00")  # R-7D-WINDOW from SIGNED_AT


async def move(api: Api, case: Case, action: str, who: str = "support", **body: Any) -> Case:
    response = await api.act(case, action, who, **body)
    assert response.status_code == 200, f"{action}: {response.text}"
    return dict(response.json())


async def opened(api: Api, **fields: Any) -> Case:
    response = await api.open_case(**fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def read(api: Api, case: Case) -> Case:
    return dict((await api.call("GET", f"/v1/cases/{case['id']}", "support")).json())


async def approved_exchange(api: Api, **order: Any) -> Case:
    await api.put_order(**order)
    case = await opened(api, remedy="exchange", reason="size", evidence_ids=[await upload(api, image(1))])
    case = await move(api, case, "record_retention", offer="none", outcome="declined")
    case = await move(api, case, "approve")
    assert case["status"] == "awaiting_return"
    return case


def delivered(tracking_no: str = REPLACEMENT, at: datetime = SIGNED_AT, **fields: Any) -> CloudEvent:
    data = ParcelMilestone(
        tracking_no=tracking_no,
        order_id="o-1",
        carrier="SF",
        direction="outbound",
        milestone="delivered",
        occurred_at=at,
        shop_id="shop-a",
        **fields,
    )
    return envelope(
        source="/logistics-watcher",
        type="logistics.parcel.delivered.v1",
        subject=tracking_no,
        data=data,
        at=NOW,
    )


async def ask_return(api: Api, at: datetime) -> Any:
    api.clock.set(at)
    return await api.open_case(remedy="return_refund", reason="no_reason")


class TestReplacementParcel:
    """R-EXCHANGE-7D: `ship_replacement`, then the parcel's delivery is the replacement's sign-off, which
    opens its own 7-day window (R-EXCHANGE-ONCE); a second exchange stays refused."""

    async def test_shipped_delivered_then_returnable_until_the_second_its_window_closes(
        self, any_db_api: Api
    ) -> None:
        api = any_db_api
        case = await approved_exchange(api)
        case = await move(
            api,
            case,
            "ship_replacement",
            "warehouse",
            carrier="SF",
            tracking_no=REPLACEMENT,
            shipped_at=SHIPPED_AT.isoformat(),
        )
        assert case["status"] == "awaiting_return"
        assert case["details"]["replacement_parcel"]["tracking_no"] == REPLACEMENT
        [event] = await outbox_events(api, "aftersales.case.replacement_shipped.v1")
        assert event.data["data"]["tracking_no"] == REPLACEMENT

        on_its_way = assert_problem(await ask_return(api, NOW), 422, "policy_refused")
        assert on_its_way["rule"] == "R-EXCHANGE-ONCE" and "still on its way" in on_its_way["message_en"]

        await deliver(api, delivered())
        case = await read(api, case)
        assert datetime.fromisoformat(case["details"]["replacement_signed_at"]) == SIGNED_AT
        order = (await api.call("GET", "/v1/orders/o-1", "support")).json()
        assert datetime.fromisoformat(order["signed_at"]) == datetime.fromisoformat(
            "2026-11-03T15:20:00+08:00"
        )

        # A later delivered scan of the same parcel never moves it.
        await deliver(api, delivered(at=SIGNED_AT + 5 * H))
        assert (
            datetime.fromisoformat((await read(api, case))["details"]["replacement_signed_at"]) == SIGNED_AT
        )

        async with unchanged(api):
            closed = assert_problem(await ask_return(api, REPLACEMENT_CLOSE), 422, "policy_refused")
        assert closed["rule"] == "R-EXCHANGE-ONCE"
        assert closed["facts"]["deadline"] == "2026-11-13T00:00:00+08:00"
        async with unchanged(api):
            again = assert_problem(
                await api.open_case(remedy="exchange", reason="size"), 422, "policy_refused"
            )
        assert again["rule"] == "R-EXCHANGE-ONCE"

        returned = await ask_return(api, REPLACEMENT_CLOSE - SECOND)
        assert returned.status_code == 201, returned.text
        assert returned.json()["details"]["deadline"] == "2026-11-13T00:00:00+08:00"
        timeline = (await api.call("GET", f"/v1/cases/{case['id']}/timeline", "support")).json()
        assert [(e["action"], e["actor"]) for e in timeline[-2:]] == [
            ("ship_replacement", "warehouse"),
            ("replacement_signed", "logistics-watcher"),
        ]

    async def test_a_delivery_before_it_shipped_or_of_another_parcel_signs_nothing(self, api: Api) -> None:
        case = await approved_exchange(api)
        body = {"carrier": "SF", "tracking_no": REPLACEMENT, "shipped_at": SHIPPED_AT.isoformat()}
        case = await move(api, case, "ship_replacement", **body)
        await deliver(api, delivered(at=SHIPPED_AT - SECOND), delivered(tracking_no="SF7777777"))
        assert "replacement_signed_at" not in (await read(api, case))["details"]
        await deliver(api, delivered(at=SHIPPED_AT))
        assert (
            datetime.fromisoformat((await read(api, case))["details"]["replacement_signed_at"]) == SHIPPED_AT
        )

    @pytest.mark.parametrize(
        ("body", "status", "field"),
        [
            ({"carrier": "SF", "tracking_no": "SF1000001"}, 422, "tracking_no"),  # the original parcel
            (
                {"carrier": "SF", "tracking_no": REPLACEMENT, "shipped_at": (NOW + SECOND).isoformat()},
                422,
                None,
            ),
            ({"carrier": "SF"}, 422, None),
            ({"carrier": "SF", "tracking_no": REPLACEMENT, "shipped_at": "2026-11-05T09:00:00"}, 422, None),
        ],
    )
    async def test_bad_input_is_refused_and_changes_nothing(
        self, api: Api, body: dict[str, Any], status: int, field: str | None
    ) -> None:
        case = await approved_exchange(api)
        body = {"shipped_at": SHIPPED_AT.isoformat()} | body
        async with unchanged(api):
            problem = assert_problem(await api.act(case, "ship_replacement", "warehouse", **body), status)
        if field:
            assert field in str(problem)

    async def test_only_once_only_after_approval_only_an_exchange_and_not_by_the_storefront(
        self, api: Api
    ) -> None:
        body = {"carrier": "SF", "tracking_no": REPLACEMENT, "shipped_at": SHIPPED_AT.isoformat()}
        case = await approved_exchange(api)
        async with unchanged(api):
            assert_problem(await api.act(case, "ship_replacement", "storefront", **body), 403)
        case = await move(api, case, "ship_replacement", "warehouse", **body)
        async with unchanged(api):
            twice = await api.act(case, "ship_replacement", "warehouse", **body | {"tracking_no": "SF3"})
        assert assert_problem(twice, 409)["code"] == "replacement_already_shipped"

        refund = await opened(
            api, remedy="return_refund", reason="no_reason", lines=[{"line_id": "L2", "quantity": 1}]
        )
        async with unchanged(api):
            early = await api.act(refund, "ship_replacement", "warehouse", **body | {"tracking_no": "SF4"})
        assert assert_problem(early, 409)["code"] == "invalid_transition"  # in retention: not approved


class TestReplacementFromTheWatcher:
    """The warehouse sends the replacement's scans to the watcher like any outbound parcel of the order."""

    async def test_the_watchers_delivery_of_the_replacement_sets_its_sign_off(
        self, api: Api, tmp_path: Path
    ) -> None:
        from watcher_testing import running_watcher, scan

        case = await approved_exchange(api)
        body = {"carrier": "SF", "tracking_no": REPLACEMENT, "shipped_at": SHIPPED_AT.isoformat()}
        case = await move(api, case, "ship_replacement", "warehouse", **body)
        assert isinstance(api.bus, EmbeddedBus)
        async with running_watcher(
            tmp_path / "watcher", bus=EmbeddedBus(api.bus.path), background=True
        ) as watcher:
            await watcher.send(
                scan("picked_up", -2 * H, tracking_no=REPLACEMENT),
                scan("delivered", SIGNED_AT, tracking_no=REPLACEMENT, signed_by="recipient"),
            )
            for _ in range(300):
                signed = (await read(api, case))["details"].get("replacement_signed_at")
                if signed:
                    break
                await asyncio.sleep(0.05)
        assert signed is not None and datetime.fromisoformat(signed) == SIGNED_AT


class TestConsultation:
    """R-USAGE: fading, odor, snags, pilling: the standard explanation, and a remedy only where allowed."""

    async def test_answered_at_once_offers_the_window_and_closes_without_money(self, api: Api) -> None:
        await api.put_order()
        case = await opened(api, remedy="consultation", reason="pilling", description="穿了两次起球")
        assert (await read_money(api)).of_case(case["id"]) == []  # nothing reserved
        assert (case["status"], case["amount"], case["needs_retention"]) == ("open", None, False)
        answer = case["details"]["consultation"]
        assert "起球" in answer["explanation_zh"] and "pilling" in answer["explanation_en"]
        offered = {
            (o["line_id"], o["remedy"], o["reason"], o["deadline"]) for o in answer["offered_remedies"]
        }
        assert offered == {
            ("L1", "return_refund", "no_reason", "2026-11-11T00:00:00+08:00"),
            ("L1", "exchange", "no_reason", "2026-11-11T00:00:00+08:00"),
        }
        assert_problem(await api.act(case, "approve"), 409)
        case = await move(api, case, "close", notes="已解释洗护方法")
        assert case["status"] == "closed"

    async def test_after_the_window_the_answer_offers_no_remedy(self, api: Api) -> None:
        await api.put_order()
        api.clock.set(datetime.fromisoformat("2026-11-11T00:00:00+08:00"))
        case = await opened(api, remedy="consultation", reason="fading")
        assert case["details"]["consultation"]["offered_remedies"] == []

    @pytest.mark.parametrize(
        ("fields", "rule"),
        [
            ({"remedy": "consultation", "reason": "odor", "order": {"signed_at": None}}, "R-USAGE"),
            ({"remedy": "refund_only", "reason": "snag", "amount": "10.00"}, "R-REMEDY-REASON"),
            ({"remedy": "consultation", "reason": "damaged"}, "R-REMEDY-REASON"),
        ],
    )
    async def test_refusals(self, api: Api, fields: dict[str, Any], rule: str) -> None:
        await api.put_order(**fields.pop("order", {}))
        async with unchanged(api):
            problem = assert_problem(await api.open_case(**fields), 422, "policy_refused")
        assert problem["rule"] == rule and problem["message_zh"] and problem["message_en"]

    async def test_an_amount_is_a_validation_error(self, api: Api) -> None:
        await api.put_order()
        async with unchanged(api):
            assert_problem(await api.open_case(remedy="consultation", reason="odor", amount="5.00"), 422)


class TestFivePhotos:
    """R-EVIDENCE: at most five photos per case; a sixth is refused and attaches nothing."""

    async def test_six_at_opening_are_refused_five_accepted(self, api: Api) -> None:
        await api.put_order()
        photos = [await upload(api, image(n)) for n in range(6)]
        async with unchanged(api):
            problem = assert_problem(
                await api.open_case(remedy="return_refund", reason="workmanship", evidence_ids=photos),
                422,
                "policy_refused",
            )
        assert (problem["rule"], problem["facts"]["photos"], problem["facts"]["maximum_photos"]) == (
            "R-EVIDENCE",
            "6",
            "5",
        )
        case = await opened(api, remedy="return_refund", reason="workmanship", evidence_ids=photos[:5])
        assert len(case["evidence"]) == 5
        assert case["evidence_missing"] == 0

    async def test_attaching_a_sixth_is_refused_and_the_same_photo_again_counts_once(self, api: Api) -> None:
        await api.put_order()
        photos = [await upload(api, image(n)) for n in range(6)]
        case = await opened(api, remedy="reship", reason="damaged", evidence_ids=photos[:4])
        case = await move(api, case, "attach_evidence", "storefront", evidence_ids=[photos[4], photos[0]])
        assert len(case["evidence"]) == 5
        async with unchanged(api):
            problem = assert_problem(
                await api.act(case, "attach_evidence", "storefront", evidence_ids=[photos[5]]),
                422,
                "policy_refused",
            )
        assert problem["rule"] == "R-EVIDENCE"
        same_bytes = await upload(api, image(1))  # another upload of photos[1]: the same photo
        case = await move(api, case, "attach_evidence", "storefront", evidence_ids=[same_bytes])
        assert len({e["sha256"] for e in case["evidence"]}) == 5


class TestInspections:
    """R-INSPECT: the checks as data, shown in the inspections register; they decide R-RESALEABLE."""

    async def received_exchange(self, api: Api) -> Case:
        case = await approved_exchange(api)
        return await move(api, case, "record_receipt", "warehouse")

    async def test_a_worn_return_fails_and_the_register_shows_the_checks(self, api: Api) -> None:
        case = await self.received_exchange(api)
        async with unchanged(api):
            contradiction = await api.act(
                case, "record_inspection", "warehouse", passed=True, tags_on=True, worn=True, washed=False
            )
        assert_problem(contradiction, 422)
        case = await move(
            api,
            case,
            "record_inspection",
            "warehouse",
            tags_on=True,
            worn=True,
            washed=False,
            size_marks={"hang_tag": "M", "wash_label": "M", "neck_label": "L"},
            notes="领口有汗渍",
        )
        assert case["status"] == "open"  # R-RESALEABLE: back to support
        inspection = case["details"]["inspection"]
        assert (inspection["passed"], inspection["worn"], inspection["sizes_agree"]) == (False, True, False)

        [row] = (await api.call("GET", "/v1/registers/inspections", "ops")).json()["items"]
        assert (row["case_id"], row["passed"], row["worn"], row["neck_label_size"], row["sizes_agree"]) == (
            case["id"],
            False,
            True,
            "L",
            False,
        )
        exported = await api.call("GET", "/v1/registers/inspections", "support", params={"format": "csv"})
        header, line = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
        assert header[:3] == ["登记编号", "验货时间", "订单号"] and "领标码标" in header
        assert line[header.index("验货时间")] == "2026-11-05 10:00:00"  # Beijing time
        assert (await api.call("GET", "/v1/registers/inspections", "support_b")).json()["items"] == []
        assert_problem(await api.call("GET", "/v1/registers/inspections", "storefront"), 403)

    async def test_tags_on_unworn_unwashed_exchanges(self, api: Api) -> None:
        case = await self.received_exchange(api)
        case = await move(api, case, "record_inspection", "warehouse", tags_on=True, worn=False, washed=False)
        assert (case["status"], case["details"]["inspection"]["passed"]) == ("exchanged", True)

    async def test_a_missing_item_case_weighs_the_parcel_while_open(self, api: Api) -> None:
        await api.put_order()
        photos = [await upload(api, image(n)) for n in range(3)]
        case = await opened(api, remedy="reship", reason="missing_item", evidence_ids=photos)
        assert case["status"] == "open"
        case = await move(
            api, case, "record_inspection", "support", parcel_weight_g=420, expected_weight_g=650
        )
        assert case["status"] == "open"
        assert case["details"]["inspection"]["weight_difference_g"] == -230
        [row] = (await api.call("GET", "/v1/registers/inspections", "support")).json()["items"]
        assert (row["parcel_weight_g"], row["expected_weight_g"], row["weight_difference_g"]) == (
            420,
            650,
            -230,
        )
        async with unchanged(api):
            assert_problem(await api.act(case, "record_inspection", "support", parcel_weight_g=-1), 422)
            verdict = await api.act(case, "record_inspection", "support", passed=True)
            assert assert_problem(verdict, 409)["code"] == "not_a_return_inspection"
