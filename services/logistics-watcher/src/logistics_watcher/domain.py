"""A parcel's state from its scans: pure Python, no I/O, no clock.

Scans are placed by `occurred_at`, wherever they arrive from and in whatever order. The status never
moves backwards along the delivery progression: a late or replayed earlier scan joins the history
without undoing a later status, and a newer scan of an earlier stage (a carrier's "in transit" while
a refused parcel travels back) counts as movement without changing the status. Only a creation or
shipment scan may be dated before the parcel's earliest one of those (`is_before_shipment`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from aftersales_shared.events import AlertKind, Direction, SignedBy, TrackingStatus

# The delivery progression. `exception` and `lost` are carrier troubles outside it: they can follow
# and be followed by any status.
RANK: Final[dict[str, int]] = {
    "created": 0,
    "picked_up": 1,
    "in_transit": 2,
    "out_for_delivery": 3,
    "delivery_failed": 3,
    "delivered": 4,
    "returning": 5,
    "returned": 6,
}
OFF_PROGRESSION_RANK = 3  # where exception/lost sort among scans with the same time
NOT_PICKED_UP: Final = ("created",)
SHIPMENT: Final = ("created", "picked_up")  # the parcel's creation and shipment: nothing happens before
MOVING: Final = ("picked_up", "in_transit", "out_for_delivery", "delivery_failed", "returning")
CARRIER_TROUBLE: Final = ("exception", "lost")  # R-LOST: the carrier's lost / 疑难 states
TURNED_BACK: Final = ("returning", "returned")

KINDS: Final[tuple[AlertKind, ...]] = (
    "no_first_scan",
    "stalled",
    "suspected_lost",
    "suspected_false_delivery",
)
BIT: Final[dict[str, int]] = {kind: 1 << i for i, kind in enumerate(KINDS)}  # parcels.open_alerts

# R-FALSE-DELIVERY: how much each sign-off, and a missing out-for-delivery scan, weighs.
SIGNED_BY_SUSPICION: Final[dict[str | None, float]] = {
    None: 0.0,
    "recipient": 0.0,
    "locker": 0.4,
    "station": 0.4,
    "agent": 0.5,
    "other": 0.6,
}
NO_OUT_FOR_DELIVERY_SUSPICION: Final = 0.4


@dataclass(slots=True)
class Scan:
    """One normalised tracking event. Nothing changes a scan once made (`dataclasses.replace` makes another);
    it is not declared frozen because a frozen dataclass sets each field through `object.__setattr__`,
    which made building one cost 2 µs more, for every tracking event ingested (P3)."""

    event_id: str
    tracking_no: str
    carrier: str
    status: TrackingStatus
    occurred_at: datetime
    order_id: str | None = None
    shop_id: str | None = None
    warehouse_id: str | None = None
    direction: Direction | None = None  # None: the parcel's (outbound for a new parcel)
    signed_by: SignedBy | None = None
    location: str | None = None
    description: str | None = None
    carrier_status: str | None = None

    def sort_key(self) -> tuple[datetime, int, str]:
        return self.occurred_at, RANK.get(self.status, OFF_PROGRESSION_RANK), self.event_id


@dataclass(slots=True)
class Track:
    """What the scans say about a parcel."""

    status: str | None = None
    status_at: datetime | None = None
    last_event_at: datetime | None = None
    signed_by: str | None = None
    out_for_delivery_seen: bool = False
    delivered_at: datetime | None = None  # the sign-off 签收 that took effect
    returned_at: datetime | None = None
    shipped_at: datetime | None = None  # its earliest created/picked_up scan: no other scan may be earlier

    def is_behind(self, scan: Scan) -> bool:
        """Would `scan` land before (or beside) what is known? Then the history is folded again."""
        return self.last_event_at is not None and scan.occurred_at <= self.last_event_at

    def advance(self, scan: Scan) -> None:
        """Apply the scan that comes next in time."""
        if self.last_event_at is None or scan.occurred_at > self.last_event_at:
            self.last_event_at = scan.occurred_at
        if scan.status == "out_for_delivery":
            self.out_for_delivery_seen = True
        if scan.status in SHIPMENT and (self.shipped_at is None or scan.occurred_at < self.shipped_at):
            self.shipped_at = scan.occurred_at
        if self.status is not None and _is_regression(self.status, scan.status):
            return
        self.status, self.status_at = scan.status, scan.occurred_at
        if scan.status == "delivered":
            self.signed_by = scan.signed_by
            self.delivered_at = self.delivered_at or scan.occurred_at
        elif scan.status == "returned":
            self.returned_at = self.returned_at or scan.occurred_at


def _is_regression(current: str, new: str) -> bool:
    return current in RANK and new in RANK and RANK[new] < RANK[current]


def fold(scans: list[Scan], before: Track | None = None) -> Track:
    """The track of a whole history. Milestone times already reached stay (they were reported)."""
    track = Track()
    for scan in sorted(scans, key=Scan.sort_key):
        track.advance(scan)
    if before is not None:
        track = replace(
            track,
            delivered_at=before.delivered_at or track.delivered_at,
            returned_at=before.returned_at or track.returned_at,
        )
    return track


def false_delivery_score(direction: str, track: Track) -> float | None:
    """R-FALSE-DELIVERY: how suspicious an outbound sign-off is (0-1), None when it is not."""
    if direction != "outbound" or track.status != "delivered":
        return None
    score = SIGNED_BY_SUSPICION.get(track.signed_by, 0.0)
    if not track.out_for_delivery_seen:
        score += NO_OUT_FOR_DELIVERY_SUSPICION
    return round(min(score, 1.0), 2) if score > 0 else None


def shipped_at(known: datetime | None, scans: Iterable[Scan]) -> datetime | None:
    """When the parcel was created or shipped, as far as `known` (its stored time) and `scans` say."""
    times = [s.occurred_at for s in scans if s.status in SHIPMENT]
    if known is not None:
        times.append(known)
    return min(times, default=None)


def is_before_shipment(scan: Scan, shipped: datetime | None) -> bool:
    """A scan other than the parcel's creation or shipment, dated before it: a clock gone wrong, or a
    sign-off backdated to before the order could have been sent."""
    return shipped is not None and scan.status not in SHIPMENT and scan.occurred_at < shipped


def received_back_at(direction: str, track: Track) -> datetime | None:
    """When the warehouse got the parcel back: a return parcel delivered (or returned) to it, or an
    outbound parcel returned to sender."""
    if direction == "return":
        return track.delivered_at or track.returned_at
    return track.returned_at


def still_holds(kind: str, moved: bool, status: str, fd_score: float | None) -> bool:
    """Does an open alert still describe the parcel? Alerts about silence end when the parcel moves;
    a carrier's lost/疑难 status keeps suspected_lost open; a sign-off stays suspicious while it scores."""
    if kind == "suspected_false_delivery":
        return fd_score is not None
    if kind == "suspected_lost" and status in CARRIER_TROUBLE:
        return True
    return not moved
