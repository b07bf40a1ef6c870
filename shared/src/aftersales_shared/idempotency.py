"""Idempotency-Key for POSTs that create things: a replay returns the first response (a refusal
too); the same key with another body is a 409."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import Column, Text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from .auth import Principal
from .problems import PROBLEM_JSON, Problem, as_problem, problem_body


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"

    key_id: str = Field(primary_key=True)  # the API key that sent it: keys are per client
    idempotency_key: str = Field(primary_key=True, max_length=200)
    request_hash: str
    status_code: int
    media_type: str
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(record: IdempotencyRecord, fingerprint: str) -> JSONResponse:
    if record.request_hash != fingerprint:
        raise Problem(
            409,
            "idempotency_key_reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request",
        )
    return JSONResponse(
        json.loads(record.body),
        status_code=record.status_code,
        media_type=record.media_type,
        headers={"Idempotent-Replayed": "true"},
    )


async def idempotent(
    session: AsyncSession,
    principal: Principal,
    key: str | None,
    fingerprint: str,
    now: datetime,
    produce: Callable[[], Awaitable[tuple[int, Any]]],
) -> JSONResponse:
    """Run `produce` (which only flushes) and commit once; with a key, store and replay the answer."""
    if key is not None:
        if not 0 < len(key) <= 200:
            raise Problem(
                400, "invalid_idempotency_key", "Invalid Idempotency-Key", "use 1 to 200 characters"
            )
        if (stored := await session.get(IdempotencyRecord, (principal.key_id, key))) is not None:
            return _replay(stored, fingerprint)
    try:
        status, payload = await produce()
        media_type = "application/json"
    except Exception as error:
        refusal = as_problem(error)
        if key is None or refusal is None or refusal.status >= 500:
            raise
        await session.rollback()  # a refusal changes nothing, but its answer is remembered
        status, payload, media_type = refusal.status, problem_body(refusal), PROBLEM_JSON
    if key is not None:
        session.add(
            IdempotencyRecord(
                key_id=principal.key_id,
                idempotency_key=key,
                request_hash=fingerprint,
                status_code=status,
                media_type=media_type,
                body=json.dumps(payload, default=str),
                created_at=now,
            )
        )
    try:
        await session.commit()
    except IntegrityError:
        # A concurrent request with the same key won: answer as it did.
        await session.rollback()
        stored = await session.get(IdempotencyRecord, (principal.key_id, key or ""))
        if stored is None:
            raise
        return _replay(stored, fingerprint)
    return JSONResponse(payload, status_code=status, media_type=media_type)
