"""payments-admin-cli migrate-central / migrate-all / migrate-tenant on real Postgres."""

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from gateway.settings import REPO_ROOT
from tenancy.db import Database
from tenancy.migration_files import load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tests.integration.conftest import Cli

pytestmark = pytest.mark.integration


def migrations_with(tmp_path: Path, extra: dict[str, str]) -> Path:
    """A copy of the repository's migrations plus ``extra`` tenant migration files."""
    root = tmp_path / "migrations"
    shutil.copytree(REPO_ROOT / "migrations", root)
    for name, sql in extra.items():
        (root / "tenant" / name).write_text(sql, encoding="utf-8")
    return root


def provision_many(dsn: str, tenants: list[str]) -> None:
    """Provision ``tenants`` with the repository's tenant migrations, ten at a time."""
    migrations = load_migrations(REPO_ROOT / "migrations" / "tenant")

    async def go() -> None:
        db = await Database.open(dsn, min_size=1, max_size=10)
        limit = asyncio.Semaphore(10)

        async def one(tenant: str) -> None:
            async with limit:
                await provision_tenant(db, migrations, ProvisionRequest(tenant, "saq_a", None))

        try:
            await asyncio.gather(*(one(t) for t in tenants))
        finally:
            await db.close()

    asyncio.run(go())


def query(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one query on a fresh connection."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_migrate_all_over_200_tenants_lists_the_one_failure_and_resumes_it(
    cli_factory: Callable[[str], Cli],
    database_factory: Callable[[], str],
    tenant_ids: Callable[[], str],
    tmp_path: Path,
) -> None:
    """199 tenants migrate; the sabotaged one is retried, listed, then resumed by migrate-tenant."""
    dsn = database_factory()
    tenants = [tenant_ids() for _ in range(200)]
    provision_many(dsn, tenants)
    broken = tenants[137]
    query(dsn, f'CREATE TABLE "{broken.lower()}".booking_notes (id int)')
    cli = cli_factory(dsn)
    cli.env["PAYMENTS_MIGRATIONS_DIR"] = str(
        migrations_with(
            tmp_path, {"0900_booking_notes.sql": "CREATE TABLE booking_notes (id int);"}
        )
    )

    result = cli("migrate-all")

    assert result.exit_code == 1, result.output
    assert "200 tenant(s): 199 ok (199 changed), 1 failed" in result.stdout
    assert f"FAILED {broken} after 4 attempt(s)" in result.stderr
    assert "already exists" in result.stderr
    rows = query(
        dsn,
        "SELECT tenant_id, applied_versions, migration_error"
        " FROM payments_central.tenant_schema_registry",
    )
    by_id = {r["tenant_id"]: r for r in rows}
    assert all(900 in by_id[t]["applied_versions"] for t in tenants if t != broken)
    assert 900 not in by_id[broken]["applied_versions"]
    assert "already exists" in by_id[broken]["migration_error"]

    query(dsn, f'DROP TABLE "{broken.lower()}".booking_notes')
    resumed = cli("migrate-tenant", broken)
    assert resumed.exit_code == 0, resumed.output
    assert f"{broken}: applied 0900" in resumed.stdout
    after = query(
        dsn,
        "SELECT applied_versions, migration_error FROM payments_central.tenant_schema_registry"
        " WHERE tenant_id = $1",
        broken,
    )[0]
    assert 900 in after["applied_versions"]
    assert after["migration_error"] is None
    rerun = cli("migrate-all")
    assert rerun.exit_code == 0, rerun.output
    assert "200 tenant(s): 200 ok (0 changed), 0 failed" in rerun.stdout


def test_dry_run_reports_changes_and_applies_nothing(
    cli_factory: Callable[[str], Cli],
    database_factory: Callable[[], str],
    tenant_ids: Callable[[], str],
    tmp_path: Path,
) -> None:
    """--dry-run lists the objects a migration would add, including a CONCURRENTLY index."""
    dsn = database_factory()
    tenant = tenant_ids()
    provision_many(dsn, [tenant])
    cli = cli_factory(dsn)
    cli.env["PAYMENTS_MIGRATIONS_DIR"] = str(
        migrations_with(
            tmp_path,
            {
                "0901_refund_reason.sql": "ALTER TABLE payments ADD COLUMN refund_reason text;",
                "0902_index.sql": "-- migrate:no-transaction\n"
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_currency"
                " ON payments (currency);\n",
            },
        )
    )
    result = cli("migrate-all", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"{tenant}: would apply 0901, 0902" in result.stdout
    assert "+ column payments.refund_reason text" in result.stdout
    assert "+ index payments_currency" in result.stdout
    columns = query(
        dsn,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = $1 AND column_name = 'refund_reason'",
        tenant.lower(),
    )
    assert columns == []

    applied = cli("migrate-tenant", tenant)
    assert applied.exit_code == 0, applied.output
    indexes = query(
        dsn,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = 'payments_currency'",
        tenant.lower(),
    )
    assert [r["indisvalid"] for r in indexes] == [True]


def test_an_edited_applied_migration_fails_without_retries(
    cli_factory: Callable[[str], Cli],
    database_factory: Callable[[], str],
    tenant_ids: Callable[[], str],
    tmp_path: Path,
) -> None:
    """Editing an applied migration is caught by its checksum and not retried."""
    dsn = database_factory()
    tenant = tenant_ids()
    provision_many(dsn, [tenant])
    root = migrations_with(tmp_path, {})
    first = next((root / "tenant").glob("0001_*.sql"))
    first.write_text(first.read_text(encoding="utf-8") + "\n-- edited\n", encoding="utf-8")
    cli = cli_factory(dsn)
    cli.env["PAYMENTS_MIGRATIONS_DIR"] = str(root)
    result = cli("migrate-all")
    assert result.exit_code == 1
    assert "after 1 attempt(s)" in result.stderr
    assert "was edited after it was applied" in result.stderr


def test_migrate_central_is_idempotent(cli: Cli) -> None:
    """migrate-central on an up-to-date database applies nothing and succeeds."""
    result = cli("migrate-central")
    assert result.exit_code == 0, result.output
    assert "nothing (up to date)" in result.stdout


def test_migrate_tenant_refuses_unknown_and_malformed_ids(cli: Cli) -> None:
    """migrate-tenant exits 2 for an unknown tenant and for a malformed id."""
    unknown = cli("migrate-tenant", "tnt_nobody_here")
    assert unknown.exit_code == 2
    assert "unknown tenant" in unknown.output
    malformed = cli("migrate-tenant", "tnt_x;drop")
    assert malformed.exit_code == 2
    assert "invalid tenant id" in malformed.output
