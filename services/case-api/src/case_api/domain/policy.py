"""The after-sales policy engine (POLICY.md): pure functions of an order snapshot, a request, history and now.

`evaluate` decides one case request (a `Decision`, or a `PolicyRefusal` naming the rule);
`after_sales_options` lists what each line may still ask for, with deadlines.
Windows are counted in Asia/Shanghai calendar days; money is Decimal, rounded half-up to the cent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from .ledger import check_postage
from .model import (
    CENT,
    CONSULTATION_REASONS,
    EVIDENCE_REQUIRED,
    MAX_PHOTOS,
    SHANGHAI,
    SUBJECTIVE,
    USAGE_QUESTIONS,
    ZERO,
    CaseRequest,
    Consultation,
    Decision,
    InvalidRequest,
    LineHistory,
    Option,
    Order,
    OrderLine,
    PolicyRefusal,
    Reason,
    Remedy,
    Rule,
    Stage,
    has_cents_only,
    money,
    require_aware,
)

WINDOW = timedelta(hours=168)  # R-7D-WINDOW: "满168小时为7天"

# R-RO-RECEIVED: refund-only after receipt covers shipping fee, price difference, quality compensation,
# a discount promised before sale (`other`) and goods broken on arrival with no reship wanted (`damaged`).
# Ours: also a missing item, an empty parcel, or a false delivery when no reship is wanted: nothing
# arrived that could be sent back, so return-and-refund cannot serve them.
REFUND_ONLY_AFTER_RECEIPT = frozenset(
    {
        Reason.SHIPPING_FEE,
        Reason.PRICE_DROP,
        Reason.WORKMANSHIP,
        Reason.OTHER,
        Reason.DAMAGED,
        Reason.MISSING_ITEM,
        Reason.EMPTY_PARCEL,
        Reason.FALSE_DELIVERY,
    }
)
# Reasons no return or exchange can serve: money questions, or nothing was delivered to send back.
NOT_FOR_GOODS = frozenset({Reason.PRICE_DROP, Reason.SHIPPING_FEE})
NOTHING_DELIVERED = frozenset(
    {Reason.LOST, Reason.NO_TRACKING_UPDATE, Reason.FALSE_DELIVERY, Reason.EMPTY_PARCEL}
)
# R-RESHIP: non-subjective parcel problems. `lost` once the carrier confirms it (R-LOST) and
# `false_delivery` once the carrier confirms nobody got it; `wrong_item` is an exchange (R-WRONG),
# because the wrong goods must come back; `no_tracking_update` becomes `lost` when confirmed.
RESHIP_REASONS = frozenset(
    {
        Reason.DAMAGED,
        Reason.MISSING_ITEM,
        Reason.EMPTY_PARCEL,
        Reason.LOST,
        Reason.NO_TRACKING_UPDATE,
        Reason.FALSE_DELIVERY,
    }
)
# Problems of a parcel that never arrived: reshipped before sign-off (R-LOST; R-NO-UPDATE once the carrier
# is asked), the rest after it.
UNDELIVERED_REASONS = frozenset({Reason.LOST, Reason.NO_TRACKING_UPDATE})

REMEDY_LABELS: Mapping[Remedy, tuple[str, str]] = {
    Remedy.REFUND_ONLY: ("仅退款", "a refund only"),
    Remedy.RETURN_REFUND: ("退货退款", "a return and refund"),
    Remedy.EXCHANGE: ("换货", "an exchange"),
    Remedy.RESHIP: ("补发", "a reshipment"),
    Remedy.PRICE_PROTECTION: ("保价退差价", "price protection"),
    Remedy.CASHBACK: ("返现", "a cashback"),
    Remedy.CONSULTATION: ("使用咨询", "a usage consultation"),
}
REASON_LABELS: Mapping[Reason, tuple[str, str]] = {
    Reason.NO_REASON: ("7天无理由", "no reason needed"),
    Reason.SIZE: ("尺寸问题", "size"),
    Reason.WORKMANSHIP: ("质量问题", "quality"),
    Reason.USAGE: ("使用问题", "usage"),
    Reason.DAMAGED: ("破损", "damaged"),
    Reason.LOST: ("丢件", "lost parcel"),
    Reason.MISSING_ITEM: ("漏发/少件", "missing item"),
    Reason.WRONG_ITEM: ("错发", "wrong item"),
    Reason.NO_TRACKING_UPDATE: ("无物流更新", "no tracking update"),
    Reason.FALSE_DELIVERY: ("虚假签收", "false delivery"),
    Reason.EMPTY_PARCEL: ("空包裹", "empty parcel"),
    Reason.PRICE_DROP: ("降价", "price drop"),
    Reason.SHIPPING_FEE: ("运费", "shipping fee"),
    Reason.OTHER: ("其他", "other"),
    Reason.FADING: ("褪色", "fading"),
    Reason.ODOR: ("异味", "odor"),
    Reason.SNAG: ("勾丝", "snags"),
    Reason.PILLING: ("起球", "pilling"),
}
# R-USAGE: the standard explanation of each usage question (zh, en): the likely cause, then what to do.
EXPLANATIONS: Mapping[Reason, tuple[str, str]] = {
    Reason.FADING: (
        "您好，深色或颜色鲜艳的面料在最初几次洗涤时会有少量浮色，属于正常现象。建议首次单独用冷水手洗，"
        "不要长时间浸泡，不要与浅色衣物混洗，洗后反面晾干、避免暴晒。",
        "Dark or bright fabrics can release a little surface dye in their first few washes; this is normal. "
        "Please wash the item alone by hand in cold water the first times, do not soak it, keep it away "
        "from light colours, and dry it inside out out of direct sun.",
    ),
    Reason.ODOR: (
        "您好，新衣服可能带有面料印染和包装的轻微气味，拆封后在通风处晾挂1-2天，或用清水洗涤一次，气味即可散去。",
        "A new garment can carry a slight smell from dyeing and packing. Hang it in fresh air for a day or "
        "two, or wash it once in clean water, and the smell will go.",
    ),
    Reason.SNAG: (
        "您好，针织和丝类面料碰到首饰、拉链、魔术贴或指甲等尖锐物时容易勾丝。勾出的线头请用钩针从反面拉回，"
        "不要直接剪断；穿着时尽量避免与粗糙物品摩擦。",
        "Knits and silky fabrics snag easily on jewellery, zips, hook-and-loop fasteners or nails. Pull a "
        "snagged thread back through to the inside with a crochet hook rather than cutting it, and avoid "
        "rubbing the item against rough surfaces.",
    ),
    Reason.PILLING: (
        "您好，腋下、袖口等摩擦较多的部位出现少量起球，是天然纤维和混纺面料的常见现象，可用剃毛球器轻轻去除。"
        "建议反面装入洗衣袋洗涤，避免与粗糙衣物一起洗。",
        "A little pilling where the fabric rubs most (underarms, cuffs) is common for natural and blended "
        "fibres; a fabric shaver removes it gently. Wash the item inside out in a laundry bag, away from "
        "rough garments.",
    ),
    Reason.OTHER: (
        "您好，感谢您的反馈。我们已记录您的穿着和洗涤方式，客服会结合商品详情页的面料和说明为您分析原因并给出建议。",
        "Thank you for telling us. We have noted how the item was worn and washed; our customer service will "
        "compare it with the product page's fabric and care facts, explain the cause and recommend what to "
        "do.",
    ),
}
# R-USAGE: what a consultation may offer besides the answer: wear is not a fault, so only the buyer's own
# no-reason return or exchange, where its window is open and the line allows it.
CONSULTATION_OFFERS: tuple[tuple[Remedy, Reason], ...] = (
    (Remedy.RETURN_REFUND, Reason.NO_REASON),
    (Remedy.EXCHANGE, Reason.NO_REASON),
)


@dataclass(frozen=True, slots=True)
class _Eligibility:
    """A line may ask for a remedy now; `rules[0]` is the deciding rule."""

    rules: tuple[Rule, ...]
    deadline: datetime | None = None
    needs_retention: bool = False


# ---------------------------------------------------------------- windows, stage, money primitives


def window_close(start: datetime) -> datetime:
    """R-7D-WINDOW: 00:00 Asia/Shanghai of the day after `start`, plus exactly 168 hours."""
    require_aware(start, "start")
    next_day = start.astimezone(SHANGHAI).date() + timedelta(days=1)
    opens = datetime.combine(next_day, time(0), tzinfo=SHANGHAI)
    # Exact elapsed hours (in UTC), not wall-clock arithmetic.
    return (opens.astimezone(UTC) + WINDOW).astimezone(SHANGHAI)


def stage(order: Order) -> Stage:
    if order.signed_at is not None:
        return Stage.RECEIVED
    if order.shipped_at is not None:
        return Stage.SHIPPED
    return Stage.UNSHIPPED


def price_difference(old_unit: Decimal, new_unit: Decimal, quantity: int) -> Decimal:
    """R-PRICE-PROTECT: (old unit price − new unit price) × quantity, never negative."""
    return money(max(ZERO, old_unit - new_unit) * quantity)


def goods_value(line: OrderLine, quantity: int) -> Decimal:
    """The paid value of `quantity` units of a line, pro rata of what the whole line cost."""
    return money(line.paid_amount * quantity / line.quantity)


def remaining_allowance(order: Order, line_id: str, history: Mapping[str, LineHistory]) -> Decimal:
    """R-COMP-CAP: what a line can still take in refunds, price protection, cashback and reshipped value.

    The cap is paid_amount + shipping reimbursements; shipping reimbursements are both added to the cap
    and counted against it, so they cancel out: remaining = paid_amount − compensated.
    """
    line = order.line(line_id)
    return max(ZERO, line.paid_amount - _history(history, line_id).compensated)


def missing_evidence(reason: Reason, images: int, videos: int) -> int:
    """R-EVIDENCE: how many more images the reason needs; one video satisfies the requirement."""
    if videos > 0:
        return 0
    return max(0, EVIDENCE_REQUIRED.get(reason, 0) - images)


def check_photos(images: int) -> None:
    """R-EVIDENCE (ours): at most five photos per case; more are refused rather than trimmed to five."""
    if images > MAX_PHOTOS:
        raise PolicyRefusal(
            Rule.EVIDENCE,
            f"您好，每个售后申请最多可提交{MAX_PHOTOS}张照片，本次共有{images}张。"
            f"请挑选最能说明问题的{MAX_PHOTOS}张后再提交，感谢配合。",
            f"Each request takes at most {MAX_PHOTOS} photos, and this one has {images}. Please choose the "
            f"{MAX_PHOTOS} that show the problem best and try again. Thank you.",
            {"photos": str(images), "maximum_photos": str(MAX_PHOTOS)},
        )


# ---------------------------------------------------------------- evaluate


def evaluate(
    order: Order, request: CaseRequest, history: Mapping[str, LineHistory], now: datetime
) -> Decision:
    """Decide a case request, or raise PolicyRefusal (InvalidRequest for a malformed request)."""
    require_aware(now, "now")
    remedy, reason = _check_shape(request)
    lines = _case_lines(order, request)
    check_photos(request.images)
    current = stage(order)

    rules: list[Rule] = []
    deadlines: list[datetime] = []
    needs_retention = False
    for line, _quantity in lines:
        eligibility = _eligibility(order, line, remedy, reason, _history(history, line.line_id), now)
        rules.extend(eligibility.rules)
        needs_retention = needs_retention or eligibility.needs_retention
        if eligibility.deadline is not None:
            deadlines.append(eligibility.deadline)

    amount, line_amounts, shipping_amounts, money_rules = _money(
        order, request, remedy, reason, lines, history, current
    )
    rules.extend(money_rules)

    # R-EVIDENCE: photos of the goods can only be asked for once they have arrived.
    evidence_missing = 0
    if current is Stage.RECEIVED and reason in EVIDENCE_REQUIRED:
        evidence_missing = missing_evidence(reason, request.images, request.videos)
        rules.append(Rule.EVIDENCE)
    if needs_retention:
        rules.append(Rule.RETENTION)

    return Decision(
        remedy=remedy,
        reason=reason,
        stage=current,
        amount=amount,
        line_amounts=line_amounts,
        needs_retention=needs_retention,
        evidence_missing=evidence_missing,
        deadline=min(deadlines) if deadlines else None,
        rules=tuple(dict.fromkeys(str(rule) for rule in rules)),
        shipping_amounts=shipping_amounts,
        consultation=_answer(order, reason, lines, history, now) if remedy is Remedy.CONSULTATION else None,
    )


def _check_shape(request: CaseRequest) -> tuple[Remedy, Reason]:
    """Refuse what is malformed whatever the order says (InvalidRequest → 422 validation error)."""
    try:
        remedy, reason = Remedy(request.remedy), Reason(request.reason)
    except ValueError as exc:
        raise InvalidRequest("remedy/reason", str(exc)) from None
    if not request.lines:
        raise InvalidRequest("lines", "a case needs at least one line")
    line_ids = [case_line.line_id for case_line in request.lines]
    if len(set(line_ids)) != len(line_ids):
        raise InvalidRequest("lines", "each line may appear once")
    if any(case_line.quantity < 1 for case_line in request.lines):
        raise InvalidRequest("lines.quantity", "quantity must be at least 1")
    if request.images < 0 or request.videos < 0:
        raise InvalidRequest("evidence", "evidence counts cannot be negative")
    for name, value in (("amount", request.amount), ("new_unit_price", request.new_unit_price)):
        if value is not None and not has_cents_only(value):
            raise InvalidRequest(name, "money has at most two decimal places")
    if request.amount is not None and remedy in (Remedy.EXCHANGE, Remedy.RESHIP, Remedy.CONSULTATION):
        raise InvalidRequest("amount", f"{remedy} takes no amount")
    return remedy, reason


def _case_lines(order: Order, request: CaseRequest) -> list[tuple[OrderLine, int]]:
    """R-ORDER-LINE: every case line exists on the order, for at most the ordered quantity."""
    resolved = []
    for case_line in request.lines:
        try:
            line = order.line(case_line.line_id)
        except KeyError:
            raise PolicyRefusal(
                Rule.ORDER_LINE,
                "抱歉，该订单中没有找到您选择的商品，请核对后重新提交。",
                "Sorry, we could not find that item on this order. Please check it and try again.",
                {"order_id": order.order_id, "line_id": case_line.line_id},
            ) from None
        if case_line.quantity > line.quantity:
            raise PolicyRefusal(
                Rule.ORDER_LINE,
                f"抱歉，该商品您购买了{line.quantity}件，申请数量不能超过购买数量。",
                f"Sorry, you bought {line.quantity} of this item, so the request cannot cover more.",
                {
                    "line_id": line.line_id,
                    "quantity": str(case_line.quantity),
                    "ordered_quantity": str(line.quantity),
                },
            )
        resolved.append((line, case_line.quantity))
    return resolved


def _history(history: Mapping[str, LineHistory], line_id: str) -> LineHistory:
    return history.get(line_id) or LineHistory(line_id=line_id)


# ---------------------------------------------------------------- eligibility, one function per family


def _eligibility(
    order: Order, line: OrderLine, remedy: Remedy, reason: Reason, hist: LineHistory, now: datetime
) -> _Eligibility:
    """May this line ask for this remedy for this reason now? Raise PolicyRefusal if not."""
    if reason in USAGE_QUESTIONS and remedy is not Remedy.CONSULTATION:
        raise _mismatch(remedy, reason)  # R-USAGE: wear is answered, not compensated
    match remedy:
        case Remedy.REFUND_ONLY:
            return _refund_only(order, reason, now)
        case Remedy.RETURN_REFUND:
            return _return_refund(order, line, reason, hist, now)
        case Remedy.EXCHANGE:
            return _exchange(order, line, reason, hist, now)
        case Remedy.RESHIP:
            return _reship(order, reason)
        case Remedy.PRICE_PROTECTION:
            if reason is not Reason.PRICE_DROP:
                raise _mismatch(remedy, reason)
            return _price_protection(order, now)
        case Remedy.CASHBACK:
            if reason is Reason.PRICE_DROP:  # R-PRICE-PROTECT is paid as cashback
                protection = _price_protection(order, now)
                return _Eligibility((Rule.CASHBACK, *protection.rules), protection.deadline)
            return _Eligibility((Rule.CASHBACK,))
        case Remedy.CONSULTATION:
            return _consultation(order, reason)
    raise AssertionError(remedy)  # pragma: no cover


def _refund_only(order: Order, reason: Reason, now: datetime) -> _Eligibility:
    """R-RO-UNSHIPPED / R-RO-SHIPPED / R-RO-RECEIVED."""
    if reason is Reason.PRICE_DROP:  # the "price difference" of R-RO-RECEIVED is R-PRICE-PROTECT's
        protection = _price_protection(order, now)
        return _Eligibility((Rule.RO_RECEIVED, *protection.rules), protection.deadline)
    current = stage(order)
    if current is not Stage.RECEIVED:
        rule = Rule.RO_UNSHIPPED if current is Stage.UNSHIPPED else Rule.RO_SHIPPED
        # R-RETENTION: every refund-only of the goods before receipt starts with retention.
        return _Eligibility((rule,), needs_retention=reason is not Reason.SHIPPING_FEE)
    if reason not in REFUND_ONLY_AFTER_RECEIPT:
        raise PolicyRefusal(
            Rule.RO_RECEIVED,
            "您好，商品签收后仅退款仅适用于退运费、退差价、质量问题补偿、售前承诺的优惠或商品破损（不补发）等情况。"
            "如您对商品不满意，建议撤销本次申请，或改为申请退货退款，我们会尽快为您处理，感谢理解。",
            "Once an order has been received, a refund without a return is only for shipping fees, price "
            "differences, quality compensation, a discount promised before purchase, or goods that arrived "
            "broken. If the item is not what you wanted, please withdraw this request or ask for a return "
            "and refund instead; we will handle it quickly. Thank you for understanding.",
            {"reason": reason, "signed_at": _iso(order.signed_at), "suggested_remedy": "return_refund"},
        )
    return _Eligibility((Rule.RO_RECEIVED,))


def _return_refund(
    order: Order, line: OrderLine, reason: Reason, hist: LineHistory, now: datetime
) -> _Eligibility:
    """R-RR-UNRECEIVED / R-RR-RECEIVED, with R-7D-EXCLUDED, R-EXCHANGE-ONCE and R-7D-WINDOW."""
    if reason in NOT_FOR_GOODS:
        raise _mismatch(Remedy.RETURN_REFUND, reason)
    current = stage(order)
    if current is Stage.UNSHIPPED:
        raise _not_shipped(Remedy.RETURN_REFUND)
    if current is Stage.SHIPPED:
        # Refused at the door or intercepted; there is no 7-day window before sign-off.
        return _Eligibility((Rule.RR_UNRECEIVED,), needs_retention=True)
    if reason in NOTHING_DELIVERED:
        raise _mismatch(Remedy.RETURN_REFUND, reason)
    _check_excluded(line, reason)
    if hist.exchanged:
        return _replacement_window(hist, now, Rule.RR_RECEIVED)
    if reason in SUBJECTIVE:
        deadline = _subjective_window(order, reason, now)
        return _Eligibility(
            (Rule.SEVEN_DAY_WINDOW, Rule.RR_RECEIVED, Rule.RESALEABLE), deadline, needs_retention=True
        )
    # Carrier and quality reasons have no window; R-RR-RECEIVED still starts with retention.
    return _Eligibility((Rule.RR_RECEIVED,), needs_retention=True)


def _exchange(
    order: Order, line: OrderLine, reason: Reason, hist: LineHistory, now: datetime
) -> _Eligibility:
    """R-EXCHANGE-7D and R-EXCHANGE-ONCE, with R-7D-EXCLUDED and R-BEYOND-7D."""
    if reason in NOT_FOR_GOODS or reason in NOTHING_DELIVERED or reason is Reason.MISSING_ITEM:
        raise _mismatch(Remedy.EXCHANGE, reason)
    if order.signed_at is None:
        if order.shipped_at is None:
            raise _not_shipped(Remedy.EXCHANGE)
        raise PolicyRefusal(
            Rule.EXCHANGE_7D,
            "您好，换货需在签收商品后申请，包裹签收后7天内均可办理，请您收到商品后再提交，感谢耐心等待。",
            "An exchange can be requested once the parcel has been signed for, within 7 days after that. "
            "Please ask again when it arrives. Thank you for your patience.",
            {"stage": stage(order)},
        )
    _check_excluded(line, reason)
    if hist.exchanged:
        facts = {"line_id": line.line_id}
        if hist.replacement_signed_at is not None:
            facts["replacement_signed_at"] = _iso(hist.replacement_signed_at)
            facts["return_deadline"] = _iso(window_close(hist.replacement_signed_at))
        raise PolicyRefusal(
            Rule.EXCHANGE_ONCE,
            "非常抱歉，每件商品只提供一次换货服务，该商品已换过货，暂无法再次换货。"
            "如换回的商品有问题，可在签收后7天内申请退货，感谢理解。",
            "We're sorry: each item can be exchanged once, and this one already has been. If the "
            "replacement has a problem, you can return it within 7 days of receiving it. Thank you for "
            "understanding.",
            facts,
        )
    if reason in SUBJECTIVE:
        deadline = _subjective_window(order, reason, now)
        return _Eligibility(
            (Rule.EXCHANGE_7D, Rule.SEVEN_DAY_WINDOW, Rule.EXCHANGE_ONCE, Rule.RESALEABLE),
            deadline,
            needs_retention=True,
        )
    assert order.signed_at is not None
    deadline = window_close(order.signed_at)
    if now >= deadline:
        raise PolicyRefusal(
            Rule.EXCHANGE_7D,
            f"非常抱歉，换货服务需在签收后7天内申请，本订单已于{_local(deadline)}（北京时间）截止，暂无法换货。"
            "如商品存在质量问题，可申请退货退款，我们会尽快为您处理。",
            f"We're sorry: exchanges are available for 7 days after delivery, and for this order that "
            f"period ended on {_local(deadline)} (Beijing time). If the item is faulty, you can still ask "
            "for a return and refund, and we will handle it quickly.",
            {"signed_at": _iso(order.signed_at), "deadline": _iso(deadline)},
            deadline,
        )
    return _Eligibility((Rule.EXCHANGE_7D, Rule.EXCHANGE_ONCE), deadline)


def _reship(order: Order, reason: Reason) -> _Eligibility:
    """R-RESHIP: only for non-subjective parcel problems; a lost or silent parcel before sign-off, the rest
    after."""
    if reason not in RESHIP_REASONS:
        raise PolicyRefusal(
            Rule.RESHIP,
            "您好，补发适用于包裹破损、漏发少件、空包裹、丢件或虚假签收等物流问题。"
            "您的情况建议申请换货或退货退款，我们会尽快为您处理。",
            "A reshipment is for parcel problems: damaged or missing contents, an empty parcel, a lost "
            "parcel or a false delivery. For your case, please ask for an exchange or a return and "
            "refund; we will handle it quickly.",
            {"reason": reason},
        )
    current = stage(order)
    wanted = Stage.SHIPPED if reason in UNDELIVERED_REASONS else Stage.RECEIVED
    if current is not wanted:
        raise PolicyRefusal(
            Rule.RESHIP,
            "您好，根据目前的物流状态，暂无法按该原因办理补发。"
            + ("包裹已显示签收，如您未收到，请选择“虚假签收”。" if reason in UNDELIVERED_REASONS else "")
            + "如有疑问请联系客服，我们会帮您核实。",
            "We cannot arrange a reshipment for this reason at the parcel's current tracking status."
            + (
                " The parcel shows as signed for; if you did not get it, please choose false delivery."
                if reason in UNDELIVERED_REASONS
                else ""
            )
            + " Please contact us and we will check it for you.",
            {"reason": reason, "stage": current},
        )
    return _Eligibility((Rule.RESHIP,))


def _consultation(order: Order, reason: Reason) -> _Eligibility:
    """R-USAGE: a question about an item in use, so after sign-off, for a usage reason."""
    if reason not in CONSULTATION_REASONS:
        raise _mismatch(Remedy.CONSULTATION, reason)
    if order.signed_at is None:
        raise PolicyRefusal(
            Rule.USAGE,
            "您好，使用问题咨询需在签收商品后提交。请您收到商品后再联系我们，我们会为您详细解答。",
            "Questions about wearing or washing an item can be asked once it has been delivered. Please "
            "contact us again when it arrives and we will gladly help.",
            {"stage": stage(order), "reason": reason},
        )
    return _Eligibility((Rule.USAGE,))


def _answer(
    order: Order,
    reason: Reason,
    lines: list[tuple[OrderLine, int]],
    history: Mapping[str, LineHistory],
    now: datetime,
) -> Consultation:
    """R-USAGE: the standard explanation, and per case line the remedies the policy allows right now."""
    zh, en = EXPLANATIONS[reason]
    offered = [
        _option(order, line, remedy, offer_reason, history, now)
        for line, _quantity in lines
        for remedy, offer_reason in CONSULTATION_OFFERS
    ]
    return Consultation(zh, en, tuple(option for option in offered if option.eligible))


def _price_protection(order: Order, now: datetime) -> _Eligibility:
    """R-PRICE-PROTECT (a): within 7 days of purchase (00:00-next-day rule) and after receipt."""
    deadline = window_close(order.paid_at)
    facts = {"paid_at": _iso(order.paid_at), "deadline": _iso(deadline)}
    if now >= deadline:
        raise PolicyRefusal(
            Rule.PRICE_PROTECT,
            f"非常抱歉，保价服务自购买之日起7天内有效，本订单的保价期已于{_local(deadline)}（北京时间）结束，"
            "暂无法为您退差价，感谢理解。",
            f"We're sorry: price protection lasts 7 days from purchase, and for this order it ended on "
            f"{_local(deadline)} (Beijing time), so we cannot refund the difference. Thank you for "
            "understanding.",
            facts,
            deadline,
        )
    if order.signed_at is None:
        raise PolicyRefusal(
            Rule.PRICE_PROTECT,
            f"您好，保价退差价需要先确认收货。请您收到商品后，在{_local(deadline)}（北京时间）前再次申请。",
            f"Price protection needs the order to be received first. Please ask again once it arrives, "
            f"before {_local(deadline)} (Beijing time).",
            facts,
            deadline,
        )
    return _Eligibility((Rule.PRICE_PROTECT,), deadline)


def _check_excluded(line: OrderLine, reason: Reason) -> None:
    """R-7D-EXCLUDED: no-reason returns are refused for excluded categories; other reasons are not."""
    if reason is Reason.NO_REASON and not line.no_reason_return:
        raise PolicyRefusal(
            Rule.SEVEN_DAY_EXCLUDED,
            "非常抱歉，该商品（如贴身衣物、定制商品等）不支持7天无理由退换。"
            "如商品存在质量或物流问题，欢迎选择对应原因申请，我们会尽快为您处理。",
            "We're sorry: this item (such as underwear or a customised piece) is not eligible for "
            "no-reason returns or exchanges. If it has a quality or delivery problem, please choose that "
            "reason and we will handle it quickly.",
            {"line_id": line.line_id, "sku": line.sku, "category": line.category or ""},
        )


def _subjective_window(order: Order, reason: Reason, now: datetime) -> datetime:
    """R-7D-WINDOW / R-BEYOND-7D: subjective returns and exchanges close 168 h after the next midnight."""
    assert order.signed_at is not None
    deadline = window_close(order.signed_at)
    if now >= deadline:
        raise PolicyRefusal(
            Rule.BEYOND_7D,
            f"非常抱歉，您的订单已于{_local(order.signed_at)}签收，7天无理由退换服务已于{_local(deadline)}"
            "（北京时间）截止，暂时无法为您办理退换货。如商品存在质量问题，欢迎随时联系我们，感谢您的理解。",
            f"We're sorry: your order was delivered on {_local(order.signed_at)}, and the 7-day period for "
            f"returns and exchanges without a specific fault ended on {_local(deadline)} (Beijing time), so "
            "we cannot accept this return or exchange. If the item has a quality problem, please contact "
            "us at any time. Thank you for understanding.",
            {
                "reason": reason,
                "signed_at": _iso(order.signed_at),
                "deadline": _iso(deadline),
                "returnable_for_subjective_reasons": "false",
            },
            deadline,
        )
    return deadline


def _replacement_window(hist: LineHistory, now: datetime, rule: Rule) -> _Eligibility:
    """R-EXCHANGE-ONCE: an exchanged line may be returned within 7 days of the replacement's sign-off."""
    if hist.replacement_signed_at is None:
        raise PolicyRefusal(
            Rule.EXCHANGE_ONCE,
            "您好，换货商品还在寄送途中，签收换货商品后7天内如有问题可申请退货，请收到后再提交。",
            "Your replacement is still on its way. If it has a problem, you can return it within 7 days "
            "of receiving it; please ask again once it arrives.",
            {"line_id": hist.line_id, "exchanged": "true"},
        )
    deadline = window_close(hist.replacement_signed_at)
    if now >= deadline:
        raise PolicyRefusal(
            Rule.EXCHANGE_ONCE,
            f"非常抱歉，该商品已换货，换货商品于{_local(hist.replacement_signed_at)}签收，"
            f"退货期限已于{_local(deadline)}（北京时间）截止，暂无法再办理退货或换货，感谢理解。",
            f"We're sorry: this item was already exchanged, the replacement was delivered on "
            f"{_local(hist.replacement_signed_at)}, and its 7-day return period ended on {_local(deadline)} "
            "(Beijing time), so it can no longer be returned or exchanged. Thank you for understanding.",
            {
                "line_id": hist.line_id,
                "replacement_signed_at": _iso(hist.replacement_signed_at),
                "deadline": _iso(deadline),
            },
            deadline,
        )
    return _Eligibility((Rule.EXCHANGE_ONCE, rule, Rule.RESALEABLE), deadline, needs_retention=True)


def _mismatch(remedy: Remedy, reason: Reason) -> PolicyRefusal:
    """R-REMEDY-REASON (ours): e.g. an exchange for a price drop, a return of a parcel never received."""
    remedy_zh, remedy_en = REMEDY_LABELS[remedy]
    reason_zh, reason_en = REASON_LABELS[reason]
    return PolicyRefusal(
        Rule.REMEDY_REASON,
        f"您好，“{reason_zh}”的情况无法通过{remedy_zh}处理，请选择其他售后方式，或联系客服为您推荐合适的方案。",
        f"A {reason_en} problem cannot be handled as {remedy_en}. Please choose another option, or "
        "contact us and we will suggest the right one.",
        {"remedy": remedy, "reason": reason},
    )


def _not_shipped(remedy: Remedy) -> PolicyRefusal:
    """R-RO-UNSHIPPED: before shipping, the only way back is a refund-only (the shipment is cancelled)."""
    remedy_zh, remedy_en = REMEDY_LABELS[remedy]
    return PolicyRefusal(
        Rule.RO_UNSHIPPED,
        f"您好，您的订单还未发货，暂无法申请{remedy_zh}。如不需要该商品，可直接申请仅退款，我们会尽快为您处理。",
        f"Your order has not shipped yet, so {remedy_en} is not possible. If you no longer want it, "
        "please ask for a refund only and we will handle it quickly.",
        {"stage": Stage.UNSHIPPED, "suggested_remedy": Remedy.REFUND_ONLY},
    )


# ---------------------------------------------------------------- money: amounts, R-PRICE-PROTECT, R-COMP-CAP


def _money(
    order: Order,
    request: CaseRequest,
    remedy: Remedy,
    reason: Reason,
    lines: list[tuple[OrderLine, int]],
    history: Mapping[str, LineHistory],
    current: Stage,
) -> tuple[Decimal | None, dict[str, Decimal], dict[str, Decimal], tuple[Rule, ...]]:
    """Return (amount, line_amounts, shipping_amounts, rules) or refuse."""
    line_ids = [line.line_id for line, _ in lines]
    if remedy in (Remedy.EXCHANGE, Remedy.CONSULTATION):
        return None, dict.fromkeys(line_ids, ZERO), {}, ()
    if reason is Reason.SHIPPING_FEE:  # refund_only or cashback (the others were refused as mismatches)
        return _shipping_money(order, request, remedy, lines, history, current)

    if reason is Reason.PRICE_DROP:
        # R-PRICE-PROTECT: price_protection, refund_only or cashback for the difference.
        weights = _price_differences(order, request, lines)
        limit: Decimal | None = sum(weights.values(), ZERO)
        amount = (
            request.amount if remedy is not Remedy.CASHBACK else _required_amount(request, remedy, current)
        )
    elif remedy is Remedy.CASHBACK:
        # R-CASHBACK: an agreed amount, spread over the lines by what they can still take.
        amount = _required_amount(request, remedy, current)
        weights = {line.line_id: remaining_allowance(order, line.line_id, history) for line, _ in lines}
        limit = None
    else:
        weights = {line.line_id: goods_value(line, quantity) for line, quantity in lines}
        limit = sum(weights.values(), ZERO)
        derived = remedy in (Remedy.RETURN_REFUND, Remedy.RESHIP) or current is not Stage.RECEIVED
        # R-RO-RECEIVED: compensation after receipt is an agreed amount, at most the goods' value.
        amount = request.amount if derived else _required_amount(request, remedy, current)
        if amount is None:
            weights = _absorb_rounding(order, lines, weights, history)

    if amount is None:
        line_amounts = weights
    else:
        _check_amount(amount, limit)
        line_amounts = allocate(amount, weights)
    check_cap(order, line_amounts, history)  # R-COMP-CAP
    total = sum(line_amounts.values(), ZERO)
    rules = (Rule.COMP_CAP,) if remedy is not Remedy.PRICE_PROTECTION else (Rule.CASHBACK, Rule.COMP_CAP)
    return (None if remedy is Remedy.RESHIP else total), line_amounts, {}, rules


def _absorb_rounding(
    order: Order,
    lines: list[tuple[OrderLine, int]],
    values: dict[str, Decimal],
    history: Mapping[str, LineHistory],
) -> dict[str, Decimal]:
    """Trim a derived goods value to the remaining allowance when only pro-rata rounding exceeds it.

    Earlier partial cases may each have rounded up by half a cent (100.01 over 2 units: 50.01 + 50.01),
    so the last units would otherwise be refused by R-COMP-CAP for a cent.
    """
    trimmed = dict(values)
    for line, _quantity in lines:
        remaining = remaining_allowance(order, line.line_id, history)
        if remaining < trimmed[line.line_id] < remaining + CENT * line.quantity:
            trimmed[line.line_id] = remaining
    return trimmed


def _shipping_money(
    order: Order,
    request: CaseRequest,
    remedy: Remedy,
    lines: list[tuple[OrderLine, int]],
    history: Mapping[str, LineHistory],
    current: Stage,
) -> tuple[Decimal | None, dict[str, Decimal], dict[str, Decimal], tuple[Rule, ...]]:
    """Shipping-fee money sits outside R-COMP-CAP, in the order's postage (R-POSTAGE)."""
    amount = _required_amount(request, remedy, current)
    # R-POSTAGE: a cashback of postage reimburses the return; a refund-only gives back the order's own fee.
    check_postage(order, amount, history, reimbursement=remedy is Remedy.CASHBACK)
    line_ids = [line.line_id for line, _ in lines]
    # The whole reimbursement is booked on the first case line; it is order-level money.
    return amount, dict.fromkeys(line_ids, ZERO), {line_ids[0]: amount}, ()


def _required_amount(request: CaseRequest, remedy: Remedy, current: Stage) -> Decimal:
    """R-CASHBACK / R-RO-RECEIVED: an explicit amount greater than zero."""
    if request.amount is not None and request.amount > 0:
        return request.amount
    rule = Rule.CASHBACK if remedy is Remedy.CASHBACK else Rule.RO_RECEIVED
    if remedy is Remedy.REFUND_ONLY and current is not Stage.RECEIVED:
        rule = Rule.RO_UNSHIPPED if current is Stage.UNSHIPPED else Rule.RO_SHIPPED
    remedy_zh, remedy_en = REMEDY_LABELS[remedy]
    raise PolicyRefusal(
        rule,
        f"您好，申请{remedy_zh}需要填写与客服协商一致的金额（大于0元），请补充后再提交。",
        f"Please enter the amount agreed with our customer service (more than 0 CNY) to ask for {remedy_en}.",
        {"amount": "" if request.amount is None else _fmt(request.amount)},
    )


def _check_amount(amount: Decimal, limit: Decimal | None) -> None:
    """R-REFUND-VERIFY: an explicit amount is positive and at most what the request can yield."""
    if amount <= 0 or (limit is not None and amount > limit):
        maximum = "" if limit is None else _fmt(limit)
        raise PolicyRefusal(
            Rule.REFUND_VERIFY,
            f"抱歉，申请金额{amount:.2f}元不在可申请范围内"
            + (f"（最多{maximum}元）" if maximum else "")
            + "，请调整后再提交。",
            f"Sorry, {amount:.2f} CNY is outside what this request allows"
            + (f" (at most {maximum} CNY)" if maximum else "")
            + ". Please adjust the amount and try again.",
            {"requested_amount": _fmt(amount), "maximum_amount": maximum},
        )


def _price_differences(
    order: Order, request: CaseRequest, lines: list[tuple[OrderLine, int]]
) -> dict[str, Decimal]:
    """R-PRICE-PROTECT (b): a new order, same buyer and SKU, at a lower unit price; per-line differences."""
    new = request.new_order
    deadline = window_close(order.paid_at)
    if new is None or new.order_id == order.order_id:
        raise PolicyRefusal(
            Rule.PRICE_PROTECT,
            "您好，保价退差价需要您以当前更低的价格拍下新订单，请下单后提交新订单号，我们会为您核对差价。",
            "For price protection, please place a new order at the lower price and give us its order "
            "number; we will then check the difference for you.",
            {"deadline": _iso(deadline)},
            deadline,
        )
    if new.buyer_id != order.buyer_id or not order.paid_at <= new.paid_at < deadline:
        raise PolicyRefusal(
            Rule.PRICE_PROTECT,
            "抱歉，保价需要由同一账号在原订单购买后7天内以更低价格拍下新订单，该新订单不符合条件，请核对后再提交。",
            "Sorry: price protection needs a new order placed from the same account within 7 days of the "
            "original purchase; this new order does not qualify. Please check it and try again.",
            {
                "new_order_id": new.order_id,
                "new_order_paid_at": _iso(new.paid_at),
                "paid_at": _iso(order.paid_at),
                "deadline": _iso(deadline),
            },
            deadline,
        )
    differences = {}
    for line, quantity in lines:
        new_line = next((candidate for candidate in new.lines if candidate.sku == line.sku), None)
        facts = {"new_order_id": new.order_id, "line_id": line.line_id, "sku": line.sku}
        if new_line is None:
            raise PolicyRefusal(
                Rule.PRICE_PROTECT,
                "抱歉，新订单中没有找到同款商品，保价需要以更低价格拍下同一款商品，请核对后再提交。",
                "Sorry, the new order does not contain the same item; price protection compares the same "
                "item at its lower price. Please check and try again.",
                facts,
            )
        facts |= {"unit_price": _fmt(line.unit_price), "new_unit_price": _fmt(new_line.unit_price)}
        if request.new_unit_price is not None and request.new_unit_price != new_line.unit_price:
            raise PolicyRefusal(
                Rule.PRICE_PROTECT,
                f"抱歉，您填写的新价格与新订单中的价格（{new_line.unit_price:.2f}元）不一致，请核对后再提交。",
                f"Sorry, the new price you entered does not match the price on the new order "
                f"({new_line.unit_price:.2f} CNY). Please check and try again.",
                facts | {"requested_new_unit_price": _fmt(request.new_unit_price)},
            )
        difference = price_difference(line.unit_price, new_line.unit_price, quantity)
        if difference <= 0:
            raise PolicyRefusal(
                Rule.PRICE_PROTECT,
                "您好，经核对，新订单的价格并不低于您购买时的价格，暂无差价可退，感谢理解。",
                "We checked: the price on the new order is not lower than what you paid, so there is no "
                "difference to refund. Thank you for understanding.",
                facts | {"difference": _fmt(ZERO)},
            )
        differences[line.line_id] = difference
    return differences


def check_cap(order: Order, line_amounts: Mapping[str, Decimal], history: Mapping[str, LineHistory]) -> None:
    """R-COMP-CAP: a line never takes more than its remaining allowance."""
    remaining = {line_id: remaining_allowance(order, line_id, history) for line_id in line_amounts}
    for line_id, take in line_amounts.items():
        if take > remaining[line_id]:
            hist = _history(history, line_id)
            facts = {
                "line_id": line_id,
                "requested_amount": _fmt(take),
                "remaining_allowance": _fmt(remaining[line_id]),
                "remaining_allowance_total": _fmt(sum(remaining.values(), ZERO)),
                "paid_amount": _fmt(order.line(line_id).paid_amount),
                "compensated": _fmt(hist.compensated),
            }
            facts |= {f"remaining_allowance.{lid}": _fmt(value) for lid, value in remaining.items()}
            raise PolicyRefusal(
                Rule.COMP_CAP,
                f"抱歉，该商品实付{order.line(line_id).paid_amount:.2f}元，已退款/补偿{hist.compensated:.2f}元，"
                f"剩余可申请金额为{remaining[line_id]:.2f}元，本次申请（{take:.2f}元）超出了可申请范围。"
                "您可以按剩余金额重新申请，感谢理解。",
                f"Sorry: you paid {order.line(line_id).paid_amount:.2f} CNY for this item and "
                f"{hist.compensated:.2f} CNY has already been refunded or compensated, so at most "
                f"{remaining[line_id]:.2f} CNY remains; this request ({take:.2f} CNY) is more than that. "
                "You are welcome to ask again for the remaining amount.",
                facts,
            )


def allocate(total: Decimal, weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Split `total` over the keys in proportion to `weights`, to the cent (largest remainder).

    No share exceeds its weight when `total` ≤ the sum of the weights.
    """
    keys = list(weights)
    weight_sum = sum(weights.values(), ZERO)
    if weight_sum <= 0:
        return {key: (total if index == 0 else ZERO) for index, key in enumerate(keys)}
    total_cents = int(total * 100)
    exact = {key: Decimal(total_cents) * weights[key] / weight_sum for key in keys}
    cents = {key: int(exact[key]) for key in keys}
    left = total_cents - sum(cents.values())
    for key in sorted(keys, key=lambda key: exact[key] - cents[key], reverse=True)[:left]:
        cents[key] += 1
    return {key: Decimal(cents[key]) / 100 for key in keys}


# ---------------------------------------------------------------- options


# (remedy, reason) pairs offered per line; a reason is listed separately where its window or rule differs.
OPTION_KINDS: tuple[tuple[Remedy, Reason | None], ...] = (
    (Remedy.RETURN_REFUND, Reason.NO_REASON),
    (Remedy.RETURN_REFUND, Reason.SIZE),
    (Remedy.RETURN_REFUND, Reason.WORKMANSHIP),
    (Remedy.EXCHANGE, Reason.NO_REASON),
    (Remedy.EXCHANGE, Reason.SIZE),
    (Remedy.EXCHANGE, Reason.WORKMANSHIP),
    (Remedy.REFUND_ONLY, None),
    (Remedy.RESHIP, Reason.DAMAGED),
    (Remedy.RESHIP, Reason.LOST),
    (Remedy.PRICE_PROTECTION, Reason.PRICE_DROP),
    (Remedy.CASHBACK, Reason.SHIPPING_FEE),
)


def after_sales_options(order: Order, history: Mapping[str, LineHistory], now: datetime) -> list[Option]:
    """What each line may ask for now, one option per line and (remedy, reason), with deadlines."""
    require_aware(now, "now")
    return [
        _option(order, line, remedy, reason, history, now)
        for line in order.lines
        for remedy, reason in OPTION_KINDS
    ]


def _option(
    order: Order,
    line: OrderLine,
    remedy: Remedy,
    reason: Reason | None,
    history: Mapping[str, LineHistory],
    now: datetime,
) -> Option:
    def option(eligible: bool, deadline: datetime | None, rule: str, zh: str, en: str) -> Option:
        return Option(line.line_id, remedy, reason, eligible, deadline, rule, zh, en)

    hist = _history(history, line.line_id)
    try:
        # refund_only without a reason: judged as a goods refund (`other` is allowed at every stage).
        eligibility = _eligibility(order, line, remedy, reason or Reason.OTHER, hist, now)
    except PolicyRefusal as refusal:
        return option(False, refusal.deadline, refusal.rule, refusal.message_zh, refusal.message_en)
    takes_value = remedy is not Remedy.EXCHANGE and reason is not Reason.SHIPPING_FEE
    if takes_value and remaining_allowance(order, line.line_id, history) <= 0:
        return option(
            False,
            eligibility.deadline,
            Rule.COMP_CAP,
            "该商品的实付金额已全部退款或补偿，暂无可申请的金额。",
            "The full amount paid for this item has already been refunded or compensated.",
        )
    zh, en = _eligible_message(remedy, reason, eligibility)
    return option(True, eligibility.deadline, eligibility.rules[0], zh, en)


def _eligible_message(remedy: Remedy, reason: Reason | None, eligibility: _Eligibility) -> tuple[str, str]:
    remedy_zh, remedy_en = REMEDY_LABELS[remedy]
    zh, en = f"可申请{remedy_zh}", f"You can ask for {remedy_en}"
    if reason is not None:
        reason_zh, reason_en = REASON_LABELS[reason]
        zh, en = f"{zh}（{reason_zh}）", f"{en} ({reason_en})"
    if eligibility.deadline is not None:
        zh += f"，请在{_local(eligibility.deadline)}（北京时间）前申请"
        en += f" before {_local(eligibility.deadline)} (Beijing time)"
    zh, en = zh + "。", en + "."
    notes: Iterable[tuple[Rule, str, str]] = (
        (
            Rule.RESALEABLE,
            "退回商品需吊牌完好、未穿未洗、不影响二次销售。",
            " Returned items must keep their tags and be unworn and unwashed.",
        ),
        (
            Rule.RO_SHIPPED,
            "包裹已发出，我们会先联系快递拦截，拦截成功后退款，请拒收包裹。",
            " The parcel has shipped: we will ask the carrier to intercept it and refund once it is on "
            "its way back; please refuse it at the door.",
        ),
        (
            Rule.RO_RECEIVED,
            "签收后仅退款适用于退运费、退差价、质量问题补偿、售前承诺的优惠或商品破损（不补发）等情况。",
            " After delivery, a refund without a return covers shipping fees, price differences, quality "
            "compensation, a discount promised before purchase, or goods that arrived broken.",
        ),
        (
            Rule.PRICE_PROTECT,
            "需确认收货，并以更低价格拍下同款新订单。",
            " The order must be received, and you need to place a new order for the same item at the lower "
            "price.",
        ),
    )
    for rule, note_zh, note_en in notes:
        if rule in eligibility.rules:
            zh, en = zh + note_zh, en + note_en
    needed = EVIDENCE_REQUIRED.get(reason, 0) if reason is not None else 0
    if needed:
        zh += f"请上传至少{needed}张照片或一段视频。"
        en += f" Please attach at least {needed} photo{'s' if needed > 1 else ''} or a video."
    return zh, en


# ---------------------------------------------------------------- formatting


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(SHANGHAI).isoformat()


def _local(value: datetime) -> str:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _fmt(value: Decimal) -> str:
    return f"{money(value):.2f}"
