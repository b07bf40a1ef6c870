from __future__ import annotations

from datetime import timedelta

from aftersales_shared.settings import ServiceSettings
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict


class Thresholds(BaseModel):
    """How long a parcel may go without a scan before a detector flags it (strictly longer than this)."""

    no_first_scan: timedelta = timedelta(hours=24)  # R-NO-UPDATE: shipped, no carrier scan for over a day
    stalled: timedelta = timedelta(hours=24)  # R-NO-UPDATE: in transit, no scan for over a day
    suspected_lost: timedelta = timedelta(hours=72)  # R-LOST: tracking stopped for a long time


class CarrierThresholds(BaseModel):
    """One carrier's overrides; what is left out falls back to the service's `thresholds`."""

    no_first_scan: timedelta | None = None
    stalled: timedelta | None = None
    suspected_lost: timedelta | None = None


class Settings(ServiceSettings):
    """`LOGISTICS_WATCHER_THRESHOLDS='{"stalled": "PT36H"}'`,
    `LOGISTICS_WATCHER_CARRIER_THRESHOLDS='{"EMS": {"stalled": "PT48H", "suspected_lost": "P5D"}}'`
    (ISO 8601 durations or seconds); carrier names match the events' `carrier` exactly."""

    model_config = SettingsConfigDict(env_prefix="LOGISTICS_WATCHER_", extra="ignore")

    service_name: str = "logistics-watcher"
    database_name: str = "logistics_watcher"
    port: int = 8001
    thresholds: Thresholds = Thresholds()
    carrier_thresholds: dict[str, CarrierThresholds] = {}
    scan_interval_seconds: float = Field(300.0, gt=0, description="how often the detectors run by themselves")
    future_tolerance: timedelta = Field(
        timedelta(minutes=10), description="scans dated later than now + this are rejected (a fast clock)"
    )
    max_alerts_per_pass: int = Field(
        5000, ge=1, description="alerts a detection pass opens at most; a backlog takes several passes"
    )
    consumer_group: str = "logistics-watcher"
    ingest_batch_size: int = Field(4000, ge=1, description="records the consumer fetches at once")

    # Kuaidi100 (快递100): the watcher subscribes each new tracking number and takes Kuaidi100's pushes.
    kuaidi100_key: SecretStr | None = Field(
        None, description="the customer's authorisation key (授权key); unset: no subscriptions are made"
    )
    kuaidi100_salt: SecretStr | None = Field(
        None,
        description="signs the pushes: sign = uppercase MD5(param + salt); unset: pushes refused",
    )
    kuaidi100_callback_url: str | None = Field(
        None,
        description="where Kuaidi100 pushes: /v1/carriers/kuaidi100/callback as reached from outside",
    )
    kuaidi100_subscribe_url: str = "https://poll.kuaidi100.com/poll"
    kuaidi100_interval_seconds: float = Field(10.0, gt=0, description="how often due subscriptions are sent")

    def thresholds_for(self, carrier: str) -> Thresholds:
        override = self.carrier_thresholds.get(carrier)
        if override is None:
            return self.thresholds
        return self.thresholds.model_copy(update=override.model_dump(exclude_none=True))
