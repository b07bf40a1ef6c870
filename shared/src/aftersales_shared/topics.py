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


# Who may write each topic (ARCHITECTURE.md) and what each service reads: the broker's ACLs are made from
# these (bus/acls.py), and a service creates at start only the topics it uses.
WAREHOUSE = "warehouse"  # the principal of the warehouse systems that publish tracking scans
PRODUCER = {
    CASES: "case-api",
    CASHBACK: "case-api",
    TRACKING: WAREHOUSE,
    ALERTS: "logistics-watcher",
    PARCELS: "logistics-watcher",
    PAYOUT_RESULTS: "payout-worker",
}
CONSUMED_BY = {
    # its own topics too: their events are fanned out to the shops' webhooks
    "case-api": (ALERTS, PARCELS, PAYOUT_RESULTS, CASES, CASHBACK),
    "logistics-watcher": (TRACKING, CASES),
    "payout-worker": (CASHBACK,),
}


def produced_by(principal: str) -> tuple[str, ...]:
    return tuple(topic for topic, producer in PRODUCER.items() if producer == principal)
