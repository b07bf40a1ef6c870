"""GET /v1/payouts, /v1/batches and the cashback register 返现表: roles and shop scoping per API.md."""

from __future__ import annotations

import io
from datetime import datetime

import openpyxl
from aftersales_shared.export import XLSX
from payout_testing import Worker, approved, at
from payout_worker.api.registers import COLUMNS


async def paid_day(worker: Worker) -> None:
    """Three payouts of shop-a and one of shop-b paid at the 2026-11-05 cut-off; one left pending."""
    await worker.deliver(
        *(approved(f"cb-{i}", when=at("2026-11-05 10:00")) for i in range(3)),
        approved("cb-b", shop_id="shop-b", when=at("2026-11-05 10:00")),
        approved("cb-next", when=at("2026-11-05 18:00")),
    )
    await worker.tick(at("2026-11-05 17:30"))


class TestPayouts:
    async def test_list_filter_and_read(self, worker: Worker) -> None:
        await paid_day(worker)
        everything = (await worker.call("GET", "/v1/payouts", "admin")).json()
        assert len(everything["items"]) == 5 and everything["next_cursor"] is None
        pending = (await worker.call("GET", "/v1/payouts?status=pending", "ops")).json()["items"]
        assert [p["cashback_task_id"] for p in pending] == ["cb-next"]
        one = (await worker.call("GET", "/v1/payouts?cashback_task_id=cb-1", "support")).json()["items"]
        assert len(one) == 1 and one[0]["status"] == "paid" and one[0]["amount"] == "12.00"
        read = await worker.call("GET", f"/v1/payouts/{one[0]['id']}", "ops")
        assert read.status_code == 200 and read.json()["out_biz_no"] == one[0]["id"]
        assert read.json()["paid_at"].startswith("2026-11-05T09:30:00")

    async def test_cursor_pagination(self, worker: Worker) -> None:
        await paid_day(worker)
        seen, cursor = [], None
        while True:
            page = (
                await worker.call(
                    "GET",
                    "/v1/payouts",
                    "admin",
                    params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                )
            ).json()
            seen += [p["id"] for p in page["items"]]
            if not (cursor := page["next_cursor"]):
                break
        assert len(seen) == len(set(seen)) == 5 and seen == sorted(seen, reverse=True)

    async def test_keys_see_their_shops_only(self, worker: Worker) -> None:
        await paid_day(worker)
        ops_a = (await worker.call("GET", "/v1/payouts", "ops")).json()["items"]
        assert {p["shop_id"] for p in ops_a} == {"shop-a"}
        other = next(
            p
            for p in (await worker.call("GET", "/v1/payouts", "admin")).json()["items"]
            if p["shop_id"] == "shop-b"
        )
        assert (await worker.call("GET", f"/v1/payouts/{other['id']}", "ops")).status_code == 404
        assert (await worker.call("GET", f"/v1/payouts/{other['id']}", "support_b")).status_code == 200

    async def test_roles(self, worker: Worker) -> None:
        assert (await worker.client.get("/v1/payouts")).status_code == 401
        refused = await worker.call("GET", "/v1/payouts", "storefront")
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
        assert (await worker.call("GET", "/v1/payouts", "warehouse")).status_code == 403
        assert (await worker.call("GET", "/v1/payouts/po_missing", "ops")).status_code == 404
        assert (await worker.call("GET", "/v1/payouts?status=nonsense", "ops")).status_code == 422


class TestBatches:
    async def test_counts_and_totals(self, worker: Worker) -> None:
        await paid_day(worker)
        (batch,) = (await worker.call("GET", "/v1/batches", "admin")).json()["items"]
        assert (batch["trigger"], batch["status"], batch["size"], batch["count"]) == (
            "cutoff",
            "completed",
            4,
            4,
        )
        assert batch["counts"] == {"paid": 4} and batch["total"] == "48.00" and batch["paid_total"] == "48.00"
        (scoped,) = (await worker.call("GET", "/v1/batches", "ops")).json()["items"]
        assert scoped["count"] == 3 and scoped["total"] == "36.00"  # shop-a's part of it

    async def test_batches_are_for_ops(self, worker: Worker) -> None:
        assert (await worker.call("GET", "/v1/batches", "support")).status_code == 403


class TestCashbackRegister:
    async def test_the_days_paid_transfers_as_json(self, worker: Worker) -> None:
        await paid_day(worker)
        register = (await worker.call("GET", "/v1/registers/cashback?date=2026-11-05", "support")).json()
        assert register["count"] == 3  # shop-a's key: shop-a's paid transfers; not the pending one
        row = register["items"][0]
        assert row["paid_at"] == "2026-11-05T17:30:00+08:00" and row["amount"] == "12.00"
        assert row["payee_name"] == "张三" and row["out_biz_no"] == row["payout_id"]
        assert (await worker.call("GET", "/v1/registers/cashback?date=2026-11-04", "ops")).json()[
            "count"
        ] == 0

    async def test_the_day_is_a_shanghai_day(self, worker: Worker) -> None:
        await worker.deliver(approved("cb-1", when=at("2026-11-05 23:00")))
        await worker.tick(at("2026-11-05 23:50"))  # a flush late in the evening...
        await worker.call("POST", "/v1/batches/flush", "ops")
        await worker.tick()
        assert (await worker.call("GET", "/v1/registers/cashback?date=2026-11-05", "ops")).json()[
            "count"
        ] == 1
        assert (await worker.call("GET", "/v1/registers/cashback?date=2026-11-06", "ops")).json()[
            "count"
        ] == 0

    async def test_csv(self, worker: Worker) -> None:
        await paid_day(worker)
        response = await worker.call(
            "GET", "/v1/registers/cashback", "admin", params={"date": "2026-11-05", "format": "csv"}
        )
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        assert 'filename="cashback-2026-11-05.csv"' in response.headers["content-disposition"]
        lines = response.content.decode("utf-8-sig").splitlines()
        assert lines[0].startswith("打款时间,打款单号,商户转账单号,返现任务单号") and len(lines) == 5
        assert "张三" in lines[1]

    async def test_xlsx_and_csv_carry_beijing_time_only(self, worker: Worker) -> None:
        await paid_day(worker)
        params = {"date": "2026-11-05"}
        xlsx = await worker.call(
            "GET", "/v1/registers/cashback", "admin", params={**params, "format": "xlsx"}
        )
        assert xlsx.status_code == 200 and xlsx.headers["content-type"].startswith(XLSX)
        sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
        assert sheet is not None and sheet.title == "返现表"
        header, *rows = list(sheet.iter_rows(values_only=True))
        assert list(header) == [c.header for c in COLUMNS] and len(rows) == 4
        row = dict(zip([c.key for c in COLUMNS], rows[0], strict=True))
        assert (row["paid_at"], row["approved_at"]) == (
            datetime(2026, 11, 5, 17, 30),
            datetime(2026, 11, 5, 10),
        )
        assert row["amount"] == 12 and isinstance(row["order_id"], str)
        text = (
            await worker.call("GET", "/v1/registers/cashback", "admin", params={**params, "format": "csv"})
        ).text
        (first,) = [line for line in text.splitlines()[1:] if ",cb-0," in line]
        assert first.startswith("2026-11-05 17:30:00,") and ",2026-11-05 10:00:00," in first
        assert "+08:00" not in text and "+00:00" not in text and "Z," not in text
        (item,) = [
            i
            for i in (await worker.call("GET", "/v1/registers/cashback", "admin", params=params)).json()[
                "items"
            ]
            if i["cashback_task_id"] == "cb-0"
        ]
        assert (item["paid_at"], item["approved_at"]) == (
            "2026-11-05T17:30:00+08:00",
            "2026-11-05T10:00:00+08:00",
        )

    async def test_register_roles(self, worker: Worker) -> None:
        assert (await worker.call("GET", "/v1/registers/cashback", "storefront")).status_code == 403
        assert (await worker.call("GET", "/v1/registers/cashback?date=2026-13-01", "ops")).status_code == 422


class TestDocs:
    async def test_openapi_describes_the_contract(self, worker: Worker) -> None:
        paths = (await worker.client.get("/openapi.json")).json()["paths"]
        assert {
            "/v1/payouts",
            "/v1/payouts/{payout_id}",
            "/v1/payouts/{payout_id}/release",
            "/v1/payouts/{payout_id}/cancel",
            "/v1/batches",
            "/v1/batches/flush",
            "/v1/registers/cashback",
            "/healthz",
            "/readyz",
        } <= set(paths)
        assert (await worker.client.get("/readyz")).status_code == 200


class TestMetrics:
    async def test_payouts_by_status_and_the_outbox_backlog(self, worker: Worker) -> None:
        await paid_day(worker)
        metrics = await worker.metrics()
        assert metrics.value("aftersales_payouts_by_status", status="paid") == 4
        assert metrics.value("aftersales_payouts_by_status", status="pending") == 1
        assert (
            metrics.value("aftersales_payouts_by_status", status="unknown") == 0
        )  # every status is reported
        assert (
            metrics.value("aftersales_outbox_backlog", service="payout-worker") > 0
        )  # the results, not yet published (no relay here)
        while await worker.app.state.relay.drain_once():
            pass
        metrics = await worker.metrics()
        assert metrics.value("aftersales_outbox_backlog", service="payout-worker") == 0
        assert metrics.value("aftersales_outbox_oldest_unpublished_age_seconds", service="payout-worker") == 0
