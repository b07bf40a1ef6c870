"""The HTTP contract of case-api (API.md): request and response models with examples."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aftersales_shared.clock import SystemClock
from aftersales_shared.events import Payee
from aftersales_shared.fields import ID_MAX_LENGTH, ID_PATTERN, Instant, NulFree
from aftersales_shared.money import Money, MoneyOut
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .domain.workflow import Action

Id = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)


class Strict(NulFree):
    model_config = ConfigDict(extra="forbid")


# Field validators (not model validators), so that a 422 names the field that is wrong.
def not_negative(value: Decimal | None) -> Decimal | None:
    if value is not None and value < 0:
        raise ValueError("cannot be negative")
    return value


def positive(value: Decimal | None) -> Decimal | None:
    if value is not None and value <= 0:
        raise ValueError("must be positive")
    return value


class Buyer(Strict):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(None, max_length=32)
    address: str | None = Field(None, max_length=500)
    alipay_account: str | None = Field(None, max_length=100)


class LineIn(Strict):
    line_id: str = Id
    sku: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    size: str | None = Field(None, max_length=32)
    color: str | None = Field(None, max_length=32)
    category: str | None = Field(None, max_length=64)
    quantity: int = Field(ge=1, le=10_000)
    unit_price: Money
    paid_amount: Money
    no_reason_return: bool = True

    _amounts = field_validator("unit_price", "paid_amount")(not_negative)


class Shipment(Strict):
    carrier: str = Field(min_length=1, max_length=64)
    tracking_no: str = Field(min_length=1, max_length=64)
    warehouse_id: str | None = Field(None, max_length=64)
    shipped_at: Instant | None = None


def _dated_order_examples(schema: dict[str, Any]) -> None:
    """The example order dated from today (paid 3 days ago, shipped 2, signed for yesterday): an example
    signed on a fixed date would be refused by R-BEYOND-7D a week later."""
    today = SystemClock().now().astimezone(BEIJING).replace(microsecond=0)
    dates = {f"{name}_at": (today - timedelta(days=days)).isoformat() for name, days in DAYS_AGO.items()}
    example = {**ORDER_EXAMPLE, "paid_at": dates["paid_at"], "signed_at": dates["signed_at"]}
    example["shipment"] = {**ORDER_EXAMPLE["shipment"], "shipped_at": dates["shipped_at"]}
    schema["examples"] = [example]


BEIJING = ZoneInfo("Asia/Shanghai")
DAYS_AGO = {"paid": 3, "shipped": 2, "signed": 1}
ORDER_EXAMPLE: dict[str, Any] = {
    "shop_id": "shop-1",
    "platform": "tmall",
    "buyer": {
        "id": "b-1",
        "name": "张三",
        "phone": "13812345678",
        "address": "浙江省杭州市西湖区文三路 1 号",
        "alipay_account": "zhangsan@example.com",
    },
    "paid_at": "2026-11-01T10:00:00+08:00",
    "lines": [
        {
            "line_id": "L1",
            "sku": "TEE-001-M-BLK",
            "name": "纯棉T恤",
            "size": "M",
            "color": "black",
            "category": "tops",
            "quantity": 2,
            "unit_price": "129.00",
            "paid_amount": "238.00",
        }
    ],
    "shipping_fee": "10.00",
    "shipping_insurance": False,
    "shipment": {
        "carrier": "SF",
        "tracking_no": "SF1234567890",
        "warehouse_id": "WH-HZ",
        "shipped_at": "2026-11-02T09:00:00+08:00",
    },
    "signed_at": "2026-11-03T15:20:00+08:00",
}


class OrderIn(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_dated_order_examples)

    shop_id: str = Id
    platform: Literal["tmall", "taobao", "jd", "douyin", "other"]
    buyer: Buyer
    paid_at: Instant
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    shipping_fee: Money = Decimal("0.00")
    shipping_insurance: bool = False
    shipment: Shipment | None = None
    signed_at: Instant | None = None

    _fee = field_validator("shipping_fee")(not_negative)

    @model_validator(mode="after")
    def _consistent(self) -> OrderIn:
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("line_id must be unique within the order")
        if self.signed_at is not None and self.signed_at < self.paid_at:
            raise ValueError("signed_at cannot be before paid_at")
        return self


class LinePublic(LineIn):
    unit_price: MoneyOut
    paid_amount: MoneyOut
    compensated: MoneyOut = Field(
        description="refunds, price protection, cashback and reshipped value so far"
    )
    remaining_allowance: MoneyOut


class OrderPublic(BaseModel):
    order_id: str
    shop_id: str
    platform: str
    buyer: Buyer
    paid_at: datetime
    lines: list[LinePublic]
    shipping_fee: MoneyOut
    shipping_insurance: bool
    shipment: Shipment | None
    signed_at: datetime | None
    subjective_returns_closed: bool
    version: int
    created_at: datetime
    updated_at: datetime


class OptionPublic(BaseModel):
    line_id: str
    remedy: str
    reason: str | None
    eligible: bool
    deadline: datetime | None
    rule: str
    message_zh: str
    message_en: str


class OptionsPublic(BaseModel):
    order_id: str
    evaluated_at: datetime
    options: list[OptionPublic]


Remedy = Literal[
    "refund_only", "return_refund", "exchange", "reship", "price_protection", "cashback", "consultation"
]
Reason = Literal[
    "no_reason",
    "size",
    "workmanship",
    "usage",
    "damaged",
    "lost",
    "missing_item",
    "wrong_item",
    "no_tracking_update",
    "false_delivery",
    "empty_parcel",
    "price_drop",
    "shipping_fee",
    "other",
    # consultation (R-USAGE)
    "fading",
    "odor",
    "snag",
    "pilling",
]


class CaseLineIn(Strict):
    line_id: str = Id
    quantity: int = Field(ge=1, le=10_000)


class CaseCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "TB20261101001",
                    "lines": [{"line_id": "L1", "quantity": 1}],
                    "remedy": "return_refund",
                    "reason": "no_reason",
                    "description": "颜色和图片不一样,不想要了",
                    "evidence_ids": [],
                }
            ]
        },
    )

    order_id: str = Id
    lines: list[CaseLineIn] = Field(min_length=1, max_length=200)
    remedy: Remedy
    reason: Reason
    description: str | None = Field(None, max_length=2000)
    amount: Money | None = None
    evidence_ids: list[str] = Field(default_factory=list, max_length=20)
    new_order_id: str | None = Field(
        None,
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="price protection: the new, cheaper order",
    )
    new_unit_price: Money | None = None

    _amount = field_validator("amount")(positive)
    _new_unit_price = field_validator("new_unit_price")(not_negative)

    @model_validator(mode="after")
    def _valid(self) -> CaseCreate:
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("each line_id appears once")
        return self


class CaseEvidencePublic(BaseModel):
    """A file attached to a case."""

    evidence_id: str
    kind: str = Field(description="`image` or `video`, as proven by decoding the file when it was uploaded")
    sha256: str
    content_type: str
    reused: bool = Field(
        False,
        description="The same file (same sha256) already backs a case of another order, of this shop or of "
        "another one: a warning for support (R-EVIDENCE counts distinct files, not reuse).",
    )
    reused_from_order_id: str | None = Field(
        None,
        description="That other order, named only when it is of this case's shop; null when the file is not "
        "reused or when only another shop's orders used it (another shop's order ids are never shown).",
    )


class CasePublic(BaseModel):
    """A case as the API shows it. 售后工单。"""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "case_01jd2v6b4q8m7c5x3w9e0r1t2y",
                    "order_id": "TB20261101001",
                    "shop_id": "shop-1",
                    "remedy": "return_refund",
                    "reason": "no_reason",
                    "status": "awaiting_return",
                    "stage": "received",
                    "description": "颜色和图片不一样,不想要了",
                    "lines": [{"line_id": "L1", "quantity": 1}],
                    "amount": "119.00",
                    "line_amounts": {"L1": "119.00"},
                    "details": {},
                    "needs_retention": True,
                    "evidence_missing": 0,
                    "evidence": [],
                    "version": 3,
                    "created_at": "2026-11-05T02:00:00Z",
                    "updated_at": "2026-11-05T02:30:00Z",
                }
            ]
        }
    )

    id: str
    order_id: str
    shop_id: str
    remedy: str
    reason: str
    status: str
    stage: str
    description: str | None
    lines: list[dict[str, Any]]
    amount: MoneyOut | None
    line_amounts: dict[str, str]
    details: dict[str, Any]
    needs_retention: bool
    evidence_missing: int
    evidence: list[CaseEvidencePublic] = []
    assignee: str | None = None
    version: int
    created_at: datetime
    updated_at: datetime


class TimelineEntry(BaseModel):
    id: str
    action: str
    actor: str
    from_status: str | None
    to_status: str
    data: dict[str, Any]
    at: datetime


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class ActionBody(Strict):
    """What every action takes: the version the caller saw (or an If-Match header); stale → 409.
    每个操作都可带 `expected_version`(或 If-Match 请求头):版本过期则 409。"""

    model_config = _examples({"expected_version": 1})

    expected_version: int | None = Field(
        None, ge=1, description="the case's version you read / 您读取到的工单版本号"
    )


class AssigneeBody(ActionBody):
    """Who works the case: a person's principal name (`staff:<username>`, or an API key's name), or null to
    release it. Support takes a case for themself or releases their own; ops assigns anyone.
    处理人:员工身份名(`staff:<用户名>` 或 API 密钥名称),null 表示释放。
    客服只能领取或释放自己的工单,运营可指派任何人。"""

    model_config = _examples({"assignee": "staff:alice", "expected_version": 3}, {"assignee": None})

    assignee: str | None = Field(
        min_length=1, max_length=128, pattern=r"^\S(.*\S)?$", description="处理人 / the assignee (null: none)"
    )


class NotesBody(ActionBody):
    """An action with an optional note. 可附备注的操作。"""

    model_config = _examples({"expected_version": 2, "notes": "已联系买家"})

    notes: str | None = Field(None, max_length=2000, description="free text for the timeline / 备注")


class RecordRetentionBody(ActionBody):
    """The retention offer made to the buyer and its outcome (R-RETENTION). 挽留:提供的方案与买家的答复。"""

    model_config = _examples(
        {"expected_version": 1, "offer": "coupon", "outcome": "declined", "real_reason": "color"}
    )

    offer: Literal["gift", "coupon", "keep_as_gift", "other_style", "none"] = Field(
        description="what was offered / 挽留方案"
    )
    outcome: Literal["accepted", "declined"] = Field(
        description="accepted retains the case, declined moves it on / 接受则挽留成功,拒绝则继续处理"
    )
    real_reason: str | None = Field(None, max_length=500, description="the buyer's real reason / 真实原因")


class RejectBody(ActionBody):
    """Refuse the case, with a code and a courteous message. 驳回:原因代码与给买家的说明。"""

    model_config = _examples(
        {"expected_version": 1, "reason_code": "not_eligible", "message": "抱歉,该商品已超过七天无理由期限"}
    )

    reason_code: str = Field(max_length=64, description="why / 驳回原因代码")
    message: str | None = Field(None, max_length=2000, description="shown to the buyer / 给买家的说明")


class WithdrawBody(ActionBody):
    """The buyer withdraws the case. 买家撤销申请。"""

    model_config = _examples({"expected_version": 1, "message": "不退了"})

    message: str | None = Field(None, max_length=2000, description="why, if said / 撤销说明")


class AttachEvidenceBody(ActionBody):
    """Link uploaded files (POST /v1/evidence) to the case (R-EVIDENCE). 关联已上传的凭证。"""

    model_config = _examples({"expected_version": 1, "evidence_ids": ["ev_01JD2V6B4Q"]})

    evidence_ids: list[str] = Field(max_length=20, description="ids from POST /v1/evidence / 凭证编号")


class SubmitReturnTrackingBody(ActionBody):
    """The buyer's return parcel. 买家寄回的快递单号。"""

    model_config = _examples({"expected_version": 3, "carrier": "YTO", "tracking_no": "YT9876543210"})

    carrier: str = Field(max_length=64, description="carrier code, e.g. SF, YTO / 快递公司")
    tracking_no: str = Field(max_length=64, description="tracking number / 运单号")


class SizeMarksIn(Strict):
    """R-SIZE: the size printed on each label. 各处码标。"""

    hang_tag: str | None = Field(None, min_length=1, max_length=32, description="吊牌码标")
    wash_label: str | None = Field(None, min_length=1, max_length=32, description="洗水唛码标")
    neck_label: str | None = Field(None, min_length=1, max_length=32, description="领标码标")


class RecordInspectionBody(ActionBody):
    """The inspection as data (R-INSPECT): of a received return (tags on, worn, washed decide R-RESALEABLE
    for a no-reason or size case), or a check while the case is open (size marks, parcel weight).
    验货:退回商品的验收(吊牌、穿着、洗涤决定能否二次销售),或处理中的核实(码标、包裹重量)。"""

    model_config = _examples(
        {"expected_version": 5, "tags_on": True, "worn": False, "washed": False, "notes": "吊牌完好"},
        {
            "expected_version": 2,
            "size_marks": {"hang_tag": "M", "wash_label": "M", "neck_label": "L"},
            "parcel_weight_g": 420,
            "expected_weight_g": 650,
        },
    )

    passed: bool | None = Field(
        None,
        description="a return's result where the checks do not decide it; under R-RESALEABLE the checks "
        "decide and a contradicting value is refused / 验货是否通过",
    )
    notes: str | None = Field(None, max_length=2000, description="what was found / 验货备注")
    tags_on: bool | None = Field(None, description="the hang tag is on and intact / 吊牌完好")
    worn: bool | None = Field(None, description="signs of wear / 是否穿过")
    washed: bool | None = Field(None, description="signs of washing / 是否洗过")
    size_marks: SizeMarksIn | None = None
    parcel_weight_g: int | None = Field(
        None, ge=0, le=1_000_000, description="grams, as weighed by the warehouse or carrier / 实称重量(克)"
    )
    expected_weight_g: int | None = Field(
        None, ge=0, le=1_000_000, description="grams the goods should weigh / 应有重量(克)"
    )


class RefundBody(ActionBody):
    """Refund the buyer; the case's amount when `amount` is left out. 退款,不填金额则按工单金额。"""

    model_config = _examples({"expected_version": 6, "amount": "119.00"})

    amount: Money | None = Field(None, description="CNY, two places / 退款金额(元)")


class RecordCarrierVerdictBody(ActionBody):
    """The carrier's answer to a loss or false-delivery report. 快递公司的核实结论。"""

    model_config = _examples({"expected_version": 4, "confirmed": True, "verdict": "中转丢失"})

    confirmed: bool = Field(description="the carrier confirms the fault / 快递公司是否确认责任")
    verdict: str | None = Field(None, max_length=2000, description="their words / 结论说明")


class CreateReshipBody(ActionBody):
    """Ship the goods again (a reship order); the case's lines when `reship_lines` is left out. 补发。"""

    model_config = _examples({"expected_version": 4, "reship_lines": [{"line_id": "L1", "quantity": 1}]})

    reship_lines: list[CaseLineIn] | None = Field(
        None, max_length=200, description="what to reship / 补发明细"
    )
    notes: str | None = Field(None, max_length=2000, description="备注")


class ShipReplacementBody(ActionBody):
    """The replacement parcel of an approved exchange (R-EXCHANGE-7D); the watcher follows it and its delivery
    opens the replacement's own 7-day window. 换货:换出商品的快递。"""

    model_config = _examples(
        {
            "expected_version": 4,
            "carrier": "SF",
            "tracking_no": "SF2000001",
            "shipped_at": "2026-11-08T10:00:00+08:00",
        }
    )

    carrier: str = Field(min_length=1, max_length=64, description="carrier code / 快递公司")
    tracking_no: str = Field(min_length=1, max_length=64, description="tracking number / 运单号")
    shipped_at: Instant = Field(description="when it left the warehouse / 发出时间")


# Each action's request body: the OpenAPI documents one operation per action with its own body, and the
# handler builds the action's command (domain/commands.py) from the body's fields. A new action adds its
# body here.
ACTION_BODIES: dict[Action, type[ActionBody]] = {
    Action.record_retention: RecordRetentionBody,
    Action.approve: ActionBody,
    Action.reject: RejectBody,
    Action.withdraw: WithdrawBody,
    Action.attach_evidence: AttachEvidenceBody,
    Action.submit_return_tracking: SubmitReturnTrackingBody,
    Action.record_receipt: NotesBody,
    Action.record_inspection: RecordInspectionBody,
    Action.refund: RefundBody,
    Action.request_intercept: NotesBody,
    Action.confirm_intercept: NotesBody,
    Action.report_to_carrier: NotesBody,
    Action.record_carrier_verdict: RecordCarrierVerdictBody,
    Action.create_reship: CreateReshipBody,
    Action.ship_replacement: ShipReplacementBody,
    Action.close: NotesBody,
}


class EvidencePublic(BaseModel):
    id: str
    sha256: str
    content_type: str = Field(
        description="What decoding found: image/jpeg, image/png, image/webp, image/heic, image/heif, "
        "image/avif, video/mp4 or video/quicktime"
    )
    size: int
    kind: str = Field(description="`image` (a photo that decoded) or `video` (a container with a duration)")
    format: str | None = Field(None, description="jpeg, png, webp, heic, heif, avif, mp4 or mov")
    width: int | None = Field(None, description="pixels, for a photo")
    height: int | None = Field(None, description="pixels, for a photo")
    duration_seconds: float | None = Field(None, description="for a video, from its `mvhd` box")
    created_at: datetime


class CashbackCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "order_id": "TB20261101001",
                    "line_id": "L1",
                    "case_id": None,
                    "reason": "shipping_fee",
                    "amount": "12.00",
                    "payee": {"alipay_account": "zhangsan@example.com", "name": "张三"},
                }
            ]
        },
    )

    order_id: str = Id
    line_id: str = Id
    case_id: str | None = Field(None, max_length=40)
    reason: Literal["price_difference", "shipping_fee", "refund_not_possible_online", "other"]
    amount: Money
    payee: Payee
    note: str | None = Field(None, max_length=1000)
    postage_receipt: Money | None = Field(
        None,
        description="shipping_fee only, support only: the return postage on the buyer's receipt, when it is "
        "above the order's shipping fee (R-POSTAGE)",
    )

    @field_validator("amount")
    @classmethod
    def _transferable(cls, amount: Decimal) -> Decimal:
        if amount < Decimal("0.10"):
            raise ValueError("amount must be at least 0.10 (the smallest transfer)")
        return amount


class CashbackPublic(BaseModel):
    id: str
    order_id: str
    shop_id: str
    line_id: str
    case_id: str | None
    reason: str
    amount: MoneyOut
    payee: dict[str, Any]
    status: str
    note: str | None
    verified_by: str | None
    verified_at: datetime | None
    rejection_reason: str | None
    payout_id: str | None
    out_biz_no: str | None
    failure_code: str | None
    paid_at: datetime | None
    postage_receipt: MoneyOut | None = None
    cancelled_at: datetime | None = None
    clawback_requested_at: datetime | None = Field(
        None, description="the grant was withdrawn after the transfer: ops recovers the money"
    )
    version: int
    created_at: datetime
    updated_at: datetime


class CashbackDecision(Strict):
    expected_version: int | None = Field(None, ge=1)
    reason: str | None = Field(None, max_length=500, description="why it was rejected")
