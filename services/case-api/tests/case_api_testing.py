"""Test support for case-api: a running app with a frozen clock, keys per role, and factories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import case_api
import httpx
from aftersales_shared.bus import Bus
from aftersales_shared.bus.embedded import EmbeddedBus
from aftersales_shared.clock import FrozenClock
from aftersales_shared.migrations import upgrade
from aftersales_shared.testing import RunningService, make_keys, serve
from case_api.config import Settings
from case_api.main import create_app

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


JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64


def image(n: int) -> bytes:
    """A distinct tiny JPEG per n (distinct sha256)."""
    return JPEG + n.to_bytes(4, "big")
