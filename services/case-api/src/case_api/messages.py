"""Buyer messages (R-MESSAGES): what the buyer was told or will be told, kept per case as data.

A case's change that the buyer must hear of picks a template (zh, with en beside it) and renders it with the
case's facts, deadlines in Beijing time. The message is stored, then handed to the configured channel:
- `webhook` (the default): the storefront's. The message goes out as an `aftersales.notification.requested.v1`
  event through the outbox, in the same transaction, and the webhook dispatcher delivers it to the shop's
  subscribed endpoints; the storefront messages the buyer. It stays `queued`: the platform is not told
  whether the buyer read it.
- `sms`: an SMS provider (sms.py). Sent by a background job; `sent` only on the provider's success answer,
  `failed` with the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from aftersales_shared import contracts
from aftersales_shared.clock import SHANGHAI, as_utc
from aftersales_shared.events import CustomerNotification
from aftersales_shared.ids import new_id
from aftersales_shared.money import fmt
from aftersales_shared.outbox import add_event
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from .domain.case import RETURN_NOTICE
from .models import BuyerMessage, Case

if TYPE_CHECKING:
    from .handlers import Context

SOURCE = "/case-api"
Channel = Literal["webhook", "sms"]


@dataclass(frozen=True)
class Template:
    zh: str
    en: str


# R-MESSAGES: one template per thing the buyer must hear of; {placeholders} are the facts.
TEMPLATES: dict[str, Template] = {
    "return_instructions": Template(  # R-RETURN-NOTICE
        "亲，您的退货申请已通过。请于 {ship_back_by}（北京时间）前寄回商品，并在订单中填写退货快递单号。"
        "{condition_zh}仓库收到后 {processing_days} 个工作日内处理。"
        "如有疑问请添加官方客服微信：{service_wechat}。",
        "Your return is approved. Please send the item back by {ship_back_by} (Beijing time) and enter the "
        "return tracking number on the order. {condition_en} We process it within {processing_days} "
        "working days of receipt. Questions: {service_wechat}.",
    ),
    "exchange_instructions": Template(  # R-RETURN-NOTICE, R-EXCHANGE-7D
        "亲，您的换货申请已通过。请于 {ship_back_by}（北京时间）前寄回商品，并在订单中填写退货快递单号，"
        "我们收到后为您换出。{condition_zh}如有疑问请添加官方客服微信：{service_wechat}。",
        "Your exchange is approved. Please send the item back by {ship_back_by} (Beijing time) and enter the "
        "return tracking number on the order; the replacement ships when we receive it. {condition_en} "
        "Questions: {service_wechat}.",
    ),
    "case_rejected": Template(
        "亲，很抱歉，您的售后申请未能通过。{message}如有疑问请联系在线客服。",
        "We are sorry: your after-sales request was not approved. {message} Please contact our customer "
        "service with any questions.",
    ),
    "refund_made": Template(
        "亲，您的退款 {amount} 元已于 {refunded_at}（北京时间）发起，请留意原支付账户。",
        "Your refund of {amount} CNY was made at {refunded_at} (Beijing time) to your original payment "
        "account.",
    ),
    "carrier_findings": Template(  # R-NO-UPDATE, R-FALSE-DELIVERY, R-LOST: the carrier's findings
        "亲，快递公司已核实您的包裹：{verdict}。我们会尽快为您处理。",
        "The carrier has checked your parcel: {verdict}. We will follow up with you shortly.",
    ),
    "reship_created": Template(  # R-RESHIP
        "亲，我们已为您安排补发，补发单号 {reship_order_id}，仓库发出后您可在订单中查看物流。",
        "We are sending you a replacement parcel (reship order {reship_order_id}); you can follow it on your "
        "order once the warehouse ships it.",
    ),
    "cashback_paid": Template(  # R-CASHBACK
        "亲，您的返现 {amount} 元已于 {paid_at}（北京时间）转入您的支付宝账户，请注意查收。感谢您的支持！",
        "Your cashback of {amount} CNY was sent to your Alipay account at {paid_at} (Beijing time). Thank "
        "you for shopping with us!",
    ),
}


def beijing(at: datetime) -> str:
    """A time as the buyer reads it: Beijing time to the minute."""
    return as_utc(at).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def render(template: str, facts: Mapping[str, Any]) -> tuple[str, str]:
    """The zh and en text of a template with the facts filled in: times in Beijing time, money as 0.00."""
    shown = _shown(facts)
    chosen = TEMPLATES[template]
    return chosen.zh.format_map(shown), chosen.en.format_map(shown)


def _shown(facts: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: beijing(v) if isinstance(v, datetime) else fmt(v) if isinstance(v, Decimal) else v
        for k, v in facts.items()
    }


def for_case_change(
    case: Case, action: str, data: Mapping[str, Any], now: datetime
) -> tuple[str, dict[str, Any]] | None:
    """The template and facts of the message a case's change owes the buyer, or None."""
    if action == "approve" and "return_notice" in data:
        ship_back_by = now + timedelta(days=int(str(RETURN_NOTICE["ship_back_within_days"])))
        template = "exchange_instructions" if case.remedy == "exchange" else "return_instructions"
        return template, {**RETURN_NOTICE, "ship_back_by": ship_back_by}
    if action == "reject":
        message = data.get("message") or ""
        return "case_rejected", {"message": message, "reason_code": data.get("reason_code")}
    if action == "refund":
        amount = Decimal(str(data.get("amount") or case.amount or 0))
        return "refund_made", {"amount": amount, "refunded_at": now}
    if action == "record_carrier_verdict" and data.get("verdict"):
        return "carrier_findings", {"verdict": data["verdict"], "confirmed": data.get("confirmed")}
    if action == "create_reship":
        return "reship_created", {"reship_order_id": data.get("reship_order_id")}
    return None


def queue(
    ctx: Context,
    template: str,
    facts: Mapping[str, Any],
    *,
    order_id: str,
    shop_id: str,
    case_id: str | None = None,
    cashback_task_id: str | None = None,
    subject: str | None = None,
) -> BuyerMessage:
    """Render and store a message for the buyer, and hand it to the configured channel, in the caller's
    transaction (a rolled-back change tells the buyer nothing)."""
    message_zh, message_en = render(template, facts)
    stored = _shown(facts)
    message = BuyerMessage(
        id=new_id("msg"),
        case_id=case_id,
        order_id=order_id,
        shop_id=shop_id,
        cashback_task_id=cashback_task_id,
        template=template,
        channel=ctx.message_channel,
        status="queued",
        message_zh=message_zh,
        message_en=message_en,
        facts=stored,
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    ctx.session.add(message)
    if message.channel == "webhook":
        add_event(
            ctx.session,
            contracts.NOTIFICATION_REQUESTED,
            CustomerNotification(
                notification_id=message.id,
                template=template,
                order_id=order_id,
                shop_id=shop_id,
                case_id=case_id,
                cashback_task_id=cashback_task_id,
                message_zh=message_zh,
                message_en=message_en,
                data=stored,
            ),
            source=SOURCE,
            subject=subject or case_id,
            at=ctx.now,
        )
    return message


def on_case_change(ctx: Context, case: Case, action: str, data: Mapping[str, Any]) -> None:
    """Queue the message a case's change owes the buyer, if any."""
    if (found := for_case_change(case, action, data, ctx.now)) is not None:
        template, facts = found
        queue(ctx, template, facts, order_id=case.order_id, shop_id=case.shop_id, case_id=case.id)


async def of_case(session: AsyncSession, case_id: str) -> list[BuyerMessage]:
    rows = await session.exec(
        select(BuyerMessage)
        .where(BuyerMessage.case_id == case_id)
        .order_by(col(BuyerMessage.created_at), col(BuyerMessage.id))
    )
    return list(rows.all())
