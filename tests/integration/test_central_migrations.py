"""The central migrations runner on real Postgres."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.errors import ChecksumMismatchError, MigrationFileError
from tenancy.migration_files import Migration, load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant

pytestmark = pytest.mark.integration


async def test_rerun_and_concurrent_runs_apply_nothing_twice(
    db: Database, central_migrations: tuple[Migration, ...]
) -> None:
    """Central migrations already applied are skipped, also by runs racing each other."""
    results = await asyncio.gather(*(migrate_central(db, central_migrations) for _ in range(3)))
    assert results == [[], [], []]
    async with db.connection() as conn:
        versions = await conn.fetchval(
            "SELECT array_agg(version ORDER BY version) FROM payments_central.central_migrations"
        )
    assert versions == [m.version for m in central_migrations]


async def test_no_transaction_central_files_are_refused(db: Database, tmp_path: Path) -> None:
    """A central file declaring no-transaction is refused before anything runs."""
    (tmp_path / "0009_idx.sql").write_text(
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);\n", encoding="utf-8"
    )
    with pytest.raises(MigrationFileError, match="one transaction"):
        await migrate_central(db, load_migrations(tmp_path))


async def test_an_applied_version_missing_from_the_folder_is_refused(
    db: Database, central_migrations: tuple[Migration, ...]
) -> None:
    """A folder lacking an applied central version (a bad deploy) stops the run."""
    with pytest.raises(ChecksumMismatchError, match=r"0001 missing from the folder"):
        await migrate_central(db, central_migrations[1:])


async def test_offboarding_status_needs_soft_deleted_at(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """0004 admits offboarding only with soft_deleted_at, and keeps the other checks."""
    tenant = tenant_ids()
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    update = "UPDATE payments_central.tenant_schema_registry SET {} WHERE tenant_id = $1"
    async with db.connection() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(update.format("status = 'offboarding'"), tenant)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(update.format("schema_name = 'tnt_other'"), tenant)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(update.format("status = 'bogus', soft_deleted_at = now()"), tenant)
        await conn.execute(update.format("status = 'offboarding', soft_deleted_at = now()"), tenant)
        status = await conn.fetchval(
            "SELECT status FROM payments_central.tenant_schema_registry WHERE tenant_id = $1",
            tenant,
        )
        await conn.execute(update.format("status = 'active', soft_deleted_at = NULL"), tenant)
    assert status == "offboarding"
