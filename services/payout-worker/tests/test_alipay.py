"""The Alipay adapter against a local fake Alipay gateway (HTTP on 127.0.0.1) that checks every request's
RSA2 signature with the app's public key and signs its answers with "Alipay's" key."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aftersales_shared.clock import FrozenClock
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import Response
from payout_testing import NOW, approved, free_port, running_worker
from payout_worker.config import Settings
from payout_worker.providers import Outcome, Transfer
from payout_worker.providers.alipay import (
    QUERY,
    TRANSFER,
    AlipayProvider,
    load_public_key,
    rsa2_sign,
    rsa2_verify,
    sign_content,
)


def new_key() -> tuple[rsa.RSAPrivateKey, str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return key, private, public


APP_KEY, APP_PRIVATE, APP_PUBLIC = new_key()
ALIPAY_KEY, ALIPAY_PRIVATE, ALIPAY_PUBLIC = new_key()


@dataclass
class FakeAlipay:
    """Alipay's gateway as far as these two methods go: out_biz_no is the idempotency key."""

    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    executed: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: list[str] = field(default_factory=list)  # what the next transfer calls do: ok, system_error, ...
    tamper: bool = False
    signing_key: rsa.RSAPrivateKey = ALIPAY_KEY  # what it signs answers with
    app_public: str = APP_PUBLIC  # the key it checks requests with
    # Certificate mode: the (app_cert_sn, alipay_root_cert_sn) it requires, and the alipay_cert_sn it answers.
    cert_sns: tuple[str, str] | None = None
    alipay_cert_sn: str | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/gateway.do")
        async def gateway(request: Request) -> Response:
            params = {k: str(v) for k, v in (await request.form()).items()}
            self.requests.append(params)
            method = params["method"]
            if (
                self.cert_sns
                and (params.get("app_cert_sn"), params.get("alipay_root_cert_sn")) != self.cert_sns
            ):
                return self.answer(
                    method,
                    {
                        "code": "40002",
                        "msg": "Invalid Arguments",
                        "sub_code": "isv.cert-sn-mismatch",  # what Alipay does is refuse the call
                        "sub_msg": "证书序列号不匹配",
                    },
                )
            if not rsa2_verify(
                load_public_key(self.app_public), sign_content(params), params.get("sign", "")
            ):
                return self.answer(
                    method,
                    {
                        "code": "40002",
                        "msg": "Invalid Arguments",
                        "sub_code": "isv.invalid-signature",
                        "sub_msg": "验签出错",
                    },
                )
            biz = json.loads(params["biz_content"])
            if method == QUERY:
                done = self.executed.get(biz["out_biz_no"])
                if done is None:
                    return self.answer(
                        method,
                        {
                            "code": "40004",
                            "msg": "Business Failed",
                            "sub_code": "ORDER_NOT_EXIST",
                            "sub_msg": "转账订单不存在",
                        },
                    )
                return self.answer(
                    method,
                    {
                        "code": "10000",
                        "msg": "Success",
                        "status": "SUCCESS",
                        "order_id": done["order_id"],
                        "pay_date": "2026-11-05 17:30:01",
                    },
                )
            step = self.script.pop(0) if self.script else "ok"
            if step == "payee_not_exist":
                return self.answer(
                    method,
                    {
                        "code": "40004",
                        "msg": "Business Failed",
                        "sub_code": "PAYEE_NOT_EXIST",
                        "sub_msg": "收款账号不存在",
                    },
                )
            if step == "timeout":  # nothing executed; the answer comes after the client gave up
                await asyncio.sleep(2)
                return self.answer(method, {"code": "20000", "msg": "Service Currently Unavailable"})
            if step in ("ok", "system_error_after"):
                executed = self.executed.setdefault(
                    biz["out_biz_no"], {"order_id": f"2026{len(self.executed):012d}", "biz": biz}
                )
            if step in ("system_error", "system_error_after"):
                return self.answer(
                    method,
                    {
                        "code": "40004",
                        "msg": "Business Failed",
                        "sub_code": "SYSTEM_ERROR",
                        "sub_msg": "系统繁忙",
                    },
                )
            return self.answer(
                method,
                {
                    "code": "10000",
                    "msg": "Success",
                    "out_biz_no": biz["out_biz_no"],
                    "order_id": executed["order_id"],
                    "pay_fund_order_id": "2026fund",
                    "status": "SUCCESS",
                    "trans_date": "2026-11-05 17:30:01",
                },
            )

        return app

    def answer(self, method: str, node: dict[str, Any]) -> Response:
        raw = json.dumps(node, ensure_ascii=False)
        signature = rsa2_sign(self.signing_key, raw)
        if self.tamper:
            raw = raw.replace("SUCCESS", "SUCCESS ")
        cert = f',"alipay_cert_sn":"{self.alipay_cert_sn}"' if self.alipay_cert_sn else ""
        body = f'{{"{method.replace(".", "_")}_response":{raw}{cert},"sign":"{signature}"}}'
        return Response(body, media_type="application/json;charset=utf-8")


@asynccontextmanager
async def running_gateway() -> AsyncIterator[FakeAlipay]:
    """The fake gateway, served over HTTP on 127.0.0.1."""
    fake = FakeAlipay()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    fake.url = f"http://127.0.0.1:{port}/gateway.do"
    yield fake
    server.should_exit = True
    await task


@pytest.fixture
async def fake_alipay() -> AsyncIterator[FakeAlipay]:
    async with running_gateway() as fake:
        yield fake


def provider(
    fake: FakeAlipay, *, private: str = APP_PRIVATE, timeout: float = 1.0, qps: float = 100
) -> AlipayProvider:
    return AlipayProvider(
        gateway=fake.url,
        app_id="2021000000000001",
        private_key_pem=private,
        alipay_public_key_pem=ALIPAY_PUBLIC,
        clock=FrozenClock(NOW),
        timeout=timeout,
        qps=qps,
    )


def transfer(
    out_biz_no: str = "po_1", amount: str = "12.00", account: str = "zhangsan@example.com"
) -> Transfer:
    return Transfer(out_biz_no, Decimal(amount), account, "张三", "售后返现", "cb-1")


class TestRequests:
    async def test_a_transfer_is_signed_and_carries_the_payout_as_out_biz_no(
        self, fake_alipay: FakeAlipay
    ) -> None:
        alipay = provider(fake_alipay)
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert (result.outcome, result.provider_order_id, result.provider_fund_order_id) == (
            Outcome.paid,
            "2026000000000000",
            "2026fund",
        )
        assert result.paid_at is not None and result.paid_at.isoformat() == "2026-11-05T17:30:01+08:00"
        (request,) = fake_alipay.requests
        assert (request["method"], request["sign_type"], request["charset"], request["app_id"]) == (
            TRANSFER,
            "RSA2",
            "utf-8",
            "2021000000000001",
        )
        assert request["timestamp"] == "2026-11-05 10:00:00"  # Beijing time
        assert json.loads(request["biz_content"]) == {
            "out_biz_no": "po_1",
            "trans_amount": "12.00",
            "product_code": "TRANS_ACCOUNT_NO_PWD",
            "biz_scene": "DIRECT_TRANSFER",
            "order_title": "售后返现",
            "remark": "cb-1",
            "payee_info": {
                "identity": "zhangsan@example.com",
                "identity_type": "ALIPAY_LOGON_ID",
                "name": "张三",
            },
        }

    async def test_a_user_id_payee(self, fake_alipay: FakeAlipay) -> None:
        alipay = provider(fake_alipay)
        await alipay.transfer([transfer(account="2088102146225135")])
        await alipay.aclose()
        assert (
            json.loads(fake_alipay.requests[0]["biz_content"])["payee_info"]["identity_type"]
            == "ALIPAY_USER_ID"
        )

    def test_the_string_to_sign(self) -> None:
        assert (
            sign_content({"method": "m", "app_id": "1", "sign": "x", "empty": "", "biz_content": "{}"})
            == "app_id=1&biz_content={}&method=m"
        )

    async def test_a_request_signed_with_another_key_is_not_a_failure(self, fake_alipay: FakeAlipay) -> None:
        """Alipay refuses the signature: nothing moved, and the set-up error must not fail the payout."""
        alipay = provider(fake_alipay, private=new_key()[1])
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert (result.outcome, result.code) == (Outcome.unknown, "isv.invalid-signature")

    async def test_an_answer_whose_signature_does_not_verify_is_not_believed(
        self, fake_alipay: FakeAlipay
    ) -> None:
        fake_alipay.tamper = True
        alipay = provider(fake_alipay)
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert (result.outcome, result.code) == (Outcome.unknown, "INVALID_RESPONSE_SIGNATURE")

    async def test_amounts_below_the_minimum_are_refused_without_a_call(
        self, fake_alipay: FakeAlipay
    ) -> None:
        alipay = provider(fake_alipay)
        (result,) = await alipay.transfer([transfer(amount="0.09")])
        await alipay.aclose()
        assert (result.outcome, result.code) == (Outcome.failed, "AMOUNT_BELOW_MINIMUM")
        assert fake_alipay.requests == []

    async def test_the_qps_limit_spaces_calls(self, fake_alipay: FakeAlipay) -> None:
        alipay = provider(fake_alipay, qps=5)
        started = time.monotonic()
        await alipay.transfer([transfer(f"po_{i}") for i in range(6)])
        await alipay.aclose()
        assert time.monotonic() - started >= 1.0  # 6 calls at 5 per second


class TestAnswers:
    async def test_a_definite_failure(self, fake_alipay: FakeAlipay) -> None:
        fake_alipay.script = ["payee_not_exist"]
        alipay = provider(fake_alipay)
        (result,) = await alipay.transfer([transfer()])
        await alipay.aclose()
        assert (result.outcome, result.code, result.message) == (
            Outcome.failed,
            "PAYEE_NOT_EXIST",
            "收款账号不存在",
        )

    @pytest.mark.parametrize("step", ["system_error", "system_error_after", "timeout"])
    async def test_ambiguous_then_query_then_the_identical_request(
        self, fake_alipay: FakeAlipay, step: str
    ) -> None:
        fake_alipay.script = [step]
        alipay = provider(fake_alipay, timeout=0.5)
        (first,) = await alipay.transfer([transfer()])
        assert first.outcome is Outcome.unknown
        (queried,) = await alipay.query(["po_1"])
        if step == "system_error_after":
            assert queried.outcome is Outcome.paid
        else:
            assert queried.outcome is Outcome.not_found
            (again,) = await alipay.transfer([transfer()])
            assert again.outcome is Outcome.paid
            sent = [r["biz_content"] for r in fake_alipay.requests if r["method"] == TRANSFER]
            assert len(sent) == 2 and sent[0] == sent[1]  # the identical request, the same out_biz_no
        await alipay.aclose()
        assert list(fake_alipay.executed) == ["po_1"]


class TestThroughTheWorker:
    async def test_a_payout_paid_through_alipay(
        self, fake_alipay: FakeAlipay, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        fake_alipay.script = ["system_error"]
        settings = dict(
            provider="alipay",
            alipay_gateway=fake_alipay.url,
            alipay_app_id="2021000000000001",
            alipay_private_key=APP_PRIVATE,
            alipay_public_key=ALIPAY_PUBLIC,
        )
        async for w in running_worker(tmp_path, **settings):
            await w.deliver(approved("cb-1"))
            await w.tick()
            await w.call("POST", "/v1/batches/flush", "ops")
            await w.tick()
            assert await w.statuses() == {"cb-1": "unknown"}
            w.clock.advance(seconds=5)
            await w.tick()
            (payout,) = await w.payouts()
            assert (payout.status, payout.provider_order_id) == ("paid", "2026000000000000")
            assert list(fake_alipay.executed) == [payout.id]
            assert "BEGIN PRIVATE KEY" not in repr(w.engine.provider) + repr(w.app.state.settings)
        body = APP_PRIVATE.splitlines()[1]
        assert body not in caplog.text and body not in repr(Settings(**settings))
