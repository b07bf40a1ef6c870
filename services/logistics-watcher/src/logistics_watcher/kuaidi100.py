"""Kuaidi100 (快递100)'s own protocol: subscribing each new tracking number, and taking its pushes.

Subscribing (订阅): `POST {subscribe_url}` as a form with `schema=json` and `param` = JSON of `company`,
`number`, `key` and `parameters` {`callbackurl`, `salt`, `resultv2`}; it answers {`result`, `returnCode`,
`message`}: 200 taken, 501 already subscribed (both: done); 500 (its server) is tried again later; any other
code (600/601 the key, 700/701/702 the number or company) is a refusal that retrying will not change.
Each new parcel gets a row in the ingest's own transaction; a subscriber claims due rows for a lease, sends
them, and records the answer, so a failed call or a restart leaves the row due again.

Pushing (推送): Kuaidi100 posts a form with `param` (JSON: `status` polling/shutdown/abort/updateall,
`message`, `comNew`, `lastResult` {`state`, `com`, `nu`, `data` [{`time`, `ftime`, `context`, `status`,
`statusCode`, `areaName`}]}) and `sign` = uppercase MD5(param + salt). The scans go through the same ingest
as the warehouses' events (carrier_format kuaidi100), as the parcel's shop; `shutdown` ends the
subscription (signed for); `abort` (no record for days, or a corrected company in `comNew`) subscribes the
number again after half an hour, as Kuaidi100 advises.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aftersales_shared.db import unit_of_work
from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from .carriers import kuaidi100_company
from .config import Settings
from .models import Kuaidi100Subscription, kuaidi100_subscriptions
from .sql import dialect_name, execute

log = logging.getLogger(__name__)
K = kuaidi100_subscriptions.c
BEIJING = ZoneInfo("Asia/Shanghai")
LEASE = timedelta(minutes=2)  # a claimed row not answered by then is claimed again
RESUBSCRIBE_AFTER_ABORT = timedelta(minutes=30)
CLAIM_BATCH = 50
TAKEN = {"200", "501"}  # subscribed, or subscribed already
RETRIED = {"500"}


def sign(param: str, salt: str) -> str:
    """Kuaidi100's signature of a push: the uppercase hex MD5 of param + salt."""
    return hashlib.md5((param + salt).encode()).hexdigest().upper()  # their protocol


# ---------------------------------------------------------------- subscribing


async def queue(
    session: AsyncSession, parcels: Sequence[dict[str, Any]], settings: Settings, now: datetime
) -> None:
    """A subscription row per new parcel whose carrier Kuaidi100 knows (when a key is set)."""
    if settings.kuaidi100_key is None:
        return
    rows = [
        {
            "tracking_no": p["tracking_no"],
            "carrier": p["carrier"],
            "company": company,
            "order_id": p["order_id"],
            "shop_id": p["shop_id"],
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for p in parcels
        if (company := kuaidi100_company(p["carrier"])) is not None
    ]
    if rows:
        dialect = postgresql if dialect_name(session) == "postgresql" else sqlite
        await execute(session, dialect.insert(kuaidi100_subscriptions).on_conflict_do_nothing(), rows)


async def claim(sessions: async_sessionmaker[AsyncSession], now: datetime) -> list[Kuaidi100Subscription]:
    """Due rows, leased to this subscriber until now + LEASE (committed before any call is made)."""
    due = and_(
        K.status == "pending",
        K.next_attempt_at <= now,
        or_(K.claimed_until.is_(None), K.claimed_until < now),
    )
    async with unit_of_work(sessions) as session:
        query = select(kuaidi100_subscriptions).where(due).order_by(K.next_attempt_at).limit(CLAIM_BATCH)
        if dialect_name(session) == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = [Kuaidi100Subscription(**row) for row in (await execute(session, query)).mappings()]
        if rows:
            await execute(
                session,
                update(kuaidi100_subscriptions)
                .where(K.tracking_no.in_([r.tracking_no for r in rows]))
                .values(claimed_until=now + LEASE),
            )
    return rows


@dataclass(frozen=True)
class Outcome:
    status: str  # subscribed, pending (try again), failed
    error: str | None = None


async def send(client: httpx.AsyncClient, settings: Settings, row: Kuaidi100Subscription) -> Outcome:
    assert settings.kuaidi100_key is not None
    parameters = {"callbackurl": settings.kuaidi100_callback_url or "", "resultv2": "1"}
    if settings.kuaidi100_salt is not None:
        parameters["salt"] = settings.kuaidi100_salt.get_secret_value()
    param = {
        "company": row.company,
        "number": row.tracking_no,
        "key": settings.kuaidi100_key.get_secret_value(),
        "parameters": parameters,
    }
    try:
        response = await client.post(
            settings.kuaidi100_subscribe_url,
            data={"schema": "json", "param": json.dumps(param, ensure_ascii=False)},
            timeout=10,
        )
        answer = response.json()
        code = str(answer.get("returnCode", response.status_code))
        message = str(answer.get("message", ""))[:150]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return Outcome("pending", f"{type(exc).__name__}")
    if code in TAKEN:
        return Outcome("subscribed")
    if code in RETRIED:
        return Outcome("pending", f"{code} {message}")
    return Outcome("failed", f"{code} {message}")


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 ... minutes, at most six hours."""
    return timedelta(minutes=min(2 ** (attempts - 1), 360))


async def subscribe_due(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, client: httpx.AsyncClient, now: datetime
) -> dict[str, int]:
    """Send every due subscription once; what became of them, by status."""
    if settings.kuaidi100_key is None:
        return {}
    counts: dict[str, int] = {}
    for row in await claim(sessions, now):
        outcome = await send(client, settings, row)
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "status": outcome.status,
            "attempts": attempts,
            "claimed_until": None,
            "last_error": outcome.error,
            "updated_at": now,
        }
        if outcome.status == "subscribed":
            values["subscribed_at"] = now
        if outcome.status == "pending":
            values["next_attempt_at"] = now + backoff(attempts)
        async with unit_of_work(sessions) as session:
            await execute(
                session,
                update(kuaidi100_subscriptions).where(K.tracking_no == row.tracking_no).values(**values),
            )
        log_it = log.warning if outcome.status != "subscribed" else log.info
        log_it(
            "kuaidi100 subscription %s: %s",
            outcome.status,
            outcome.error or "taken",
            extra={"tracking_no": row.tracking_no, "carrier": row.carrier, "attempts": attempts},
        )
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


# ---------------------------------------------------------------- pushes


def scans_of(push: dict[str, Any], sub: Kuaidi100Subscription) -> list[dict[str, Any]]:
    """The push's scans as tracking events of the subscribed parcel (one event id per scan, the same in
    every push, since each push carries the whole history)."""
    result = push.get("lastResult") or {}
    items = [i for i in result.get("data") or [] if isinstance(i, dict)]
    events = []
    for index, item in enumerate(items):  # newest first
        when = datetime.fromisoformat(str(item.get("ftime") or item.get("time"))).replace(tzinfo=BEIJING)
        code = item.get("statusCode") or (result.get("state") if index == 0 else None) or "0"
        fingerprint = hashlib.sha256(f"{when.isoformat()}|{item.get('context')}".encode()).hexdigest()[:24]
        events.append(
            {
                "event_id": f"kuaidi100:{sub.tracking_no}:{fingerprint}",
                "tracking_no": sub.tracking_no,
                "carrier": sub.carrier,
                "order_id": sub.order_id,
                "shop_id": sub.shop_id,
                "carrier_format": "kuaidi100",
                "carrier_status": str(code),
                "occurred_at": when.isoformat(),
                "location": (item.get("areaName") or None) and str(item["areaName"])[:200],
                "description": str(item.get("context") or "")[:500] or None,
            }
        )
    return events
