"""Kafka topic names (versioned). Every topic has a `<topic>.dlq`."""

CASES = "aftersales.cases.v1"
CASHBACK = "aftersales.cashback.v1"
TRACKING = "logistics.tracking.v1"
ALERTS = "logistics.alerts.v1"
PARCELS = "logistics.parcels.v1"
PAYOUT_RESULTS = "payouts.results.v1"

ALL = (CASES, CASHBACK, TRACKING, ALERTS, PARCELS, PAYOUT_RESULTS)


def dlq(topic: str) -> str:
    return f"{topic}.dlq"
