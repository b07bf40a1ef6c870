from __future__ import annotations

from aftersales_shared.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOGISTICS_WATCHER_", extra="ignore")

    service_name: str = "logistics-watcher"
    database_name: str = "logistics_watcher"
    port: int = 8001
