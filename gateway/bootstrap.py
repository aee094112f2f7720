"""The composition root: the only place that builds concrete adapters from settings."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gateway.embedded import bundled_pg_dump, start_embedded_postgres
from gateway.settings import ArchiveBackend, SecretBackend, Settings
from schemas.clock import Clock
from tenancy.archive import LocalFolderArchive, SnapshotArchive
from tenancy.db import Database
from tenancy.migration_files import Migration, load_migrations
from tenancy.offboarding import SchemaDump
from tenancy.secrets import CachingSecretStore, FileSecretStore, SecretStore
from tenancy.snapshot import PgDumpSnapshotter


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Overrides:
    """Replacements for tests: any field left None is built from settings."""

    clock: Clock | None = None
    secrets: SecretStore | None = None
    archive: SnapshotArchive | None = None


@dataclass(frozen=True, slots=True)
class Container:
    """Everything an entrypoint needs, built once."""

    settings: Settings
    dsn: str = field(repr=False)
    db: Database
    clock: Clock
    secrets: SecretStore
    archive: SnapshotArchive
    dump: SchemaDump
    central_migrations: tuple[Migration, ...]
    tenant_migrations: tuple[Migration, ...]


def resolve_dsn(settings: Settings) -> str:
    """``DATABASE_URL``, or in dev without one, the embedded server's DSN."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return start_embedded_postgres(settings.local_dir / "pgdata")


def build_secret_store(settings: Settings, clock: Clock) -> SecretStore:
    """Secret Manager or the file store, behind the 5-minute cache."""
    inner: SecretStore
    if settings.secret_backend is SecretBackend.GCP:
        from tenancy.gcp_secrets import GoogleSecretManagerStore  # noqa: PLC0415 (heavy import only when configured)

        inner = GoogleSecretManagerStore(endpoint=settings.secret_endpoint)
    else:
        inner = FileSecretStore(settings.secret_file_dir or settings.local_dir / "secrets")
    return CachingSecretStore(inner, clock)


def build_archive(settings: Settings) -> SnapshotArchive:
    """The GCS bucket or a local folder."""
    if settings.archive_backend is ArchiveBackend.GCS:
        from tenancy.gcs_archive import GcsArchive  # noqa: PLC0415 (heavy import only when configured)

        return GcsArchive(
            bucket=settings.archive_bucket or "",
            prefix=settings.archive_prefix,
            project=settings.gcp_project,
        )
    return LocalFolderArchive(settings.archive_dir or settings.local_dir / "archive")


@asynccontextmanager
async def bootstrap(
    settings: Settings,
    overrides: Overrides | None = None,
    *,
    pool_max: int | None = None,
) -> AsyncIterator[Container]:
    """Build the container, open the pool, and close it on exit."""
    overrides = overrides or Overrides()
    clock = overrides.clock or system_clock
    dsn = resolve_dsn(settings)
    central_dir, tenant_dir = settings.migrations
    pg_dump = settings.pg_dump_path or bundled_pg_dump()
    db = await Database.open(
        dsn,
        min_size=min(settings.db_pool_min, pool_max or settings.db_pool_max),
        max_size=pool_max or settings.db_pool_max,
    )
    try:
        yield Container(
            settings=settings,
            dsn=dsn,
            db=db,
            clock=clock,
            secrets=overrides.secrets or build_secret_store(settings, clock),
            archive=overrides.archive or build_archive(settings),
            dump=PgDumpSnapshotter(pg_dump, dsn).dump,
            central_migrations=load_migrations(central_dir),
            tenant_migrations=load_migrations(tenant_dir),
        )
    finally:
        await db.close()
