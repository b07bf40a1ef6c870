"""Carrier adapters: each carrier's own state codes mapped to the normalised statuses of API.md.

An event may carry `carrier_format` and `carrier_status` instead of (or beside) `status`; the adapter
for that format gives the status and, for sign-offs, who signed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from aftersales_shared.events import SignedBy, TrackingStatus

Normalised = tuple[TrackingStatus, SignedBy | None]


class UnknownCarrierStatus(ValueError):
    pass


# Kuaidi100 (快递100) `state` codes, with the sub-states of its detailed mode (resultv2=4).
KUAIDI100: Final[dict[str, Normalised]] = {
    "0": ("in_transit", None),  # 在途
    "1001": ("in_transit", None),  # 到达派件城市
    "1002": ("in_transit", None),  # 干线
    "1003": ("in_transit", None),  # 转递
    "7": ("in_transit", None),  # 转投
    "1": ("picked_up", None),  # 揽收
    "101": ("created", None),  # 已下单
    "102": ("created", None),  # 待揽收
    "103": ("picked_up", None),  # 已揽收
    "2": ("exception", None),  # 疑难
    "201": ("exception", None),  # 超时未签收
    "202": ("exception", None),  # 超时未更新
    "203": ("returning", None),  # 拒收(退件)
    "204": ("delivery_failed", None),  # 派件异常
    "205": ("exception", None),  # 柜或驿站超时未取
    "206": ("delivery_failed", None),  # 无法联系
    "207": ("exception", None),  # 超区
    "208": ("exception", None),  # 滞留
    "209": ("exception", None),  # 破损
    "3": ("delivered", None),  # 签收 (who signed not given)
    "301": ("delivered", "recipient"),  # 本人签收
    "302": ("delivered", None),  # 派件异常后签收
    "303": ("delivered", "agent"),  # 代签
    "304": ("delivered", "station"),  # 投柜或驿站签收 (locker or station: Kuaidi100 does not say which)
    "4": ("returned", None),  # 退签: the sender signed for the returned parcel
    "401": ("returned", None),  # 已销单
    "5": ("out_for_delivery", None),  # 派件
    "501": ("out_for_delivery", None),  # 投柜或驿站 (waiting to be collected)
    "6": ("returning", None),  # 退回
    "14": ("returning", None),  # 拒签: refused at the door, on its way back (an intercept succeeds so)
    "8": ("in_transit", None),  # 清关
    "10": ("in_transit", None),  # 待清关
    "11": ("in_transit", None),  # 清关中
    "12": ("in_transit", None),  # 已清关
    "13": ("exception", None),  # 清关异常
}


# Our carrier codes (the events' `carrier`) and Kuaidi100's company codes (快递公司编码), for subscribing.
KUAIDI100_COMPANIES: Final[dict[str, str]] = {
    "SF": "shunfeng",  # 顺丰速运
    "ZTO": "zhongtong",  # 中通快递
    "YTO": "yuantong",  # 圆通速递
    "STO": "shentong",  # 申通快递
    "YUNDA": "yunda",  # 韵达快递
    "JD": "jd",  # 京东物流
    "EMS": "ems",  # EMS
    "DEPPON": "debangkuaidi",  # 德邦快递 (parcels); its freight arm 德邦物流 is debangwuliu
    "JT": "jtexpress",  # 极兔速递 J&T
}
CARRIER_ALIASES: Final[dict[str, str]] = {"J&T": "JT", "JTEXPRESS": "JT", "DBL": "DEPPON", "JDL": "JD"}


def kuaidi100_company(carrier: str) -> str | None:
    """Kuaidi100's company code of a carrier (SF, ZTO, ... case-insensitive, or already a Kuaidi100 code);
    None for a carrier the table does not know (its parcels are not subscribed)."""
    code = carrier.strip().upper()
    code = CARRIER_ALIASES.get(code, code)
    if code in KUAIDI100_COMPANIES:
        return KUAIDI100_COMPANIES[code]
    lowered = carrier.strip().lower()
    return lowered if lowered in KUAIDI100_COMPANIES.values() or lowered == "debangwuliu" else None


def kuaidi100(code: str) -> Normalised:
    code = code.strip()
    if code in KUAIDI100:
        return KUAIDI100[code]
    # A sub-state we do not list yet (e.g. 210) behaves as its main state (the leading digit).
    if code.isdigit() and len(code) == 3 and code[0] in KUAIDI100:
        return KUAIDI100[code[0]]
    raise UnknownCarrierStatus(f"unknown Kuaidi100 state {code!r}")


ADAPTERS: Final[dict[str, Callable[[str], Normalised]]] = {"kuaidi100": kuaidi100}


def normalise(carrier_format: str, carrier_status: str) -> Normalised:
    adapter = ADAPTERS.get(carrier_format)
    if adapter is None:
        raise UnknownCarrierStatus(f"no adapter for carrier_format {carrier_format!r}")
    return adapter(carrier_status)
