"""The central migrations runner on real Postgres."""

import asyncio
from pathlib import Path

import pytest

from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.errors import MigrationFileError
from tenancy.migration_files import Migration, load_migrations

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
