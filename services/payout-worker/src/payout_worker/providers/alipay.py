"""Alipay fund transfer (`alipay.fund.trans.uni.transfer`) and its status query
(`alipay.fund.trans.common.query`), over httpx with RSA2 (SHA256withRSA) signing from `cryptography`.

Two ways to know Alipay's key: public-key mode (its public key, configured) and public-key certificate
mode (公钥证书, alipay_certs.py), which fund transfers require in production: each request then carries
`app_cert_sn` and `alipay_root_cert_sn`, and answers are verified with the key of Alipay's certificate.

The maintained Alipay SDKs on PyPI (alipay-sdk-python, python-alipay-sdk) are synchronous (urllib) and
bring pycryptodome, so this adapter speaks the gateway protocol itself; it is a page of code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx
from aftersales_shared.clock import SHANGHAI, Clock
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .alipay_certs import AlipayCertificates, load_certificates
from .base import MIN_AMOUNT, Outcome, RateLimiter, Transfer, TransferResult, unknown

log = logging.getLogger(__name__)
TRANSFER = "alipay.fund.trans.uni.transfer"
QUERY = "alipay.fund.trans.common.query"
PRODUCT = {"product_code": "TRANS_ACCOUNT_NO_PWD", "biz_scene": "DIRECT_TRANSFER"}
# Answers that do not say whether money moved: query, then send the identical request again.
AMBIGUOUS_SUB_CODES = frozenset(
    {"SYSTEM_ERROR", "aop.SYSTEM_ERROR", "isp.unknow-error", "PAYMENT_INFO_INCONSISTENCY"}
)
USER_ID = re.compile(r"2088\d{12}")


def sign_content(params: dict[str, str]) -> str:
    """Alipay's string to sign: every non-empty parameter but `sign`, sorted by name, as k=v&k=v."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def rsa2_sign(key: rsa.RSAPrivateKey, content: str) -> str:
    return base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(key: rsa.RSAPublicKey, content: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature), content.encode(), padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(_pem(pem, "PRIVATE KEY").encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the Alipay app key must be an RSA key (RSA2)")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(_pem(pem, "PUBLIC KEY").encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the Alipay public key must be an RSA key")
    return key


def _pem(text: str, kind: str) -> str:
    """Accept a PEM or the bare base64 body that Alipay's console shows."""
    text = text.strip()
    return text if text.startswith("-----") else f"-----BEGIN {kind}-----\n{text}\n-----END {kind}-----\n"


def _raw_node(text: str, node: str) -> str | None:
    """The response node exactly as sent: Alipay signs those bytes, not a re-serialisation."""
    at = text.find(f'"{node}"')
    if at < 0:
        return None
    start = text.index(":", at + len(node) + 2) + 1
    while text[start].isspace():
        start += 1
    _, end = json.JSONDecoder().raw_decode(text, start)
    return text[start:end]


class AlipayProvider:
    name = "alipay"
    max_batch = 1000
    fan_out = True  # uni.transfer is one transfer per call: a batch fans out under the QPS limit

    def __init__(
        self,
        *,
        gateway: str,
        app_id: str,
        private_key_pem: str,
        alipay_public_key_pem: str | None,
        clock: Clock,
        timeout: float,
        qps: float,
        order_title: str = "售后返现",
        transport: httpx.AsyncBaseTransport | None = None,
        certificates: tuple[str, str, str] | None = None,
    ) -> None:
        """`certificates`: the PEMs of the app's certificate, Alipay's, and Alipay's root (certificate
        mode); checked here, so that a wrong one stops the start rather than every payout."""
        self._gateway = gateway
        self._app_id = app_id
        self._key = load_private_key(private_key_pem)
        self._certs: AlipayCertificates | None = None
        self._alipay_key: rsa.RSAPublicKey | None = None
        if certificates is not None:
            app_cert, alipay_cert, root_cert = certificates
            self._certs = load_certificates(
                app_cert=app_cert,
                alipay_cert=alipay_cert,
                root_cert=root_cert,
                app_public_key=self._key.public_key(),
                now=clock.now(),
            )
            self._alipay_key = self._certs.alipay_public_key
        elif alipay_public_key_pem:
            self._alipay_key = load_public_key(alipay_public_key_pem)
        self._clock = clock
        self._title = order_title
        self._limiter = RateLimiter(qps)
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    def __repr__(self) -> str:  # never show the key
        return f"AlipayProvider(app_id={self._app_id!r}, gateway={self._gateway!r})"

    async def transfer(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        return list(await asyncio.gather(*(self._transfer_one(t) for t in transfers)))

    async def query(self, out_biz_nos: Sequence[str]) -> list[TransferResult]:
        return list(await asyncio.gather(*(self._query_one(n) for n in out_biz_nos)))

    async def aclose(self) -> None:
        await self._client.aclose()

    def biz_content(self, t: Transfer) -> dict[str, Any]:
        identity_type = "ALIPAY_USER_ID" if USER_ID.fullmatch(t.payee_account) else "ALIPAY_LOGON_ID"
        payee = {"identity": t.payee_account, "identity_type": identity_type, "name": t.payee_name}
        return {
            "out_biz_no": t.out_biz_no,
            "trans_amount": f"{t.amount:.2f}",
            **PRODUCT,
            "order_title": t.title or self._title,
            "payee_info": payee,
            "remark": t.remark,
        }

    def signed_params(self, method: str, biz: dict[str, Any]) -> dict[str, str]:
        params = {
            "app_id": self._app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self._clock.now().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
        }
        if self._certs is not None:  # signed with the rest
            params["app_cert_sn"] = self._certs.app_cert_sn
            params["alipay_root_cert_sn"] = self._certs.alipay_root_cert_sn
        params["sign"] = rsa2_sign(self._key, sign_content(params))
        return params

    async def _transfer_one(self, t: Transfer) -> TransferResult:
        if t.amount < MIN_AMOUNT:
            return TransferResult(
                t.out_biz_no,
                Outcome.failed,
                code="AMOUNT_BELOW_MINIMUM",
                message=f"Alipay transfers start at {MIN_AMOUNT} yuan",
            )
        answer = await self._call(TRANSFER, self.biz_content(t), t.out_biz_no)
        if isinstance(answer, TransferResult):
            return answer
        status = answer.get("status")
        if status == "SUCCESS":
            return self._paid(t.out_biz_no, answer, "trans_date")
        if status == "FAIL":
            return TransferResult(
                t.out_biz_no,
                Outcome.failed,
                code=answer.get("sub_code") or "FAIL",
                message=answer.get("sub_msg") or answer.get("msg"),
            )
        return TransferResult(
            t.out_biz_no, Outcome.unknown, answer.get("order_id"), code=status or "NO_STATUS"
        )

    async def _query_one(self, out_biz_no: str) -> TransferResult:
        answer = await self._call(QUERY, {"out_biz_no": out_biz_no, **PRODUCT}, out_biz_no)
        if isinstance(answer, TransferResult):
            return answer
        status = answer.get("status")
        if status == "SUCCESS":
            return self._paid(out_biz_no, answer, "pay_date")
        if status in ("FAIL", "CLOSED", "REFUND"):
            return TransferResult(
                out_biz_no,
                Outcome.failed,
                answer.get("order_id"),
                code=answer.get("error_code") or status,
                message=answer.get("fail_reason"),
            )
        return TransferResult(out_biz_no, Outcome.unknown, answer.get("order_id"), code=status or "NO_STATUS")

    @staticmethod
    def _paid(out_biz_no: str, answer: dict[str, Any], date_field: str) -> TransferResult:
        paid_at = answer.get(date_field)
        return TransferResult(
            out_biz_no,
            Outcome.paid,
            answer.get("order_id"),
            answer.get("pay_fund_order_id"),
            paid_at=datetime.strptime(paid_at, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
            if paid_at
            else None,
        )

    async def _call(
        self, method: str, biz: dict[str, Any], out_biz_no: str
    ) -> dict[str, Any] | TransferResult:
        """The verified response node of a successful call, or the result that a failed call means."""
        await self._limiter.wait()
        try:
            response = await self._client.post(self._gateway, data=self.signed_params(method, biz))
        except httpx.TimeoutException:
            return unknown([out_biz_no], "TIMEOUT", "Alipay did not answer in time")[0]
        except httpx.HTTPError as exc:
            return unknown([out_biz_no], "TRANSPORT_ERROR", type(exc).__name__)[0]
        if response.status_code != 200:
            return unknown([out_biz_no], f"HTTP_{response.status_code}", response.text[:200])[0]
        node_name = method.replace(".", "_") + "_response"
        try:
            body = response.json()
            raw, signature = _raw_node(response.text, node_name), body.get("sign")
            node: dict[str, Any] = json.loads(raw) if raw else {}
        except (ValueError, AttributeError):
            return unknown([out_biz_no], "UNREADABLE_RESPONSE", response.text[:200])[0]
        signed_with = body.get("alipay_cert_sn")
        if self._certs is not None and signed_with and signed_with != self._certs.alipay_cert_sn:
            # Alipay renewed its certificate: nothing it says can be verified until the new one is set.
            log.error(
                "Alipay signs with certificate %s, not the configured %s: download the new one "
                "(alipay.open.app.alipaycert.download) into PAYOUT_WORKER_ALIPAY_PUBLIC_CERT",
                str(signed_with)[:40],
                self._certs.alipay_cert_sn,
                extra={"payout_id": out_biz_no},
            )
            return unknown(
                [out_biz_no], "ALIPAY_CERT_CHANGED", "the answer is signed with another certificate"
            )[0]
        if self._alipay_key is not None and not (
            raw and signature and rsa2_verify(self._alipay_key, raw, signature)
        ):
            log.error("Alipay response signature does not verify", extra={"payout_id": out_biz_no})
            return unknown([out_biz_no], "INVALID_RESPONSE_SIGNATURE", "the answer is not signed by Alipay")[
                0
            ]
        code, sub_code = node.get("code"), node.get("sub_code", "")
        if code == "10000":
            return node
        if method == QUERY and sub_code == "ORDER_NOT_EXIST":
            return TransferResult(out_biz_no, Outcome.not_found, code=sub_code)
        if method == TRANSFER and code == "40004" and sub_code not in AMBIGUOUS_SUB_CODES:
            return TransferResult(
                out_biz_no, Outcome.failed, code=sub_code or "40004", message=node.get("sub_msg")
            )
        # 20000 (service unavailable), SYSTEM_ERROR, and our own set-up errors (4000x): nothing definite.
        log.warning("Alipay answered %s %s", code, sub_code, extra={"payout_id": out_biz_no})
        return unknown([out_biz_no], sub_code or str(code), node.get("sub_msg") or node.get("msg") or "")[0]
