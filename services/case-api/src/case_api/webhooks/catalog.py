"""What may be subscribed to: every event type in the contract registry that a storefront may see (the case
lifecycle, cashback, payout results, logistics alerts and parcel milestones, buyer messages), all but the raw
tracking scans. A type added to the registry is subscribable from then on."""

from __future__ import annotations

from aftersales_shared import contracts, topics

NOT_FOR_WEBHOOKS = frozenset({topics.TRACKING})


def subscribable_types() -> frozenset[str]:
    return frozenset(t for t, c in contracts.REGISTRY.items() if c.topic not in NOT_FOR_WEBHOOKS)


def source_topics() -> tuple[str, ...]:
    """The topics case-api reads to fan the subscribable events out (its own and the other services')."""
    return tuple(sorted({contracts.REGISTRY[t].topic for t in subscribable_types()}))
