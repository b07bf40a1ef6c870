"""case-api signs every cashback approval it emits (aftersales_shared.signing), with the configured key, or
in development with the data folder's pair, made on first start; the key never reaches a log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aftersales_shared.events import CashbackApproved
from aftersales_shared.signing import (
    DEV_PUBLIC_FILE,
    ApprovalVerifier,
    key_id,
    parse_public_keys,
    private_text,
)
from case_api.config import Settings
from case_api_testing import Api, order_body, outbox_events, running_api
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

APPROVED = "aftersales.cashback.approved.v1"
CASHBACK = {
    "order_id": "o-1",
    "line_id": "L1",
    "reason": "price_difference",
    "amount": "15.00",
    "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
}


async def approve(api: Api) -> CashbackApproved:
    await api.put_order()
    task = (await api.call("POST", "/v1/cashback-tasks", "support", json=CASHBACK)).json()
    response = await api.call("POST", f"/v1/cashback-tasks/{task['id']}/approve", "support")
    assert response.status_code == 200, response.text
    (event,) = await outbox_events(api, APPROVED)
    return CashbackApproved.model_validate(event.data)


class TestSignedApprovals:
    async def test_with_the_configured_key(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG)
        key = Ed25519PrivateKey.generate()
        settings = Settings(data_dir=tmp_path, approval_signing_key=private_text(key))
        async for api in running_api(settings, tmp_path):
            approval = await approve(api)
        assert approval.signature_key_id == key_id(key.public_key())
        assert ApprovalVerifier([key.public_key()]).problem(approval) is None
        assert not (tmp_path / DEV_PUBLIC_FILE).exists()  # no development pair beside a configured key
        assert private_text(key) not in caplog.text + repr(settings)

    async def test_in_development_with_the_data_folders_pair(self, tmp_path: Path) -> None:
        async for api in running_api(Settings(data_dir=tmp_path), tmp_path):
            assert (tmp_path / DEV_PUBLIC_FILE).exists()  # made on start, before any approval
            approval = await approve(api)
        (public,) = parse_public_keys((tmp_path / DEV_PUBLIC_FILE).read_text())
        assert ApprovalVerifier([public]).problem(approval) is None

    async def test_a_case_paid_as_cashback_is_signed_too(self, tmp_path: Path) -> None:
        """The approval a price-protection case emits when support approves it (PayAsCashback)."""
        async for api in running_api(Settings(data_dir=tmp_path), tmp_path):
            await api.put_order()  # L1: 2 × 129.00; o-2 the same shirt at 99.00 three days later
            cheaper = {**order_body()["lines"][0], "unit_price": "99.00", "paid_amount": "198.00"}
            new = order_body(
                paid_at="2026-11-04T20:00:00+08:00", shipment=None, signed_at=None, lines=[cheaper]
            )
            await api.put_order("o-2", **{k: v for k, v in new.items() if k != "shop_id"})
            opened = await api.open_case(
                "support",
                remedy="price_protection",
                reason="price_drop",
                lines=[{"line_id": "L1", "quantity": 2}],
                new_order_id="o-2",
                new_unit_price="99.00",
            )
            assert opened.status_code == 201, opened.text
            case: dict[str, Any] = opened.json()
            approved = await api.act(case, "approve")
            assert approved.status_code == 200, approved.text
            (event,) = await outbox_events(api, APPROVED)
        (public,) = parse_public_keys((tmp_path / DEV_PUBLIC_FILE).read_text())
        assert ApprovalVerifier([public]).problem(CashbackApproved.model_validate(event.data)) is None
