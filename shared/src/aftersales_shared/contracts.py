"""The event-contract registry: every event type the platform publishes, with its payload model, its topic,
the payload field that is its Kafka key (the aggregate that needs ordering), who produces it and who reads
it outside this repository.

Producers queue an entry (`outbox.add_event(session, contracts.CASHBACK_APPROVED, payload, ...)`), so
topic, key and type come from here; consumers register handlers under an entry's `type` and parse with its
`payload`. A new event type is added here first; tests/test_contracts.py fails for a type consumed but never
produced, or produced but read by no service and no reader named in `readers`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from . import topics
from .events import (
    CaseEvent,
    CashbackApproved,
    CashbackCancelled,
    CashbackTaskChanged,
    CustomerNotification,
    LogisticsAlert,
    ParcelMilestone,
    PayoutResult,
    TrackingEvent,
)

# Readers outside this repository (the only consumers a contract may have besides our services)
STOREFRONTS = "storefront backends (the case lifecycle, coded against docs/events)"
MESSAGING = "the customer-messaging channel (delivers the zh/en message to the buyer)"


@dataclass(frozen=True)
class Contract:
    type: str  # the CloudEvent type, versioned
    payload: builtins.type[BaseModel]
    topic: str
    key: str  # the payload field whose value is the Kafka message key
    readers: tuple[str, ...] = ()  # readers outside this repository

    @property
    def producer(self) -> str:
        return topics.PRODUCER[self.topic]

    def key_of(self, data: BaseModel) -> str:
        return str(getattr(data, self.key))


def _case(name: str, *readers: str) -> Contract:
    return Contract(
        f"aftersales.case.{name}.v1", CaseEvent, topics.CASES, "order_id", (STOREFRONTS, *readers)
    )


# case-api: one event per change of a case, named after its action in the past tense (see case_event)
CASE_EVENT_NAMES = (
    "opened",
    "retention_recorded",
    "approved",
    "rejected",
    "withdrawn",
    "evidence_attached",
    "return_tracking_submitted",
    "return_received",
    "inspected",
    "refunded",
    "intercept_requested",
    "intercepted",
    "reported_to_carrier",
    "carrier_verdict_recorded",
    "reshipped",
    "replacement_shipped",  # R-EXCHANGE-7D: an exchange's replacement parcel
    "closed",
    "payout_failed",  # the cashback paying a price-protection or cashback case failed: back to open
    # notes on a case's timeline, without a move
    "reship_flagged",
    "carrier_sla_escalated",
    "logistics_alert_resolved",
    "false_delivery_alert_confirmed",
    "parcel_returned",
    "replacement_signed",  # R-EXCHANGE-7D: the replacement's delivery, its own sign-off
)
CASE_EVENTS: dict[str, Contract] = {name: _case(name) for name in CASE_EVENT_NAMES}
CASE_OPENED = CASE_EVENTS["opened"]
CASE_INTERCEPT_REQUESTED = CASE_EVENTS["intercept_requested"]
NOTIFICATION_REQUESTED = Contract(
    "aftersales.notification.requested.v1", CustomerNotification, topics.CASES, "order_id", (MESSAGING,)
)
CASHBACK_APPROVED = Contract(
    "aftersales.cashback.approved.v1", CashbackApproved, topics.CASHBACK, "cashback_task_id"
)
CASHBACK_CANCELLED = Contract(
    "aftersales.cashback.cancelled.v1", CashbackCancelled, topics.CASHBACK, "cashback_task_id"
)
# read by no service: for storefronts (webhooks) that follow a task from its entry to its verdict
CASHBACK_CREATED = Contract(
    "aftersales.cashback.created.v1", CashbackTaskChanged, topics.CASHBACK, "cashback_task_id", (STOREFRONTS,)
)
CASHBACK_REJECTED = Contract(
    "aftersales.cashback.rejected.v1",
    CashbackTaskChanged,
    topics.CASHBACK,
    "cashback_task_id",
    (STOREFRONTS,),
)

# warehouse systems (and carriers' pushes relayed by them)
TRACKING_SCAN = Contract("logistics.tracking.scan.v1", TrackingEvent, topics.TRACKING, "tracking_no")

# logistics-watcher
ALERT_OPENED = Contract("logistics.alert.opened.v1", LogisticsAlert, topics.ALERTS, "tracking_no")
ALERT_RESOLVED = Contract("logistics.alert.resolved.v1", LogisticsAlert, topics.ALERTS, "tracking_no")
ALERT_CONFIRMED = Contract("logistics.alert.confirmed.v1", LogisticsAlert, topics.ALERTS, "tracking_no")
PARCEL_DELIVERED = Contract("logistics.parcel.delivered.v1", ParcelMilestone, topics.PARCELS, "tracking_no")
PARCEL_INTERCEPTED = Contract(
    "logistics.parcel.intercepted.v1", ParcelMilestone, topics.PARCELS, "tracking_no"
)
PARCEL_RETURNED = Contract("logistics.parcel.returned.v1", ParcelMilestone, topics.PARCELS, "tracking_no")
ALERT_EVENTS = {"opened": ALERT_OPENED, "resolved": ALERT_RESOLVED, "confirmed": ALERT_CONFIRMED}
PARCEL_EVENTS = {
    "delivered": PARCEL_DELIVERED,
    "intercepted": PARCEL_INTERCEPTED,
    "returned": PARCEL_RETURNED,
}

# payout-worker
PAYOUT_PAID = Contract("payouts.payout.paid.v1", PayoutResult, topics.PAYOUT_RESULTS, "cashback_task_id")
PAYOUT_FAILED = Contract("payouts.payout.failed.v1", PayoutResult, topics.PAYOUT_RESULTS, "cashback_task_id")
PAYOUT_EVENTS = {"paid": PAYOUT_PAID, "failed": PAYOUT_FAILED}


def _index(contracts: Iterable[Contract]) -> dict[str, Contract]:
    index: dict[str, Contract] = {}
    for contract in contracts:
        assert contract.type not in index, f"{contract.type} registered twice"
        index[contract.type] = contract
    return index


REGISTRY: dict[str, Contract] = _index(
    [
        *CASE_EVENTS.values(),
        NOTIFICATION_REQUESTED,
        CASHBACK_APPROVED,
        CASHBACK_CANCELLED,
        CASHBACK_CREATED,
        CASHBACK_REJECTED,
        TRACKING_SCAN,
        *ALERT_EVENTS.values(),
        *PARCEL_EVENTS.values(),
        *PAYOUT_EVENTS.values(),
    ]
)


class UnregisteredEvent(LookupError):
    pass


def case_event(name: str) -> Contract:
    """The contract of a case's change named `name` (`approved`, `reship_flagged`)."""
    try:
        return CASE_EVENTS[name]
    except KeyError:
        raise UnregisteredEvent(f"aftersales.case.{name}.v1 is not in aftersales_shared.contracts") from None


def by_type(type: str) -> Contract | None:
    return REGISTRY.get(type)


def on_topic(topic: str) -> list[Contract]:
    return [c for c in REGISTRY.values() if c.topic == topic]
