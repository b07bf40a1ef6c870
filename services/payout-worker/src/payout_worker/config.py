from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Literal

from aftersales_shared.calendar import CalendarSettings
from aftersales_shared.settings import ServiceSettings
from aftersales_shared.signing import (
    ApprovalVerifier,
    ResultSigner,
    approval_verifier,
    check_private_key,
    check_public_keys,
    result_signer,
)
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict


class Settings(ServiceSettings, CalendarSettings):
    # hide_input_in_errors: a refused setting is named, its value (a key) never echoed
    model_config = SettingsConfigDict(env_prefix="PAYOUT_WORKER_", extra="ignore", hide_input_in_errors=True)

    service_name: str = "payout-worker"
    database_name: str = "payout_worker"
    port: int = 8002
    consumer_group: str = "payout-worker"

    # R-CASHBACK: approved cashback of a working day is paid by that day's cut-off (Asia/Shanghai).
    cutoff: time = time(17, 30)
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
    # Public-key mode: Alipay's public key (PEM), to verify response signatures.
    alipay_public_key: str | None = None
    # Certificate mode (公钥证书), which fund transfers require: each a PEM, or the path of its file.
    alipay_app_cert: str | None = Field(None, description="appCertPublicKey_<app id>.crt")
    alipay_public_cert: str | None = Field(None, description="alipayCertPublicKey_RSA2.crt")
    alipay_root_cert: str | None = Field(None, description="alipayRootCert.crt")
    alipay_order_title: str = "售后返现"

    # The case-api keys whose signed approvals are paid (aftersales_shared.signing): base64 Ed25519 public
    # keys, comma-separated, so a new key can be trusted before case-api signs with it. Unset in
    # development: the key pair in the data folder, which case-api signs with too.
    approval_public_keys: str | None = None
    # Signs every payout result (payouts.payout.paid|failed.v1), which case-api applies only when it
    # verifies: Ed25519, a PKCS#8 PEM or the base64 of its 32 bytes; never logged. Unset in development:
    # a key pair in the data folder, made on first start.
    result_signing_key: SecretStr | None = None

    @property
    def alipay_certificate_mode(self) -> bool:
        return any((self.alipay_app_cert, self.alipay_public_cert, self.alipay_root_cert))

    @model_validator(mode="after")
    def _check_provider(self) -> Settings:
        if self.recover_after_seconds <= self.provider_timeout_seconds:
            raise ValueError("recover_after_seconds must exceed provider_timeout_seconds")
        production = self.environment == "production"
        if production and self.provider == "simulator":
            # The simulator moves no money: its results would mark cashback paid and tell the buyer so.
            raise ValueError(
                "production cannot pay through the simulator: set PAYOUT_WORKER_PROVIDER=alipay "
                "(or ENVIRONMENT=development for a trial)"
            )
        if self.provider == "alipay":
            self._check_alipay(production)
        check_public_keys(
            self.approval_public_keys,
            "PAYOUT_WORKER_APPROVAL_PUBLIC_KEYS",
            production=production,
            why="payout-worker pays only approvals it can authenticate (case-api's approval keys)",
        )
        check_private_key(
            self._result_key(),
            "PAYOUT_WORKER_RESULT_SIGNING_KEY",
            production=production,
            why="case-api applies only signed payout results",
        )
        return self

    def _check_alipay(self, production: bool) -> None:
        if not (self.alipay_app_id and self.alipay_private_key):
            raise ValueError("the alipay provider needs PAYOUT_WORKER_ALIPAY_APP_ID and _PRIVATE_KEY")
        certs = {
            "PAYOUT_WORKER_ALIPAY_APP_CERT": self.alipay_app_cert,
            "PAYOUT_WORKER_ALIPAY_PUBLIC_CERT": self.alipay_public_cert,
            "PAYOUT_WORKER_ALIPAY_ROOT_CERT": self.alipay_root_cert,
        }
        if self.alipay_certificate_mode:
            if missing := [name for name, value in certs.items() if not value]:
                raise ValueError(f"Alipay certificate mode is half configured: set {', '.join(missing)}")
            if self.alipay_public_key:
                raise ValueError(
                    "set either PAYOUT_WORKER_ALIPAY_PUBLIC_KEY (public-key mode) or the three certificates "
                    "(certificate mode), not both"
                )
        elif production:
            # Alipay takes alipay.fund.trans.uni.transfer only in public-key certificate mode.
            raise ValueError("production pays through Alipay in certificate mode: set " + ", ".join(certs))

    def approval_verifier(self) -> ApprovalVerifier:
        return approval_verifier(self.approval_public_keys, self.data_dir)

    def _result_key(self) -> str | None:
        return self.result_signing_key.get_secret_value() if self.result_signing_key else None

    def result_signer(self) -> ResultSigner:
        return result_signer(self._result_key(), self.data_dir)
