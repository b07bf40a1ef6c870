from __future__ import annotations

from aftersales_shared.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOUT_WORKER_", extra="ignore")

    service_name: str = "payout-worker"
    database_name: str = "payout_worker"
    port: int = 8002
