from __future__ import annotations

from typing import Literal

from aftersales_shared.calendar import CalendarSettings
from aftersales_shared.settings import ServiceSettings
from aftersales_shared.signing import (
    ApprovalSigner,
    ResultVerifier,
    approval_signer,
    check_private_key,
    check_public_keys,
    result_verifier,
)
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings, CalendarSettings):
    # hide_input_in_errors: a refused setting is named, its value (a key) never echoed
    model_config = SettingsConfigDict(env_prefix="CASE_API_", extra="ignore", hide_input_in_errors=True)

    service_name: str = "case-api"
    database_name: str = "case_api"
    port: int = 8000
    evidence_max_bytes: int = 20 * 1024 * 1024
    evidence_max_image_bytes: int = 10 * 1024 * 1024
    carrier_sla_working_days: int = 2  # R-LOST: the carrier answers within 1-2 working days
    escalation_interval_seconds: float = 60.0
    # Signs every aftersales.cashback.approved.v1 (Ed25519; aftersales_shared.signing); never logged.
    # Unset in development: a key pair kept in the data folder, made on first start.
    approval_signing_key: SecretStr | None = Field(
        None, description="Ed25519 private key: a PKCS#8 PEM or the base64 of its 32 bytes"
    )
    # The payout-worker keys whose signed payout results are applied: base64 Ed25519 public keys,
    # comma-separated (rotation). Unset in development: the result key pair in the data folder.
    payout_result_public_keys: str | None = None
    # Webhooks (docs/operations.md, "Webhooks"): destinations on loopback, private or link-local addresses
    # are refused in production (SSRF) and allowed in development unless this says otherwise.
    webhook_allow_private_destinations: bool | None = None
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=30)
    webhook_poll_interval_seconds: float = Field(1.0, gt=0)
    # The change feed (`updated_after`) shows a change once it is this old, so that a transaction that
    # took its updated_at earlier but committed later is never skipped by a client's cursor.
    change_feed_settle_seconds: float = Field(5.0, ge=0)
    # Buyer messages (messages.py, R-MESSAGES): the channel new messages go to. `sms` needs the provider's
    # URL and key (sms.py); its key is never logged.
    message_channel: Literal["webhook", "sms"] = "webhook"
    sms_url: str | None = Field(None, pattern=r"^https?://")
    sms_api_key: SecretStr | None = None
    sms_timeout_seconds: float = Field(10.0, gt=0, le=60)
    sms_poll_interval_seconds: float = Field(2.0, gt=0)

    @property
    def webhook_private_allowed(self) -> bool:
        if self.webhook_allow_private_destinations is None:
            return self.environment == "development"
        return self.webhook_allow_private_destinations

    @model_validator(mode="after")
    def _check_sms(self) -> Settings:
        if self.message_channel == "sms" and not (self.sms_url and self.sms_api_key):
            raise ValueError("CASE_API_MESSAGE_CHANNEL=sms needs CASE_API_SMS_URL and CASE_API_SMS_API_KEY")
        return self

    @model_validator(mode="after")
    def _check_signing_keys(self) -> Settings:
        production = self.environment == "production"
        check_private_key(
            self._approval_key(),
            "CASE_API_APPROVAL_SIGNING_KEY",
            production=production,
            why="payout-worker pays only signed approvals",
        )
        check_public_keys(
            self.payout_result_public_keys,
            "CASE_API_PAYOUT_RESULT_PUBLIC_KEYS",
            production=production,
            why="case-api applies only payout results it can authenticate (payout-worker's result keys)",
        )
        return self

    @model_validator(mode="after")
    def _check_webhook_destinations(self) -> Settings:
        if self.environment == "production" and self.webhook_allow_private_destinations:
            raise ValueError(
                "production refuses CASE_API_WEBHOOK_ALLOW_PRIVATE_DESTINATIONS=true: a webhook could reach "
                "the internal network (SSRF)"
            )
        return self

    def _approval_key(self) -> str | None:
        return self.approval_signing_key.get_secret_value() if self.approval_signing_key else None

    def signer(self) -> ApprovalSigner:
        return approval_signer(self._approval_key(), self.data_dir)

    def result_verifier(self) -> ResultVerifier:
        return result_verifier(self.payout_result_public_keys, self.data_dir)
