"""Applies ``migrations/central`` to the ``payments_central`` schema.

Concurrent runs (several pods starting at once) serialize on an advisory lock; each
migration commits together with its history row, so a crash leaves a clean resume point.
An applied migration that was edited, or that is missing from the folder, stops the run.
"""

from typing import Final

import structlog

from tenancy.db import Conn, Database
from tenancy.errors import ChecksumMismatchError, MigrationFileError
from tenancy.migration_files import Migration

_log = structlog.get_logger(__name__)
_LOCK_KEY: Final = "payments_central:migrations"
_BOOTSTRAP: Final = """
CREATE SCHEMA IF NOT EXISTS payments_central;
CREATE TABLE IF NOT EXISTS payments_central.central_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


async def migrate_central(db: Database, migrations: tuple[Migration, ...]) -> list[int]:
    """Apply pending central migrations in order; return the versions applied now."""
    for migration in migrations:
        if not migration.transactional:
            raise MigrationFileError(
                f"central migration {migration.version:04d}_{migration.name}: central"
                " migrations run in one transaction; no-transaction files are not supported"
            )
    applied_now: list[int] = []
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _LOCK_KEY)
        await conn.execute(_BOOTSTRAP)
        applied = {
            row["version"]: row["checksum"]
            for row in await conn.fetch(
                "SELECT version, checksum FROM payments_central.central_migrations"
            )
        }
        on_disk = {m.version for m in migrations}
        missing = sorted(v for v in applied if v not in on_disk)
        if missing:
            raise ChecksumMismatchError(
                "applied central migration(s) "
                f"{', '.join(f'{v:04d}' for v in missing)} missing from the folder;"
                " a deploy must not remove or renumber migrations"
            )
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise ChecksumMismatchError(
                        f"central migration {migration.version:04d}_{migration.name} was "
                        "edited after it was applied"
                    )
                continue
            await _apply(conn, migration)
            applied_now.append(migration.version)
    return applied_now


async def _apply(conn: Conn, migration: Migration) -> None:
    await conn.execute("SELECT set_config('search_path', 'payments_central', true)")
    await conn.execute(migration.sql)
    await conn.execute(
        "INSERT INTO payments_central.central_migrations (version, name, checksum)"
        " VALUES ($1, $2, $3)",
        migration.version,
        migration.name,
        migration.checksum,
    )
    _log.info("central_migration_applied", version=migration.version, name=migration.name)
