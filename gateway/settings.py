"""Settings, read once from the environment in an entrypoint and passed down.

Every variable is ``PAYMENTS_<NAME>`` except ``DATABASE_URL``. Unset values take the dev
defaults: embedded Postgres under ``.local/pgdata``, secrets under ``.local/secrets``,
snapshots under ``.local/archive``.
"""

from enum import StrEnum
from pathlib import Path
from typing import Final, Self

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.processors import Processor

REPO_ROOT: Final = Path(__file__).resolve().parent.parent


class Environment(StrEnum):
    """The deployment environment; it decides the vendor mode (DEPLOYMENT_TOPOLOGY 1)."""

    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class SecretBackend(StrEnum):
    """Where secret references are resolved."""

    FILE = "file"
    GCP = "gcp"


class ArchiveBackend(StrEnum):
    """Where offboarding snapshots go."""

    LOCAL = "local"
    GCS = "gcs"


class ProcessorBackend(StrEnum):
    """What the worker's processor adapters talk to."""

    FAKE = "fake"
    """In-memory processors with scriptable outcomes: dev and tests only."""
    VENDORS = "vendors"
    """The real adapters, talking to the endpoints of the environment's vendor mode."""


class Settings(BaseSettings):
    """The service's configuration."""

    model_config = SettingsConfigDict(env_prefix="PAYMENTS_", frozen=True, extra="ignore")

    environment: Environment = Environment.DEV
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PAYMENTS_DATABASE_URL")
    )
    local_dir: Path = REPO_ROOT / ".local"
    db_pool_min: int = Field(default=1, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=200)
    app_db_roles: tuple[str, ...] = ()
    migrations_dir: Path = REPO_ROOT / "migrations"
    secret_backend: SecretBackend = SecretBackend.FILE
    secret_file_dir: Path | None = None
    secret_endpoint: str | None = None
    archive_backend: ArchiveBackend = ArchiveBackend.LOCAL
    archive_dir: Path | None = None
    archive_bucket: str | None = None
    archive_prefix: str = "tenant-snapshots"
    gcp_project: str | None = None
    pubsub_project: str = "payments-dev"
    worker_max_in_flight: int = Field(default=200, ge=1, le=10_000)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65_535)
    api_forwarded_allow_ips: str = Field(
        default="",
        description="Proxies trusted for X-Forwarded-For (the load balancer), comma-separated.",
    )
    webhook_max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=10 * 1024 * 1024)
    webhook_allowlists: dict[Processor, tuple[IPvAnyNetwork, ...]] = Field(
        default_factory=dict,
        description="Source networks per processor, as JSON; a processor not listed accepts any.",
    )
    webhook_ingestion_paused: str | None = Field(
        default=None,
        description="A reason: every webhook is answered 503 (works with the database down).",
    )
    pg_dump_path: Path | None = None
    log_level: str = "info"
    processor_backend: ProcessorBackend = ProcessorBackend.FAKE
    sandbox_urls: dict[Processor, str] = Field(
        default_factory=dict,
        description="Dev only: the loopback sandboxes' base URLs, as JSON by processor.",
    )

    @model_validator(mode="after")
    def _production_needs_real_backends(self) -> Self:
        if self.environment is Environment.PROD:
            missing = [
                name
                for name, ok in (
                    ("DATABASE_URL", self.database_url is not None),
                    ("PAYMENTS_SECRET_BACKEND=gcp", self.secret_backend is SecretBackend.GCP),
                    ("PAYMENTS_ARCHIVE_BACKEND=gcs", self.archive_backend is ArchiveBackend.GCS),
                    (
                        "real processor adapters (not PAYMENTS_PROCESSOR_BACKEND=fake)",
                        self.processor_backend is not ProcessorBackend.FAKE,
                    ),
                )
                if not ok
            ]
            if missing:
                raise ValueError(f"environment prod requires {', '.join(missing)}")
        if self.database_url is None and self.environment is not Environment.DEV:
            raise ValueError(f"environment {self.environment} requires DATABASE_URL")
        if self.archive_backend is ArchiveBackend.GCS and not self.archive_bucket:
            raise ValueError("PAYMENTS_ARCHIVE_BUCKET is required with the gcs archive")
        if "*" in self.api_forwarded_allow_ips:
            raise ValueError(
                "PAYMENTS_API_FORWARDED_ALLOW_IPS must list the load balancer's addresses,"
                " not '*': any client could then choose the address the allowlists check"
            )
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("PAYMENTS_DB_POOL_MIN exceeds PAYMENTS_DB_POOL_MAX")
        return self

    @property
    def production(self) -> bool:
        """Whether live vendor credentials are allowed."""
        return self.environment is Environment.PROD

    @property
    def migrations(self) -> tuple[Path, Path]:
        """The central and tenant migration folders."""
        return self.migrations_dir / "central", self.migrations_dir / "tenant"
