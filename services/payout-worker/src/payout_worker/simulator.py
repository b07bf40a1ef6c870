"""The payment-provider simulator (default port 8009): a batch transfer API with an idempotency key
(`out_biz_no`) per transfer, like Alipay's. It records every transfer it executed in a SQLite file and
shows them, so tests can prove nothing was paid twice.

Tell it how to misbehave with `PUT /admin/behaviour`: slow (`latency_ms`), definite failures (`fault:
fail`, `fail_accounts`, `max_amount`), timeouts (`fault: timeout`: the call hangs), ambiguous answers
(`fault: system_error`: SYSTEM_ERROR per transfer; `fault: http_500`). `fault_executes` says whether an
ambiguous call executed its transfers before answering; `fault_calls` limits the fault to that many calls.

    payout-simulator [serve] [--host 127.0.0.1] [--port 8009] [--db DATA_DIR/payout-simulator.db]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .providers.base import MIN_AMOUNT

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    out_biz_no TEXT PRIMARY KEY, amount TEXT NOT NULL, payee_account TEXT NOT NULL, payee_name TEXT NOT NULL,
    title TEXT NOT NULL, remark TEXT NOT NULL, status TEXT NOT NULL, code TEXT, order_id TEXT NOT NULL,
    executed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, out_biz_no TEXT NOT NULL, answer TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
Fault = Literal["none", "fail", "timeout", "system_error", "http_500"]


class Behaviour(BaseModel):
    latency_ms: int = Field(0, ge=0, description="every call waits this long first")
    fault: Fault = "none"
    fault_executes: bool = Field(
        False, description="timeout/system_error/http_500: execute, then answer badly"
    )
    fault_calls: int | None = Field(None, ge=1, description="the fault applies to this many transfer calls")
    fail_code: str = "PAYEE_NOT_EXIST"
    hang_seconds: float = Field(60.0, ge=0, description="how long a timed-out call hangs")
    query_fault: Literal["none", "system_error", "timeout"] = "none"
    fail_accounts: list[str] = Field(default_factory=list, description="always PAYEE_NOT_EXIST")
    max_amount: Decimal | None = Field(None, description="above it: EXCEED_LIMIT_SM_AMOUNT")


class TransferIn(BaseModel):
    out_biz_no: str = Field(min_length=1, max_length=64)
    amount: Decimal
    payee_account: str
    payee_name: str
    title: str = ""
    remark: str = ""


class BatchIn(BaseModel):
    transfers: list[TransferIn] = Field(max_length=1000)


class QueryIn(BaseModel):
    out_biz_nos: list[str] = Field(max_length=1000)


class Ledger:
    """The simulator's own record, one SQLite connection guarded by a lock (used from threads)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.sequence = self._db.execute("SELECT COUNT(*) FROM transfers").fetchone()[0]

    def execute(
        self, transfers: Sequence[TransferIn], behaviour: Behaviour, fail_all: bool, answer: str
    ) -> list[dict[str, Any]]:
        """Execute each transfer at most once per out_biz_no; a repeat gets the first answer."""
        now = datetime.now(UTC).isoformat()
        out = []
        with self._lock, self._transaction():
            for t in transfers:
                row = self._row(t.out_biz_no)
                if row is None:
                    code = self._refusal(t, behaviour, fail_all)
                    self.sequence += 1
                    row = {
                        "out_biz_no": t.out_biz_no,
                        "amount": f"{t.amount:.2f}",
                        "payee_account": t.payee_account,
                        "payee_name": t.payee_name,
                        "title": t.title,
                        "remark": t.remark,
                        "status": "FAIL" if code else "SUCCESS",
                        "code": code,
                        "order_id": f"sim{self.sequence:012d}",
                        "executed_at": now,
                    }
                    self._db.execute(
                        f"INSERT INTO transfers VALUES ({', '.join('?' * len(row))})", tuple(row.values())
                    )
                elif (row["amount"], row["payee_account"], row["payee_name"]) != (
                    f"{t.amount:.2f}",
                    t.payee_account,
                    t.payee_name,
                ):
                    row = {
                        **row,
                        "status": "FAIL",
                        "code": "OUT_BIZ_NO_CONFLICT",
                    }  # not the identical request
                self._note(t.out_biz_no, "conflict" if row["code"] == "OUT_BIZ_NO_CONFLICT" else answer, now)
                out.append(row)
        return out

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _note(self, out_biz_no: str, answer: str, at: str) -> None:
        self._db.execute(
            "INSERT INTO calls (kind, out_biz_no, answer, at) VALUES ('transfer', ?, ?, ?)",
            (out_biz_no, answer, at),
        )

    def refuse(self, transfers: Sequence[TransferIn], answer: str) -> None:
        """Note calls that were answered without executing anything."""
        now = datetime.now(UTC).isoformat()
        with self._lock, self._transaction():
            for t in transfers:
                self._note(t.out_biz_no, answer, now)

    @staticmethod
    def _refusal(t: TransferIn, behaviour: Behaviour, fail_all: bool) -> str | None:
        if t.amount < MIN_AMOUNT:
            return "INVALID_PARAMETER"
        if t.payee_account in behaviour.fail_accounts:
            return "PAYEE_NOT_EXIST"
        if behaviour.max_amount is not None and t.amount > behaviour.max_amount:
            return "EXCEED_LIMIT_SM_AMOUNT"
        return behaviour.fail_code if fail_all else None

    def _row(self, out_biz_no: str) -> dict[str, Any] | None:
        cursor = self._db.execute("SELECT * FROM transfers WHERE out_biz_no = ?", (out_biz_no,))
        row = cursor.fetchone()
        return None if row is None else dict(zip([c[0] for c in cursor.description], row, strict=True))

    def query(self, out_biz_nos: Sequence[str]) -> list[dict[str, Any]]:
        now = datetime.now(UTC).isoformat()
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT INTO calls (kind, out_biz_no, answer, at) VALUES ('query', ?, '', ?)",
                [(n, now) for n in out_biz_nos],
            )
            return [self._row(n) or {"out_biz_no": n, "status": "NOT_FOUND"} for n in out_biz_nos]

    def transfers(self) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM transfers ORDER BY executed_at, out_biz_no")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def stats(self) -> dict[str, int]:
        with self._lock:
            one = lambda sql: self._db.execute(sql).fetchone()[0]  # noqa: E731
            return {
                "executed": one("SELECT COUNT(*) FROM transfers WHERE status = 'SUCCESS'"),
                "failed": one("SELECT COUNT(*) FROM transfers WHERE status = 'FAIL'"),
                "transfer_items": one("SELECT COUNT(*) FROM calls WHERE kind = 'transfer'"),
                "query_items": one("SELECT COUNT(*) FROM calls WHERE kind = 'query'"),
                "conflicts": one("SELECT COUNT(*) FROM calls WHERE answer = 'conflict'"),
            }

    def reset(self) -> None:
        with self._lock:
            self._db.executescript("DELETE FROM transfers; DELETE FROM calls;")

    def close(self) -> None:
        self._db.close()


def _answer(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("out_biz_no", "status", "code", "order_id", "amount", "executed_at")}


def create_simulator(db_path: Path, behaviour: Behaviour | None = None) -> FastAPI:
    state: dict[str, Any] = {
        "behaviour": behaviour or Behaviour(),
        "in_flight": 0,
        "transfer_calls": 0,
        "query_calls": 0,
    }

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["ledger"] = Ledger(db_path)
        yield
        state["ledger"].close()

    app = FastAPI(title="payment-provider simulator", version="1.0.0", lifespan=lifespan, description=__doc__)

    def fault_now() -> Fault:
        b: Behaviour = state["behaviour"]
        if b.fault == "none":
            return "none"
        if b.fault_calls is not None:
            remaining = b.fault_calls - 1
            state["behaviour"] = b.model_copy(
                update={"fault_calls": remaining} if remaining else {"fault": "none", "fault_calls": None}
            )
        return b.fault

    @app.post(
        "/v1/batch-transfers", summary="Transfer a batch; out_biz_no is each transfer's idempotency key"
    )
    async def batch_transfer(body: BatchIn) -> JSONResponse:
        state["in_flight"] += 1
        state["transfer_calls"] += 1
        try:
            behaviour: Behaviour = state["behaviour"]
            await asyncio.sleep(behaviour.latency_ms / 1000)
            fault = fault_now()
            ledger: Ledger = state["ledger"]
            if fault in ("timeout", "system_error", "http_500") and not behaviour.fault_executes:
                await asyncio.to_thread(ledger.refuse, body.transfers, f"{fault} (not executed)")
                return await _bad_answer(fault, body, behaviour)
            rows = await asyncio.to_thread(
                ledger.execute, body.transfers, behaviour, fault == "fail", fault if fault != "none" else "ok"
            )
            if fault in ("timeout", "system_error", "http_500"):
                return await _bad_answer(fault, body, behaviour)
            return JSONResponse({"results": [_answer(r) for r in rows]})
        finally:
            state["in_flight"] -= 1

    async def _bad_answer(fault: Fault, body: BatchIn, behaviour: Behaviour) -> JSONResponse:
        if fault == "timeout":
            await asyncio.sleep(behaviour.hang_seconds)
            return JSONResponse({"error": "gateway timeout"}, status_code=504)
        if fault == "http_500":
            return JSONResponse({"error": "internal error"}, status_code=500)
        return JSONResponse(
            {
                "results": [
                    {"out_biz_no": t.out_biz_no, "status": "SYSTEM_ERROR", "code": "SYSTEM_ERROR"}
                    for t in body.transfers
                ]
            }
        )

    @app.post("/v1/transfers/query", summary="The state of each out_biz_no: SUCCESS, FAIL or NOT_FOUND")
    async def query(body: QueryIn) -> JSONResponse:
        state["query_calls"] += 1
        behaviour: Behaviour = state["behaviour"]
        await asyncio.sleep(behaviour.latency_ms / 1000)
        if behaviour.query_fault == "timeout":
            await asyncio.sleep(behaviour.hang_seconds)
        if behaviour.query_fault != "none":
            return JSONResponse(
                {"results": [{"out_biz_no": n, "status": "SYSTEM_ERROR"} for n in body.out_biz_nos]}
            )
        rows = await asyncio.to_thread(state["ledger"].query, body.out_biz_nos)
        return JSONResponse({"results": [_answer(r) for r in rows]})

    @app.get("/admin/behaviour", response_model=Behaviour)
    async def get_behaviour() -> Behaviour:
        return state["behaviour"]

    @app.put(
        "/admin/behaviour", response_model=Behaviour, summary="Be slow, fail, time out or answer ambiguously"
    )
    async def set_behaviour(body: Behaviour) -> Behaviour:
        state["behaviour"] = body
        return body

    @app.get("/admin/transfers", summary="Every transfer executed, one row per out_biz_no")
    async def transfers() -> dict[str, Any]:
        rows = await asyncio.to_thread(state["ledger"].transfers)
        return {"transfers": rows, "count": len(rows)}

    @app.get("/admin/stats")
    async def stats() -> dict[str, int]:
        counts = await asyncio.to_thread(state["ledger"].stats)
        return {
            **counts,
            "in_flight": state["in_flight"],
            "transfer_calls": state["transfer_calls"],
            "query_calls": state["query_calls"],
        }

    @app.post("/admin/reset", summary="Forget behaviour and records")
    async def reset() -> dict[str, str]:
        await asyncio.to_thread(state["ledger"].reset)
        state.update(behaviour=Behaviour(), transfer_calls=0, query_calls=0)
        return {"status": "reset"}

    @app.get("/healthz")
    @app.get("/readyz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "payout-simulator"}

    return app


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    data_dir = Path(os.environ.get("DATA_DIR", ".data"))
    parser = argparse.ArgumentParser(prog="payout-simulator", description="the payment-provider simulator")
    parser.add_argument("command", nargs="?", choices=["serve"], default="serve", help="(the only one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PAYOUT_SIMULATOR_PORT", "8009")))
    parser.add_argument("--db", type=Path, default=data_dir / "payout-simulator.db")
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)
    app = create_simulator(args.db, Behaviour(latency_ms=args.latency_ms))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
