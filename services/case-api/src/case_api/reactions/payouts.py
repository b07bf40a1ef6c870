"""Reactions to payout-worker's results (payouts.results.v1)."""

from __future__ import annotations

from aftersales_shared.consumer import Handler

HANDLERS: dict[str, Handler] = {}
