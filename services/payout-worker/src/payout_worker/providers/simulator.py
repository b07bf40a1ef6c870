"""The adapter for the local provider simulator (payout_worker.simulator): one call per batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from .base import Outcome, RateLimiter, Transfer, TransferResult, unknown

OUTCOMES = {"SUCCESS": Outcome.paid, "FAIL": Outcome.failed, "NOT_FOUND": Outcome.not_found}


class SimulatorProvider:
    name = "simulator"
    max_batch = 1000
    fan_out = False

    def __init__(
        self, base_url: str, *, timeout: float, qps: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._limiter = RateLimiter(qps)

    async def transfer(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        body = {
            "transfers": [
                {
                    "out_biz_no": t.out_biz_no,
                    "amount": f"{t.amount:.2f}",
                    "payee_account": t.payee_account,
                    "payee_name": t.payee_name,
                    "title": t.title,
                    "remark": t.remark,
                }
                for t in transfers
            ]
        }
        return await self._call("/v1/batch-transfers", body, [t.out_biz_no for t in transfers])

    async def query(self, out_biz_nos: Sequence[str]) -> list[TransferResult]:
        return await self._call("/v1/transfers/query", {"out_biz_nos": list(out_biz_nos)}, out_biz_nos)

    async def _call(self, path: str, body: dict[str, Any], keys: Sequence[str]) -> list[TransferResult]:
        await self._limiter.wait()
        try:
            response = await self._client.post(path, json=body)
        except httpx.TimeoutException as exc:
            return unknown(keys, "TIMEOUT", f"no answer in time: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return unknown(keys, "TRANSPORT_ERROR", f"{type(exc).__name__}: {exc}")
        if response.status_code != 200:
            return unknown(keys, f"HTTP_{response.status_code}", response.text[:200])
        answered = {r["out_biz_no"]: _result(r) for r in response.json().get("results", [])}
        return [answered.get(k) or unknown([k], "NO_ANSWER", "the provider left it out")[0] for k in keys]

    async def aclose(self) -> None:
        await self._client.aclose()


def _result(row: dict[str, Any]) -> TransferResult:
    outcome = OUTCOMES.get(row.get("status", ""), Outcome.unknown)  # SYSTEM_ERROR and the like
    return TransferResult(
        row["out_biz_no"],
        outcome,
        provider_order_id=row.get("order_id"),
        code=row.get("code") or (row.get("status") if outcome is Outcome.unknown else None),
        paid_at=datetime.fromisoformat(row["executed_at"]) if outcome is Outcome.paid else None,
    )
