"""Reactions to logistics-watcher's alerts and parcel milestones (logistics.alerts.v1, logistics.parcels.v1)."""

from __future__ import annotations

from aftersales_shared.consumer import Handler

HANDLERS: dict[str, Handler] = {}
