"""The SMS channel of buyer messages (R-MESSAGES), behind CASE_API_MESSAGE_CHANNEL=sms.

The provider is an HTTP JSON gateway: `POST CASE_API_SMS_URL` with `Authorization: Bearer <key>` and
{"to": phone, "text": the zh message, "reference": the message id}. Only a 200 answer whose JSON says
{"ok": true, "message_id": "<the provider's id>"} is a send: a message is reported sent only when the
provider said it took it. What it did not take is tried again on the webhooks' schedule (5 s, then 4 times
longer each time, for about a day): a provider not reached (nothing was sent) or one answering 429 or 5xx
(busy, down); the same reference goes with each try, so a provider that drops a reference it has seen
cannot send one twice. Anything else leaves the message `failed` with the reason: another answer (the
provider refused it), and no answer in time or a connection lost before the answer, which may have been
sent (not tried again, so as not to text a buyer twice).

A message is claimed (`sending`, one attempt more) in one transaction, sent outside any transaction, and its
result recorded in another; a crash in between leaves it `sending`, not `sent`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from aftersales_shared.clock import Clock
from aftersales_shared.db import unit_of_work
from aftersales_shared.logging import mask_text
from sqlalchemy import or_
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .models import BuyerMessage, Order
from .webhooks.schedule import retry_delay

log = logging.getLogger(__name__)
BATCH = 20
NOT_TAKEN = frozenset({429, 500, 502, 503, 504})  # the provider is busy or down: try again


@dataclass(frozen=True)
class Sent:
    ok: bool
    provider_message_id: str | None = None
    error: str | None = None
    again: bool = False  # not taken, and surely not sent: worth another try


class SmsProvider:
    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self.timeout = timeout

    async def send(self, phone: str, text: str, reference: str) -> Sent:
        body = {"to": phone, "text": text, "reference": reference}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                answer = await client.post(self.url, json=body, headers=self._headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # before TimeoutException: its subclass
            return Sent(False, error=f"not reached: {type(exc).__name__}", again=True)
        except httpx.TimeoutException:
            return Sent(False, error=f"no answer within {self.timeout:g} s: not known to be sent")
        except httpx.HTTPError as exc:
            return Sent(False, error=f"no answer ({type(exc).__name__}): not known to be sent")
        said = _json(answer)
        message_id = said.get("message_id") if isinstance(said, dict) else None
        if answer.status_code == 200 and isinstance(said, dict) and said.get("ok") is True and message_id:
            return Sent(True, provider_message_id=str(message_id)[:100])
        detail = said.get("error") if isinstance(said, dict) else None
        error = mask_text(f"HTTP {answer.status_code}: {detail or answer.text[:200]}")[:500]
        return Sent(False, error=error, again=answer.status_code in NOT_TAKEN)


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


async def send_queued(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, provider: SmsProvider, batch: int = BATCH
) -> int:
    """Send the queued SMS messages that are due (up to `batch`); how many were tried."""
    async with unit_of_work(sessions) as session:
        due = or_(
            col(BuyerMessage.next_attempt_at).is_(None), col(BuyerMessage.next_attempt_at) <= clock.now()
        )
        query = (
            select(BuyerMessage)
            .where(BuyerMessage.channel == "sms", BuyerMessage.status == "queued", due)
            .order_by(col(BuyerMessage.created_at), col(BuyerMessage.id))
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        claimed = list((await session.exec(query)).all())
        orders = await session.exec(
            select(Order).where(col(Order.order_id).in_(sorted({m.order_id for m in claimed})))
        )
        phones = {o.order_id: (o.buyer or {}).get("phone") for o in orders.all()}
        now = clock.now()
        work = []
        for message in claimed:
            message.status, message.attempts, message.updated_at = "sending", message.attempts + 1, now
            session.add(message)
            work.append((message.id, message.order_id, phones.get(message.order_id), message.message_zh))
    for message_id, order_id, phone, text in work:
        sent = await provider.send(phone, text, message_id) if phone else Sent(False, error="no buyer phone")
        now = clock.now()
        async with unit_of_work(sessions) as session:
            tried = await session.get(BuyerMessage, message_id)
            assert tried is not None
            wait = retry_delay(tried.attempts) if sent.again else None
            tried.status = "sent" if sent.ok else "queued" if wait else "failed"
            tried.next_attempt_at = now + wait if wait else None
            tried.provider_message_id, tried.error = sent.provider_message_id, sent.error
            tried.sent_at = now if sent.ok else None
            tried.updated_at = now
            session.add(tried)
        extra = {"message_id": message_id, "order_id": order_id, "attempts": tried.attempts}
        if sent.ok:
            log.info("buyer message sent by SMS", extra=extra)
        elif wait:
            log.warning(
                "buyer message not taken by the SMS provider, tried again in %s: %s",
                wait,
                sent.error,
                extra=extra,
            )
        else:
            log.warning("buyer message not sent by SMS: %s", sent.error, extra=extra)
    return len(work)


async def run(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, provider: SmsProvider, interval: float
) -> None:
    """Send queued SMS messages until cancelled: at once while there are more, else every `interval`."""
    while True:
        try:
            tried = await send_queued(sessions, clock, provider)
        except Exception:
            log.exception("sending SMS messages failed; retrying next interval")
            tried = 0
        if tried < BATCH:
            await asyncio.sleep(interval)
