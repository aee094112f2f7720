"""Applies ``migrations/tenant`` to one tenant's schema.

Each migration commits together with its history row, the registry's list of applied
versions and the grants that give the tenant role access to new tables. Runs for one
tenant serialize on an advisory lock.

A no-transaction migration (``CREATE INDEX CONCURRENTLY``) interrupted part-way, by the
rollout timeout for instance, leaves an INVALID index that ``IF NOT EXISTS`` would then
skip. So before running one, the schema's INVALID indexes are dropped (concurrently),
and after running it, the migration is not recorded while any INVALID index remains.

A dry run applies the pending transactional migrations in one transaction, records what
the schema gained or lost, and rolls everything back. No-transaction migrations are not
rehearsed (without ``CONCURRENTLY`` they would build blocking indexes on live tables);
the report lists their statements instead.
"""

from dataclasses import dataclass
from typing import Final

import structlog

from schemas.ids import quote_sql_name
from tenancy.db import Conn
from tenancy.errors import ChecksumMismatchError, InvalidIndexError
from tenancy.migration_files import Migration
from tenancy.registry import TenantRecord

_log = structlog.get_logger(__name__)

_OBJECTS: Final = """
SELECT 'table ' || table_name FROM information_schema.tables WHERE table_schema = $1
UNION ALL
SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
  FROM information_schema.columns WHERE table_schema = $1
UNION ALL
SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname = $1
UNION ALL
SELECT 'constraint ' || conname FROM pg_constraint WHERE connamespace = $1::regnamespace
"""
_INVALID_INDEXES: Final = """
SELECT c.relname
  FROM pg_index AS i
  JOIN pg_class AS c ON c.oid = i.indexrelid
 WHERE c.relnamespace = $1::regnamespace AND NOT i.indisvalid
 ORDER BY c.relname
"""
_RECORD: Final = """
INSERT INTO payments_central.tenant_migrations (tenant_id, version, name, checksum)
VALUES ($1, $2, $3, $4)
"""
_SYNC_REGISTRY: Final = """
UPDATE payments_central.tenant_schema_registry
   SET applied_versions = ARRAY(SELECT version FROM payments_central.tenant_migrations
                                 WHERE tenant_id = $1 ORDER BY version)
 WHERE tenant_id = $1
"""


@dataclass(frozen=True, slots=True)
class TenantMigrationOutcome:
    """What one run did (or, in a dry run, would do) to one tenant."""

    tenant_id: str
    versions: tuple[int, ...]
    changes: tuple[str, ...] = ()


def pending_for(
    tenant_id: str, applied: dict[int, str], migrations: tuple[Migration, ...]
) -> list[Migration]:
    """The migrations not yet applied, after checking the applied ones were not edited."""
    on_disk = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        migration = on_disk.get(version)
        if migration is None:
            raise ChecksumMismatchError(
                f"{tenant_id}: applied migration {version:04d} is missing from the folder"
            )
        if migration.checksum != checksum:
            raise ChecksumMismatchError(
                f"{tenant_id}: migration {version:04d}_{migration.name} was edited after it "
                "was applied; add a new migration instead"
            )
    return [m for m in migrations if m.version not in applied]


async def migrate_tenant(
    conn: Conn,
    tenant: TenantRecord,
    migrations: tuple[Migration, ...],
    *,
    dry_run: bool = False,
) -> TenantMigrationOutcome:
    """Bring one tenant's schema up to date (or rehearse it when ``dry_run``)."""
    lock_key = f"tenant-migrations:{tenant.tenant_id}"
    await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", lock_key)
    try:
        rows = await conn.fetch(
            "SELECT version, checksum FROM payments_central.tenant_migrations WHERE tenant_id = $1",
            tenant.tenant_id,
        )
        pending = pending_for(
            tenant.tenant_id, {r["version"]: r["checksum"] for r in rows}, migrations
        )
        if dry_run:
            return await _rehearse(conn, tenant, pending)
        for migration in pending:
            await _apply(conn, tenant, migration)
        return TenantMigrationOutcome(tenant.tenant_id, tuple(m.version for m in pending))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", lock_key)


async def _apply(conn: Conn, tenant: TenantRecord, migration: Migration) -> None:
    if migration.transactional:
        async with conn.transaction():
            await conn.execute("SELECT set_config('search_path', $1, true)", tenant.schema_name)
            await conn.execute(migration.sql)
            await _record(conn, tenant, migration)
    else:
        await _drop_invalid_indexes(conn, tenant.schema_name)
        await conn.execute("SELECT set_config('search_path', $1, false)", tenant.schema_name)
        try:
            for statement in migration.statements():
                await conn.execute(statement)
        finally:
            await conn.execute("RESET search_path")
        async with conn.transaction():
            invalid = await _invalid_indexes(conn, tenant.schema_name)
            if invalid:
                raise InvalidIndexError(
                    f"{tenant.tenant_id}: migration {migration.version:04d}_{migration.name}"
                    f" left INVALID index(es) {', '.join(invalid)}; not recorded, retry it"
                )
            await _record(conn, tenant, migration)
    _log.info(
        "tenant_migration_applied",
        tenant_id=tenant.tenant_id,
        version=migration.version,
        migration=migration.name,
    )


async def _invalid_indexes(conn: Conn, schema_name: str) -> list[str]:
    return [row["relname"] for row in await conn.fetch(_INVALID_INDEXES, schema_name)]


async def _drop_invalid_indexes(conn: Conn, schema_name: str) -> None:
    """Drop what interrupted concurrent builds left behind; outside any transaction."""
    for name in await _invalid_indexes(conn, schema_name):
        qualified = f"{quote_sql_name(schema_name)}.{quote_sql_name(name)}"
        await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {qualified}")
        _log.warning("tenant_invalid_index_dropped", schema=schema_name, index=name)


async def _record(conn: Conn, tenant: TenantRecord, migration: Migration) -> None:
    await grant_tenant_role(conn, tenant.schema_name, tenant.role_name)
    await conn.execute(
        _RECORD, tenant.tenant_id, migration.version, migration.name, migration.checksum
    )
    await conn.execute(_SYNC_REGISTRY, tenant.tenant_id)


async def grant_tenant_role(conn: Conn, schema_name: str, role_name: str) -> None:
    """Give the tenant role USAGE on its schema and DML on every table and sequence in it."""
    schema, role = quote_sql_name(schema_name), quote_sql_name(role_name)
    await conn.execute(
        f"GRANT USAGE ON SCHEMA {schema} TO {role};"
        f" GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};"
        f" GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};"
    )


async def _rehearse(
    conn: Conn, tenant: TenantRecord, pending: list[Migration]
) -> TenantMigrationOutcome:
    versions = tuple(m.version for m in pending)
    rehearsed = [m for m in pending if m.transactional]
    not_rehearsed: list[str] = []
    for migration in pending:
        if not migration.transactional:
            not_rehearsed.append(
                f"~ {migration.version:04d}_{migration.name}: runs outside a transaction;"
                " not rehearsed"
            )
            not_rehearsed.extend(f"    {_one_line(s)}" for s in migration.statements())
    if not rehearsed:
        return TenantMigrationOutcome(tenant.tenant_id, versions, tuple(not_rehearsed))
    transaction = conn.transaction()
    await transaction.start()
    try:
        before = {r[0] for r in await conn.fetch(_OBJECTS, tenant.schema_name)}
        await conn.execute("SELECT set_config('search_path', $1, true)", tenant.schema_name)
        for migration in rehearsed:
            await conn.execute(migration.sql)
        after = {r[0] for r in await conn.fetch(_OBJECTS, tenant.schema_name)}
    finally:
        await transaction.rollback()
    changes = sorted(f"+ {o}" for o in after - before) + sorted(f"- {o}" for o in before - after)
    return TenantMigrationOutcome(tenant.tenant_id, versions, (*changes, *not_rehearsed))


def _one_line(statement: str) -> str:
    """A statement without its comment lines, on one line, for the dry-run report."""
    lines = (line for line in statement.splitlines() if not line.strip().startswith("--"))
    return " ".join(" ".join(lines).split())
