"""Settings every service reads. Each service subclasses with its own env prefix; the names the
operator shares across services (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, DEV_API_KEY) are unprefixed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from .bus.security import KafkaSecurity, Mechanism, Protocol


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = "service"
    database_name: str = "service"
    environment: Literal["development", "production"] = Field(
        "development", validation_alias=AliasChoices("ENVIRONMENT", "AFTERSALES_ENVIRONMENT")
    )
    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    kafka_bootstrap_servers: str | None = Field(None, validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    # Several environments may share one Kafka cluster: each prefixes its topic names ("staging.").
    kafka_topic_prefix: str = Field("", validation_alias="KAFKA_TOPIC_PREFIX", pattern=r"^[A-Za-z0-9._-]*$")
    # Used when a service creates a missing topic; partitions bound how many replicas share the work.
    kafka_topic_partitions: int = Field(6, ge=1, validation_alias="KAFKA_TOPIC_PARTITIONS")
    kafka_replication_factor: int = Field(1, ge=1, validation_alias="KAFKA_REPLICATION_FACTOR")
    # How the services authenticate to the brokers (docs/operations.md, "Kafka security"): the protocol and
    # the TLS files are shared; each service has its own principal (<PREFIX>KAFKA_USERNAME / _PASSWORD).
    kafka_security_protocol: Protocol = Field("PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: Mechanism = Field("SCRAM-SHA-512", validation_alias="KAFKA_SASL_MECHANISM")
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: Path | None = Field(None, validation_alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: Path | None = Field(None, validation_alias="KAFKA_SSL_KEYFILE")
    # Published outbox rows and inbox entries are deleted once this old (see retention.py).
    event_retention_days: int = Field(14, ge=1, validation_alias="EVENT_RETENTION_DAYS")
    dev_api_key: SecretStr | None = Field(None, validation_alias="DEV_API_KEY")
    # The public keys whose staff tokens (ops-console's signed-in people, staff_tokens.py) are accepted
    # beside API keys; unset: none are.
    staff_token_public_keys: str | None = Field(None, validation_alias="STAFF_TOKEN_PUBLIC_KEYS")
    data_dir: Path = Field(Path(".data"), validation_alias="DATA_DIR")
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    # The largest request body taken (<PREFIX>MAX_BODY_BYTES); a larger one is answered 413 before it is read
    # in full (web.BodyLimit). Uploads may have a larger limit of their own (case-api's evidence).
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    # How long an API key found stays known without a lookup (<PREFIX>PRINCIPAL_CACHE_SECONDS; auth.py's
    # PrincipalCache): a revocation takes effect within it; 0 looks the key up at every request.
    principal_cache_seconds: float = Field(5.0, ge=0, le=300)
    host: str = "127.0.0.1"
    port: int = 8000
    # How long an idle client connection is kept open (<PREFIX>KEEP_ALIVE_SECONDS). Longer than what clients
    # and load balancers keep theirs (httpx 5 s, nginx 60 s): a server that closes first races a request
    # sent on the closing connection, which the client sees as a reset, not an answer.
    keep_alive_seconds: int = Field(75, ge=1, le=3600)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> ServiceSettings:
        if self.environment == "production":
            if self.dev_api_key is not None:
                raise ValueError("DEV_API_KEY is for the embedded development mode only")
            if not self.database_url or not self.kafka_bootstrap_servers:
                raise ValueError("production needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS")
            # Whoever reaches an unauthenticated broker can publish a cashback approval.
            if self.kafka_security_protocol == "PLAINTEXT":
                raise ValueError(
                    "production refuses KAFKA_SECURITY_PROTOCOL=PLAINTEXT (no authentication): "
                    "use SASL_SSL, or SASL_PLAINTEXT on a private network"
                )
            if self.kafka_security_protocol == "SSL" and not self.kafka_ssl_certfile:
                raise ValueError("KAFKA_SECURITY_PROTOCOL=SSL authenticates by KAFKA_SSL_CERTFILE: set it")
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if self.kafka_bootstrap_servers and sasl and not (self.kafka_username and self.kafka_password):
            prefix = self.model_config.get("env_prefix", "")
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs this service's "
                f"{prefix}KAFKA_USERNAME and {prefix}KAFKA_PASSWORD"
            )
        return self

    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_username,
            password=self.kafka_password.get_secret_value() if self.kafka_password else None,
            cafile=self.kafka_ssl_cafile,
            certfile=self.kafka_ssl_certfile,
            keyfile=self.kafka_ssl_keyfile,
        )

    @property
    def sqlalchemy_url(self) -> str:
        """This service's own database: a database named after it on the PostgreSQL server, or a
        SQLite file in the data folder."""
        if self.database_url:
            return (
                make_url(self.database_url)
                .set(database=self.database_name)
                .render_as_string(hide_password=False)
            )
        return f"sqlite+aiosqlite:///{self.data_dir / (self.database_name + '.db')}"

    @property
    def event_log_path(self) -> Path:
        return self.data_dir / "events.db"
