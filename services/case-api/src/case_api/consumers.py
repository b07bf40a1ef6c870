"""case-api's consumer group: the events of the other services, each handled in one place; and every
subscribable event (case-api's own too) fanned out to the webhooks that want it, in the transaction that
records it in the inbox. Two runners of the one group: the reactions' topics, and case-api's own topics."""

from __future__ import annotations

from aftersales_shared import topics
from aftersales_shared.clock import Clock
from aftersales_shared.consumer import ConsumerRunner, Handler, LockFirst
from aftersales_shared.signing import ResultVerifier
from fastapi import FastAPI

from .reactions import lock_orders_first, logistics, payouts
from .webhooks.catalog import subscribable_types
from .webhooks.fanout import with_fan_out

GROUP = "case-api"
REACTION_TOPICS = (topics.ALERTS, topics.PARCELS, topics.PAYOUT_RESULTS)


def reactions(verifier: ResultVerifier) -> dict[str, Handler]:
    """The other services' events case-api acts on; payout results only when payout-worker signed them."""
    return {**logistics.HANDLERS, **payouts.reactions(verifier)}


def handlers(clock: Clock, verifier: ResultVerifier) -> dict[str, Handler]:
    acts = reactions(verifier)
    return {**acts, **{t: with_fan_out(clock, acts.get(t)) for t in subscribable_types()}}


def consumers(app: FastAPI) -> list[ConsumerRunner]:
    def runner(names: list[str], lock_first: LockFirst | None = None) -> ConsumerRunner:
        return ConsumerRunner(
            bus=app.state.bus,
            sessions=app.state.sessions,
            clock=app.state.clock,
            group=GROUP,
            topics=names,
            handlers=handlers(app.state.clock, app.state.result_verifier),
            lock_first=lock_first,
        )

    own = [t for t in topics.CONSUMED_BY[GROUP] if t not in REACTION_TOPICS]
    # The reactions change orders, cases and tasks under the order's lock; the fan-out of case-api's own
    # events only adds deliveries, and needs none.
    return [runner(list(REACTION_TOPICS), lock_orders_first), runner(own)]
