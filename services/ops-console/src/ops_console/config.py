from __future__ import annotations

from pathlib import Path

from aftersales_shared.settings import ServiceSettings
from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"  # the built single-page app


class Settings(ServiceSettings):
    """ops-console's settings (OPS_CONSOLE_...): sessions, the staff token it signs, the services it calls.
    It has no event bus: KAFKA_* are not read."""

    # hide_input_in_errors: a refused setting is named, its value (a key, a password) never echoed
    model_config = SettingsConfigDict(env_prefix="OPS_CONSOLE_", extra="ignore", hide_input_in_errors=True)

    service_name: str = "ops-console"
    database_name: str = "ops_console"
    port: int = 8003
    case_api_url: str = "http://127.0.0.1:8000"
    logistics_watcher_url: str = "http://127.0.0.1:8001"
    payout_worker_url: str = "http://127.0.0.1:8002"
    upstream_timeout_seconds: float = Field(30.0, gt=0, description="a proxied call's limit")
    # Ed25519 private key (PKCS#8 PEM or base64 of 32 bytes) the staff tokens are signed with; the services
    # trust its public half (STAFF_TOKEN_PUBLIC_KEYS). Unset in development: a key kept in DATA_DIR.
    token_signing_key: SecretStr | None = None
    token_lifetime_seconds: int = Field(120, ge=10, le=300, description="a staff token's life")
    session_idle_minutes: int = Field(30, ge=1, description="a session unused this long ends")
    session_absolute_hours: int = Field(12, ge=1, description="a session ends this long after sign-in")
    cookie_secure: bool | None = Field(None, description="the cookie's Secure flag (default: in production)")
    login_max_failures: int = Field(5, ge=1, description="failed sign-ins per username before a lockout")
    login_window_minutes: int = Field(15, ge=1, description="how long failures count, and lockouts last")
    max_upload_bytes: int = Field(
        26 * 1024 * 1024, ge=1024, description="an evidence upload passed through to case-api"
    )
    web_dist: Path = WEB_DIST
    # The embedded default's first admin (`make run`): created at start while no account exists.
    dev_admin_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPS_CONSOLE_DEV_ADMIN_PASSWORD", "DEV_ADMIN_PASSWORD")
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:  # replaces the services' check: no bus here
        if self.dev_admin_password is not None and len(self.dev_admin_password.get_secret_value()) < 8:
            raise ValueError("DEV_ADMIN_PASSWORD has at least 8 characters (as every password)")
        if self.environment == "production":
            if self.dev_admin_password is not None:
                raise ValueError("DEV_ADMIN_PASSWORD is for the embedded development mode only")
            if not self.database_url:
                raise ValueError("production needs DATABASE_URL")
            if self.token_signing_key is None:
                raise ValueError("production needs OPS_CONSOLE_TOKEN_SIGNING_KEY (an Ed25519 private key)")
        return self

    @property
    def secure_cookie(self) -> bool:
        return self.environment == "production" if self.cookie_secure is None else self.cookie_secure

    def service_urls(self) -> dict[str, str]:
        """The services the proxy reaches, by the name in /api/<name>/..."""
        return {
            "case-api": self.case_api_url,
            "logistics-watcher": self.logistics_watcher_url,
            "payout-worker": self.payout_worker_url,
        }
