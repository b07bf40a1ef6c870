"""Log lines an on-call engineer can follow: each case change names its case, order, shop and event, and
no buyer phone number or address appears in any line."""

from __future__ import annotations

import json
import logging

import pytest
from aftersales_shared.logging import JsonFormatter
from case_api_testing import Api, order_body


async def test_case_changes_are_logged_with_their_ids_and_no_buyer_data(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await api.put_order()
    case = (await api.open_case(description="电话 13812345678，地址浙江省杭州市西湖区文三路 1 号")).json()
    await api.act(case, "withdraw", "storefront")
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    changes = [line for line in lines if line["logger"] == "case_api.handlers.cases"]
    assert [line["message"] for line in changes] == [
        "case open: new → retention",
        "case withdraw: retention → withdrawn",
    ]
    assert all(
        (line["case_id"], line["order_id"], line["shop_id"]) == (case["id"], "o-1", "shop-a")
        and line["event_id"].startswith("evt_")
        for line in changes
    )
    buyer = order_body()["buyer"]
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert buyer["phone"] not in text and buyer["address"][6:] not in text
