from __future__ import annotations

from datetime import date

from aftersales_shared.settings import ServiceSettings
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CASE_API_", extra="ignore")

    service_name: str = "case-api"
    database_name: str = "case_api"
    port: int = 8000
    evidence_max_bytes: int = 20 * 1024 * 1024
    evidence_max_image_bytes: int = 10 * 1024 * 1024
    carrier_sla_working_days: int = 2  # R-LOST: the carrier answers within 1-2 working days
    extra_holidays: list[date] = []
    escalation_interval_seconds: float = 60.0
