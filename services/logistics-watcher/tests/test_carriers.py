"""The carrier adapter layer: Kuaidi100's state codes mapped to the normalised statuses; raw payloads."""

from __future__ import annotations

import pytest
from logistics_watcher.carriers import UnknownCarrierStatus, kuaidi100, normalise
from watcher_testing import Watcher, scan


class TestKuaidi100Mapping:
    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("0", "in_transit"),  # 在途
            ("1", "picked_up"),  # 揽收
            ("2", "exception"),  # 疑难
            ("3", "delivered"),  # 签收
            ("4", "returned"),  # 退签
            ("5", "out_for_delivery"),  # 派件
            ("6", "returning"),  # 退回
            ("14", "returning"),  # 拒签: refused at the door, on its way back
            ("101", "created"),
            ("103", "picked_up"),
            ("1002", "in_transit"),
            ("204", "delivery_failed"),
            ("501", "out_for_delivery"),
            ("13", "exception"),
        ],
    )
    def test_state_codes(self, code: str, status: str) -> None:
        assert kuaidi100(code)[0] == status

    @pytest.mark.parametrize(
        ("code", "signed_by"),
        [
            ("301", "recipient"),  # 本人签收
            ("303", "agent"),  # 代签
            ("304", "station"),  # 投柜或驿站签收
            ("3", None),  # 签收, by whom not said
        ],
    )
    def test_sign_off_sub_states_say_who_signed(self, code: str, signed_by: str | None) -> None:
        assert kuaidi100(code) == ("delivered", signed_by)

    def test_an_unlisted_sub_state_behaves_as_its_main_state(self) -> None:
        assert kuaidi100("210") == ("exception", None)
        assert kuaidi100("305") == ("delivered", None)

    @pytest.mark.parametrize("code", ["9", "99", "abc", "", "7777"])
    def test_unknown_codes_are_refused(self, code: str) -> None:
        with pytest.raises(UnknownCarrierStatus):
            kuaidi100(code)

    def test_only_known_formats(self) -> None:
        with pytest.raises(UnknownCarrierStatus):
            normalise("cainiao", "3")


class TestRawCarrierPayloads:
    async def test_a_raw_kuaidi100_sign_off_is_mapped(self, watcher: Watcher) -> None:
        event = scan(carrier_format="kuaidi100", carrier_status="304")
        del event["status"]
        assert (await watcher.send(event))["accepted"] == 1
        parcel = await watcher.parcel()
        assert (parcel["status"], parcel["signed_by"]) == ("delivered", "station")
        assert parcel["history"][0]["carrier_status"] == "304"

    async def test_numeric_codes_and_an_agreeing_status_are_accepted(self, watcher: Watcher) -> None:
        event = scan("in_transit", carrier_format="kuaidi100", carrier_status=0)
        assert (await watcher.send(event))["accepted"] == 1
        assert (await watcher.parcel())["status"] == "in_transit"

    @pytest.mark.parametrize(
        "fields",
        [
            {"carrier_format": "kuaidi100", "carrier_status": "3", "status": "in_transit"},  # disagree
            {"carrier_format": "kuaidi100", "carrier_status": "999"},  # unknown code
            {"carrier_status": "3"},  # no format
            {"carrier_format": "cainiao", "carrier_status": "3"},  # no adapter
        ],
    )
    async def test_raw_payloads_that_cannot_be_mapped_are_rejected(
        self, watcher: Watcher, fields: dict[str, str]
    ) -> None:
        event = {k: v for k, v in scan(**fields).items() if k != "status" or "status" in fields}
        response = await watcher.call(
            "POST", "/v1/tracking-events", "warehouse", json={"events": [scan(), event]}
        )
        assert response.status_code == 202
        assert [r["index"] for r in response.json()["rejected"]] == [1]
