from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from typing import Literal

from aftersales_shared.settings import ServiceSettings
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOUT_WORKER_", extra="ignore")

    service_name: str = "payout-worker"
    database_name: str = "payout_worker"
    port: int = 8002
    consumer_group: str = "payout-worker"

    # R-CASHBACK: approved cashback of a working day is paid by that day's cut-off (Asia/Shanghai).
    cutoff: time = time(17, 30)
    extra_holidays: list[date] = []
    batch_size: int = Field(1000, ge=1, le=1000)
    tick_seconds: float = Field(1.0, gt=0)

    # Risk limits: a payout that would pass one of these ceilings is held for review (held_for_review)
    # until ops releases or cancels it. A day is the Asia/Shanghai calendar day of the approval.
    limit_per_transfer: Decimal = Field(
        Decimal("500.00"), gt=0, max_digits=12, decimal_places=2, description="the most one transfer pays"
    )
    limit_per_payee_day: Decimal = Field(
        Decimal("1000.00"),
        gt=0,
        max_digits=12,
        decimal_places=2,
        description="the most one Alipay account receives per day, all shops together",
    )
    limit_per_shop_day: Decimal = Field(
        Decimal("20000.00"),
        gt=0,
        max_digits=12,
        decimal_places=2,
        description="the most one shop pays per day",
    )

    provider: Literal["simulator", "alipay"] = "simulator"
    provider_qps: float = Field(10.0, gt=0, description="calls per second the provider allows")
    provider_timeout_seconds: float = Field(10.0, gt=0)
    concurrent_calls: int = Field(
        4, ge=1, le=32, description="batches in flight at once (within the QPS limit)"
    )
    # A payout left `submitted` this long (a crash between the call and the record) is queried.
    recover_after_seconds: float = Field(60.0, gt=0)
    retry_base_seconds: float = Field(2.0, gt=0, description="first wait before querying an ambiguous answer")
    max_backoff_seconds: float = Field(300.0, gt=0)
    simulator_url: str = "http://127.0.0.1:8009"

    alipay_gateway: str = "https://openapi.alipay.com/gateway.do"
    alipay_app_id: str | None = None
    alipay_private_key: SecretStr | None = None  # PEM, the app's RSA2 key; never logged
    alipay_public_key: str | None = None  # PEM, Alipay's key, to verify response signatures
    alipay_order_title: str = "售后返现"

    @model_validator(mode="after")
    def _check_provider(self) -> Settings:
        if self.recover_after_seconds <= self.provider_timeout_seconds:
            raise ValueError("recover_after_seconds must exceed provider_timeout_seconds")
        if self.provider == "alipay" and not (self.alipay_app_id and self.alipay_private_key):
            raise ValueError("the alipay provider needs PAYOUT_WORKER_ALIPAY_APP_ID and _PRIVATE_KEY")
        if self.environment == "production" and self.provider == "alipay" and not self.alipay_public_key:
            raise ValueError("production needs PAYOUT_WORKER_ALIPAY_PUBLIC_KEY to verify Alipay's answers")
        return self
