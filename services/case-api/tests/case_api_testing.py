"""Test support for case-api: a running app with a frozen clock, keys per role, and factories."""

from __future__ import annotations

import asyncio
import io
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import case_api
import httpx
from aftersales_shared import topics
from aftersales_shared.bus import Bus
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.clock import FrozenClock
from aftersales_shared.events import CloudEvent, PayoutResult, envelope
from aftersales_shared.migrations import upgrade
from aftersales_shared.money import MoneyType
from aftersales_shared.outbox import OutboxMessage
from aftersales_shared.signing import result_signer
from aftersales_testing import RunningService, make_keys, serve
from case_api.config import Settings
from case_api.main import create_app
from case_api.models import Order, OrderLine
from PIL import Image as PILImage
from sqlalchemy import column, table
from sqlalchemy import select as sql_select
from sqlmodel import col, select

SERVICE_DIR = Path(case_api.__file__).parent  # alembic.ini and migrations/
NOW = datetime.fromisoformat("2026-11-05T10:00:00+08:00")


@dataclass
class Api(RunningService):
    """A running case-api with a frozen clock and a key per role."""

    async def put_order(
        self, order_id: str = "o-1", who: str = "storefront", **changes: Any
    ) -> dict[str, Any]:
        response = await self.call("PUT", f"/v1/orders/{order_id}", who, json=order_body(**changes))
        assert response.status_code in (200, 201), response.text
        return response.json()

    async def open_case(self, who: str = "storefront", **fields: Any) -> httpx.Response:
        body = {
            "order_id": "o-1",
            "lines": [{"line_id": "L1", "quantity": 1}],
            "remedy": "return_refund",
            "reason": "no_reason",
            **fields,
        }
        return await self.call("POST", "/v1/cases", who, json=body)

    async def act(
        self, case: dict[str, Any], action: str, who: str = "support", **body: Any
    ) -> httpx.Response:
        return await self.call(
            "POST",
            f"/v1/cases/{case['id']}/actions/{action}",
            who,
            json={"expected_version": case["version"], **body},
        )


def order_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "shop_id": "shop-a",
        "platform": "tmall",
        "buyer": {
            "id": "buyer-1",
            "name": "张三",
            "phone": "13812345678",
            "address": "浙江省杭州市西湖区文三路 1 号",
            "alipay_account": "zhangsan@example.com",
        },
        "paid_at": "2026-11-01T10:00:00+08:00",
        "lines": [
            {
                "line_id": "L1",
                "sku": "TEE-M-BLK",
                "name": "纯棉T恤",
                "size": "M",
                "color": "black",
                "category": "tops",
                "quantity": 2,
                "unit_price": "129.00",
                "paid_amount": "238.00",
            },
            {
                "line_id": "L2",
                "sku": "PANTS-L",
                "name": "休闲裤",
                "size": "L",
                "color": "grey",
                "category": "bottoms",
                "quantity": 1,
                "unit_price": "199.00",
                "paid_amount": "189.00",
            },
        ],
        "shipping_fee": "10.00",
        "shipping_insurance": False,
        "shipment": {
            "carrier": "SF",
            "tracking_no": "SF1000001",
            "warehouse_id": "WH-HZ",
            "shipped_at": "2026-11-02T09:00:00+08:00",
        },
        "signed_at": "2026-11-03T15:20:00+08:00",
    }
    body.update(changes)
    return body


async def running_api(settings: Settings, tmp_path: Path, bus: Bus | None = None) -> AsyncIterator[Api]:
    await upgrade(SERVICE_DIR, settings.sqlalchemy_url)
    clock = FrozenClock(NOW)
    bus = bus or EmbeddedBus(tmp_path / "events.db")
    app = create_app(settings, clock=clock, bus=bus)
    async with serve(app) as client:
        yield Api(app, client, await make_keys(app, clock.now()), clock, bus)


def encoded(fmt: str, size: tuple[int, int] = (8, 8), **options: Any) -> bytes:
    """A real picture of `size` in a Pillow format (JPEG, PNG, WEBP, HEIF, AVIF)."""
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def box(box_type: bytes, payload: bytes = b"", *, large: bool = False) -> bytes:
    """One ISO BMFF box; `large` writes size 1 and a 64-bit size after the type."""
    if large:
        return (1).to_bytes(4, "big") + box_type + (16 + len(payload)).to_bytes(8, "big") + payload
    return (8 + len(payload)).to_bytes(4, "big") + box_type + payload


def mvhd(duration: int, timescale: int = 1000, version: int = 0) -> bytes:
    """A movie header: version 0 has 32-bit creation/modification/duration, version 1 64-bit ones."""
    width = 4 if version == 0 else 8
    times = (0).to_bytes(width, "big") * 2
    rest = b"\x00" * 80  # rate, volume, matrix, pre-defined, next track id: not read
    body = times + timescale.to_bytes(4, "big") + duration.to_bytes(width, "big") + rest
    return box(b"mvhd", bytes([version, 0, 0, 0]) + body)


def mp4(seconds: float = 2.0, brand: bytes = b"mp42", *, with_moov: bool = True) -> bytes:
    """A small MP4 (or MOV with brand `qt  `): ftyp, moov with mvhd giving the duration, an empty mdat."""
    ftyp = box(b"ftyp", brand + (0).to_bytes(4, "big") + brand + b"isom")
    moov = box(b"moov", mvhd(round(seconds * 1000))) if with_moov else b""
    return ftyp + moov + box(b"mdat")


JPEG = encoded("JPEG")
PNG = encoded("PNG")
MP4 = mp4()


def image(n: int) -> bytes:
    """A distinct tiny real JPEG per n (distinct sha256): n is written in a comment segment (COM)."""
    comment = str(n).encode()
    return JPEG[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + JPEG[2:]


# ---------------------------------------------------------------- money: the compensation ledger (issue 10)

PAYEE = {"alipay_account": "zhangsan@example.com", "name": "张三"}
# Read by table name through SQL Core: the table `ledger_entries` and its columns are the contract.
LEDGER = table(
    "ledger_entries",
    column("id"),
    column("order_id"),
    column("line_id"),
    column("bucket"),
    column("kind"),
    column("amount", MoneyType()),
    column("status"),
    column("case_id"),
    column("cashback_task_id"),
    column("new_order_id"),
    column("new_line_id"),
)
BUCKETS = frozenset({"goods", "postage"})
KINDS = frozenset({"refund", "price_protection", "cashback", "reship", "shipping_fee"})
ENTRY_STATUSES = frozenset({"reserved", "granted", "released"})
ZERO = Decimal("0.00")


def one_line_order(paid: str = "100.00", sku: str = "TEE-M-BLK", **changes: Any) -> dict[str, Any]:
    """`put_order` fields for an order with one line L1 of one unit that cost `paid`."""
    line = {**order_body()["lines"][0], "sku": sku, "quantity": 1, "unit_price": paid, "paid_amount": paid}
    return {"lines": [line], **changes}


@dataclass(frozen=True)
class LedgerRow:
    id: str
    order_id: str
    line_id: str
    bucket: str
    kind: str
    amount: Decimal
    status: str
    case_id: str | None
    cashback_task_id: str | None
    new_order_id: str | None
    new_line_id: str | None

    @property
    def held(self) -> bool:
        """Reserved or granted: promised to the buyer, so it counts against what was paid."""
        return self.status != "released"


@dataclass(frozen=True)
class Money:
    """One read of the ledger beside what was paid: every line's paid_amount, every order's shipping fee."""

    entries: tuple[LedgerRow, ...]
    paid: dict[tuple[str, str], Decimal]  # (order_id, line_id) → paid_amount
    shipping_fee: dict[str, Decimal]

    def held(
        self,
        order_id: str,
        *,
        line_id: str | None = None,
        bucket: str = "goods",
        status: str | None = None,
    ) -> Decimal:
        """What the ledger holds (reserved and granted, or only `status`) for an order, line and bucket."""
        return sum(
            (
                e.amount
                for e in self.entries
                if e.held
                and e.order_id == order_id
                and e.bucket == bucket
                and (line_id is None or e.line_id == line_id)
                and (status is None or e.status == status)
            ),
            ZERO,
        )

    def goods_headroom(self, order_id: str, line_id: str) -> Decimal:
        """R-COMP-CAP: what the line may still be promised."""
        return self.paid[(order_id, line_id)] - self.held(order_id, line_id=line_id)

    def postage_headroom(self, order_id: str) -> Decimal:
        """R-POSTAGE: what of the order's shipping fee may still be reimbursed."""
        return self.shipping_fee[order_id] - self.held(order_id, bucket="postage")

    def of_case(self, case_id: str) -> list[LedgerRow]:
        return [e for e in self.entries if e.case_id == case_id]

    def of_task(self, task_id: str) -> list[LedgerRow]:
        return [e for e in self.entries if e.cashback_task_id == task_id]

    def check(self) -> None:
        """The invariants of issue 10: per line goods held <= paid, per order postage held <= the shipping
        fee, and one held price-protection claim per line of a new order."""
        problems: list[str] = []
        for e in self.entries:
            if e.bucket not in BUCKETS or e.kind not in KINDS or e.status not in ENTRY_STATUSES:
                problems.append(f"unknown bucket, kind or status: {e}")
            if e.amount < 0 or e.amount != e.amount.quantize(Decimal("0.01")):
                problems.append(f"not an amount of money: {e}")
            if (e.order_id, e.line_id) not in self.paid:
                problems.append(f"an entry on no order line: {e}")
            if e.case_id is None and e.cashback_task_id is None:
                problems.append(f"an entry of no case and no cashback task: {e}")
        for (order_id, line_id), paid in sorted(self.paid.items()):
            held = self.held(order_id, line_id=line_id)
            if held > paid:
                problems.append(f"R-COMP-CAP: {order_id}/{line_id} holds {held} of {paid} paid")
        for order_id, fee in sorted(self.shipping_fee.items()):
            postage = self.held(order_id, bucket="postage")
            if postage > fee:
                problems.append(f"R-POSTAGE: {order_id} holds {postage} postage of a {fee} shipping fee")
        claims: dict[tuple[str, str | None], list[str]] = defaultdict(list)
        for e in self.entries:
            if e.held and e.new_order_id is not None:
                claims[(e.new_order_id, e.new_line_id)].append(e.id)
        for claim, ids in sorted(claims.items(), key=str):
            if len(ids) > 1:
                problems.append(f"R-PRICE-PROTECT-ONCE: new order line {claim} backs {ids}")
        assert not problems, "\n".join(problems)


async def read_money(api: Api) -> Money:
    """The ledger, the order lines and the orders, read through the app's own session factory."""
    async with api.app.state.sessions() as session:
        conn = await session.connection()
        rows = (await conn.execute(sql_select(LEDGER).order_by(LEDGER.c.id))).mappings().all()
        lines = (await session.exec(select(OrderLine))).all()
        orders = (await session.exec(select(Order))).all()
    return Money(
        entries=tuple(LedgerRow(**row) for row in rows),
        paid={(li.order_id, li.line_id): li.paid_amount for li in lines},
        shipping_fee={o.order_id: o.shipping_fee for o in orders},
    )


async def outbox_events(api: Api, type_: str) -> list[CloudEvent]:
    """Every event of this type the app queued in its outbox, oldest first."""
    async with api.app.state.sessions() as session:
        rows = (await session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id)))).all()
    return [e for e in (CloudEvent.from_bytes(r.payload) for r in rows) if e.type == type_]


def payout_result(task: dict[str, Any], status: str, **fields: Any) -> CloudEvent:
    """payout-worker's result for a cashback task: `payouts.payout.<paid|failed>.v1`."""
    payout_id = f"po-{task['id']}"
    data = PayoutResult(
        payout_id=payout_id,
        cashback_task_id=task["id"],
        order_id=task["order_id"],
        amount=Decimal(task["amount"]),
        status=status,
        out_biz_no=payout_id,
        **fields,
    )
    return envelope(
        source="/payout-worker", type=f"payouts.payout.{status}.v1", subject=payout_id, data=data, at=NOW
    )


def signed(api: Api, event: CloudEvent) -> CloudEvent:
    """A payout result as payout-worker sends it: signed with the result key case-api trusts (in
    development, the pair in its data folder)."""
    signer = result_signer(None, api.app.state.settings.data_dir)
    data = signer.sign(PayoutResult.model_validate(event.data)).model_dump(mode="json")
    return event.model_copy(update={"data": data})


async def deliver_payout(api: Api, task: dict[str, Any], status: str, **fields: Any) -> None:
    """Publish a payout result for the task, signed, and wait until case-api's consumer has handled it."""
    if status == "paid":
        fields.setdefault("paid_at", NOW)
    else:
        fields.setdefault("failure_code", "PAYEE_NOT_EXIST")
    event = signed(api, payout_result(task, status, **fields))
    runner = api.app.state.consumers[0]
    before = runner.processed + runner.dead_lettered
    await api.bus.publish(topics.PAYOUT_RESULTS, task["id"], event.to_bytes())
    for _ in range(250):
        if runner.processed + runner.dead_lettered > before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the payout result for {task['id']} was not consumed")


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 15) -> Any:
    """The check's first truthy answer, polled every 50 ms."""
    for _ in range(int(seconds / 0.05)):
        if result := await check():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("not in time")


async def deliver(api: Api, *events: CloudEvent) -> None:
    """Publish logistics-watcher's parcel events and alerts; wait until case-api's consumer has handled
    them, none dead-lettered."""
    runner = api.app.state.consumers[0]
    before = runner.processed + runner.dead_lettered

    async def done() -> bool:
        return bool(runner.processed + runner.dead_lettered >= before + len(events))

    for event in events:
        topic = topics.ALERTS if event.type.startswith("logistics.alert.") else topics.PARCELS
        await api.bus.publish(topic, event.data["tracking_no"], event.to_bytes())
    await eventually(done)
    assert runner.dead_lettered == 0
