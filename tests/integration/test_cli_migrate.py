"""payments-admin-cli migrate-central / migrate-all / migrate-tenant on real Postgres."""

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from gateway.settings import REPO_ROOT
from tenancy.db import Database
from tenancy.errors import InvalidIndexError
from tenancy.migration_files import Migration, load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tenancy.registry import get_tenant
from tenancy.rollout import RolloutPolicy, migrate_tenants
from tenancy.tenant_migrations import migrate_tenant
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
    """--dry-run rehearses transactional files and only lists no-transaction ones' statements."""
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
    assert "~ 0902_index: runs outside a transaction; not rehearsed" in result.stdout
    assert (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_currency ON payments (currency)"
        in result.stdout
    )
    assert "+ index payments_currency" not in result.stdout
    columns = query(
        dsn,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = $1 AND column_name = 'refund_reason'",
        tenant.lower(),
    )
    assert columns == []
    only_index = cli("migrate-tenant", tenant, "--dry-run")
    assert only_index.exit_code == 0, only_index.output

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


async def index_validity(db: Database, schema: str) -> dict[str, bool]:
    """Each index of ``schema`` with whether Postgres considers it valid."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT c.relname, i.indisvalid FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = $1::regnamespace",
            schema,
        )
    return {r["relname"]: r["indisvalid"] for r in rows}


async def provision_with_duplicates(db: Database, tenant: str, migrations_dir: Path) -> str:
    """Provision ``tenant`` with two USD payments; return its schema."""
    migrations = load_migrations(migrations_dir)
    await provision_tenant(db, migrations, ProvisionRequest(tenant, "saq_a", None))
    schema = tenant.lower()
    async with db.connection() as conn:
        await conn.execute(
            f'INSERT INTO "{schema}".payments (payment_id, state, currency, amount_minor)'  # noqa: S608 (test-made tenant id)
            " VALUES ('pay_1', 'captured', 'USD', 100), ('pay_2', 'captured', 'USD', 200)"
        )
    return schema


def with_tenant_file(tmp_path: Path, name: str, sql: str) -> tuple[Migration, ...]:
    """The repository's tenant migrations plus one file."""
    return load_migrations(migrations_with(tmp_path, {name: sql}) / "tenant")


async def test_an_invalid_index_left_by_an_interrupted_build_is_rebuilt(
    db: Database, tenant_ids: Callable[[], str], tmp_path: Path
) -> None:
    """An INVALID index of the same name is dropped first, so IF NOT EXISTS builds it anew."""
    tenant = tenant_ids()
    schema = await provision_with_duplicates(db, tenant, REPO_ROOT / "migrations" / "tenant")
    async with db.connection() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                f'CREATE UNIQUE INDEX CONCURRENTLY payments_currency ON "{schema}".payments'
                " (currency)"
            )
    assert (await index_validity(db, schema))["payments_currency"] is False
    migrations = with_tenant_file(
        tmp_path,
        "0903_currency_index.sql",
        "-- migrate:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_currency ON payments (currency);\n",
    )
    async with db.connection() as conn:
        outcome = await migrate_tenant(conn, await get_tenant(conn, tenant), migrations)
        record = await get_tenant(conn, tenant)
    assert outcome.versions == (903,)
    assert 903 in record.applied_versions
    assert (await index_validity(db, schema))["payments_currency"] is True


@pytest.fixture
def own_dsn(database_factory: Callable[[], str]) -> str:
    """A database of this test's own, for a test that leaves a migration error behind."""
    return database_factory()


async def test_a_migration_leaving_an_invalid_index_is_not_recorded(
    own_dsn: str, tenant_ids: Callable[[], str], tmp_path: Path
) -> None:
    """A no-transaction file after which an index is INVALID fails the tenant, retryably."""
    db = await Database.open(own_dsn, min_size=1, max_size=4)
    try:
        await check_invalid_index_refused(db, tenant_ids(), tmp_path)
    finally:
        await db.close()


async def check_invalid_index_refused(db: Database, tenant: str, tmp_path: Path) -> None:
    """The body of the test above, on its own database."""
    schema = await provision_with_duplicates(db, tenant, REPO_ROOT / "migrations" / "tenant")
    # Marking the new index invalid stands in for a build cut short after the statement.
    migrations = with_tenant_file(
        tmp_path,
        "0904_currency_index.sql",
        "-- migrate:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_currency ON payments (currency);\n"
        "UPDATE pg_catalog.pg_index SET indisvalid = false"
        " WHERE indexrelid = 'payments_currency'::regclass;\n",
    )
    async with db.connection() as conn:
        with pytest.raises(InvalidIndexError, match="INVALID index"):
            await migrate_tenant(conn, await get_tenant(conn, tenant), migrations)
        tenant_record = await get_tenant(conn, tenant)
    assert 904 not in tenant_record.applied_versions
    assert (await index_validity(db, schema))["payments_currency"] is False
    policy = RolloutPolicy(retries=1, backoff_seconds=0)
    [result] = await migrate_tenants(db, [tenant_record], migrations, policy=policy)
    assert result.attempts == 2
    assert result.error is not None
    assert "payments_currency" in result.error
    async with db.connection() as conn:
        after = await get_tenant(conn, tenant)
    assert 904 not in after.applied_versions
    assert after.migration_error == result.error
