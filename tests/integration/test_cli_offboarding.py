"""The offboarding flow of MIGRATION_PLAN 5 through payments-admin-cli, with a moved clock."""

import asyncio
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from gateway.embedded import bundled_pg_dump
from tenancy.archive import LocalFolderArchive
from tenancy.db import Database
from tenancy.errors import SecretNotFoundError, TenantStateError
from tenancy.lifecycle import Operation, TenantStatus, allows
from tenancy.migration_files import Migration
from tenancy.offboarding import offboard_tenant
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tenancy.rollout import rollout_targets
from tenancy.secrets import FileSecretStore, SecretRef
from tests.integration.conftest import Cli
from tests.integration.outbox_helpers import eventually_async
from tests.integration.test_cli_migrate import query
from tests.integration.test_cli_tenants import HOOK, KEY, attach_args, provision, put_secret

pytestmark = pytest.mark.integration


def add_payment(dsn: str, tenant: str, payment_id: str, state: str) -> None:
    """Insert a payment straight into the tenant's schema."""
    query(
        dsn,
        f'INSERT INTO "{tenant.lower()}".payments'  # noqa: S608 (test-made tenant id)
        " (payment_id, state, currency, amount_minor, authorized_minor)"
        " VALUES ($1, $2, 'USD', 1000, 1000)",
        payment_id,
        state,
    )


def status_of(dsn: str, tenant: str) -> str:
    """The tenant's registry status."""
    rows = query(
        dsn,
        "SELECT status FROM payments_central.tenant_schema_registry WHERE tenant_id = $1",
        tenant,
    )
    return str(rows[0]["status"])


def test_whole_offboarding_flow(cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]) -> None:
    """Pause on open payments, soft-delete, refuse early, archive after 30 days, purge later."""
    tenant = tenant_ids()
    provision(cli, tenant)
    put_secret(cli, KEY.format(tenant=tenant), "sk_test_offboard")
    put_secret(cli, HOOK.format(tenant=tenant), "whsec_offboard")
    assert cli(*attach_args(tenant)).exit_code == 0
    add_payment(database_dsn, tenant, "pay_open", "authorized")
    query(
        database_dsn,
        "INSERT INTO payments_central.webhook_inbox"
        " (processor, vendor_event_id, tenant_id, event_type, payload)"
        " VALUES ('stripe', $1, $2, 'payment_intent.succeeded', '{}')",
        f"evt_{tenant}",
        tenant,
    )
    pause_then_soft_delete(cli, database_dsn, tenant)
    archive_after_the_window(cli, database_dsn, tenant)
    purge_after_the_grace_periods(cli, database_dsn, tenant)


def pause_then_soft_delete(cli: Cli, dsn: str, tenant: str) -> None:
    """An open payment pauses the request; once settled, the tenant is soft-deleted."""
    paused = cli("request-deletion", tenant)
    assert paused.exit_code == 0, paused.output
    assert "1 payment(s) not settled" in paused.stdout
    assert status_of(dsn, tenant) == TenantStatus.DELETION_PAUSED

    settle = "SET state = 'captured', version = version + 1"
    query(dsn, f'UPDATE "{tenant.lower()}".payments {settle}')
    deleted = cli("request-deletion", tenant)
    assert deleted.exit_code == 0, deleted.output
    assert status_of(dsn, tenant) == TenantStatus.SOFT_DELETED
    assert not allows(TenantStatus.SOFT_DELETED, Operation.AUTHORIZE)
    assert allows(TenantStatus.SOFT_DELETED, Operation.REFUND)

    early = cli("offboard-tenant", tenant)
    assert early.exit_code == 2
    assert "soft-delete window" in early.output
    assert "30.0 days left" in early.output


def archive_after_the_window(cli: Cli, dsn: str, tenant: str) -> None:
    """After 30 days: snapshot restorable, schema and role gone, inbox anonymized."""
    cli.clock.now += timedelta(days=30, minutes=1)
    done = cli("offboard-tenant", tenant)
    assert done.exit_code == 0, done.output
    assert "webhook-inbox rows anonymized: 1" in done.stdout

    registry = query(
        dsn,
        "SELECT status, archived_at, archive_uri FROM payments_central.tenant_schema_registry"
        " WHERE tenant_id = $1",
        tenant,
    )[0]
    assert registry["status"] == "archived"
    assert registry["archived_at"] == cli.clock.now
    archive = Path(urlsplit(registry["archive_uri"]).path)
    assert archive.is_relative_to(cli.archive_dir)
    listing = subprocess.run(  # noqa: S603 (fixed binary, test-made path)
        [str(bundled_pg_dump().with_name("pg_restore")), "--list", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE DATA" in listing
    assert "payments" in listing
    assert query(dsn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", tenant.lower()) == []
    assert query(dsn, "SELECT 1 FROM pg_roles WHERE rolname = $1", tenant.lower() + "_rw") == []
    inbox = query(
        dsn,
        "SELECT tenant_id, retain_until FROM payments_central.webhook_inbox"
        " WHERE vendor_event_id = $1",
        f"evt_{tenant}",
    )[0]
    assert inbox["tenant_id"] is None
    assert inbox["retain_until"] == cli.clock.now + timedelta(days=90)

    again = cli("offboard-tenant", tenant)
    assert again.exit_code == 2
    assert "already archived" in again.output
    assert cli("provision-tenant", "--tenant-id", tenant).exit_code == 2


def purge_after_the_grace_periods(cli: Cli, dsn: str, tenant: str) -> None:
    """Secrets survive 23 h and are destroyed after 24 h; inbox rows go after 90 days."""
    store = FileSecretStore(cli.secret_dir)
    ref = SecretRef.parse(KEY.format(tenant=tenant))
    cli.clock.now += timedelta(hours=23)
    assert cli("purge-offboarded").exit_code == 0
    assert asyncio.run(store.access(ref)) == SecretStr("sk_test_offboard")
    cli.clock.now += timedelta(hours=2)
    purged = cli("purge-offboarded")
    assert purged.exit_code == 0, purged.output
    assert "secrets destroyed: 2" in purged.stdout
    with pytest.raises(SecretNotFoundError):
        asyncio.run(store.access(ref))
    cli.clock.now += timedelta(days=90)
    assert cli("purge-offboarded").exit_code == 0
    inbox = query(
        dsn,
        "SELECT 1 FROM payments_central.webhook_inbox WHERE vendor_event_id = $1",
        f"evt_{tenant}",
    )
    assert inbox == []


def test_cancel_deletion_restores_an_active_tenant(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """cancel-deletion during the window makes the tenant active again."""
    tenant = tenant_ids()
    provision(cli, tenant)
    assert cli("request-deletion", tenant).exit_code == 0
    assert status_of(database_dsn, tenant) == TenantStatus.SOFT_DELETED
    result = cli("cancel-deletion", tenant)
    assert result.exit_code == 0, result.output
    assert status_of(database_dsn, tenant) == TenantStatus.ACTIVE
    assert cli("cancel-deletion", tenant).exit_code == 2


def test_offboarding_an_active_or_unknown_tenant_is_refused(
    cli: Cli, tenant_ids: Callable[[], str]
) -> None:
    """offboard-tenant exits 2 for a tenant never soft-deleted and for an unknown one."""
    tenant = tenant_ids()
    provision(cli, tenant)
    active = cli("offboard-tenant", tenant)
    assert active.exit_code == 2
    assert "run request-deletion first" in active.output
    unknown = cli("offboard-tenant", "tnt_never_was")
    assert unknown.exit_code == 2
    assert "unknown tenant" in unknown.output


def soft_deleted_past_window(cli: Cli, dsn: str, tenant: str) -> None:
    """Soft-delete ``tenant`` and move the clock past its 30-day window."""
    assert cli("request-deletion", tenant).exit_code == 0
    assert status_of(dsn, tenant) == TenantStatus.SOFT_DELETED
    cli.clock.now += timedelta(days=30, minutes=1)


def test_offboarding_with_open_payments_returns_the_tenant_to_soft_deleted(
    cli_factory: Callable[[str], Cli],
    database_factory: Callable[[], str],
    tenant_ids: Callable[[], str],
) -> None:
    """A payment opened during the window (a refund under way) refuses offboarding, exit 2."""
    database_dsn = database_factory()  # its own: the tenant it leaves soft-deleted stays so
    cli = cli_factory(database_dsn)
    tenant = tenant_ids()
    provision(cli, tenant)
    soft_deleted_past_window(cli, database_dsn, tenant)
    add_payment(database_dsn, tenant, "pay_refunding", "refunding")
    refused = cli("offboard-tenant", tenant)
    assert refused.exit_code == 2
    assert "1 open payment(s)" in refused.output
    assert status_of(database_dsn, tenant) == TenantStatus.SOFT_DELETED
    assert query(database_dsn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", tenant.lower())


def test_offboard_tenant_resumes_a_tenant_left_offboarding(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """A tenant a crash left offboarding is neither served nor migrated, and is then archived."""
    tenant = tenant_ids()
    provision(cli, tenant)
    add_payment(database_dsn, tenant, "pay_done", "captured")
    soft_deleted_past_window(cli, database_dsn, tenant)
    query(
        database_dsn,
        "UPDATE payments_central.tenant_schema_registry SET status = 'offboarding'"
        " WHERE tenant_id = $1",
        tenant,
    )

    async def check_unserved() -> list[str]:
        db = await Database.open(database_dsn, min_size=1, max_size=2)
        try:
            with pytest.raises(TenantStateError, match="offboarding"):
                async with db.tenant_transaction(tenant):
                    pass
            return [t.tenant_id for t in await rollout_targets(db)]
        finally:
            await db.close()

    assert tenant not in asyncio.run(check_unserved())
    assert cli("migrate-tenant", tenant).exit_code == 2
    assert cli("cancel-deletion", tenant).exit_code == 2

    resumed = cli("offboard-tenant", tenant)
    assert resumed.exit_code == 0, resumed.output
    assert status_of(database_dsn, tenant) == TenantStatus.ARCHIVED
    assert (
        query(database_dsn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", tenant.lower()) == []
    )


async def test_a_refund_in_flight_is_waited_for_and_kept_in_the_snapshot(
    db: Database,
    tenant_ids: Callable[[], str],
    tenant_migrations: tuple[Migration, ...],
    tmp_path: Path,
) -> None:
    """Offboarding waits for a refund's transaction, so the snapshot holds the refund."""
    tenant = tenant_ids()
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    schema = tenant.lower()
    now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    async with db.connection() as conn:
        await conn.execute(
            f'INSERT INTO "{schema}".payments (payment_id, state, currency, amount_minor,'  # noqa: S608 (test-made tenant id)
            " authorized_minor, captured_minor) VALUES ('pay_1', 'captured', 'USD', 100, 100, 100)"
        )
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'soft_deleted',"
            " soft_deleted_at = $2 WHERE tenant_id = $1",
            tenant,
            now - timedelta(days=31),
        )
    dumped: list[str] = []

    async def dump(schema_name: str, target: Path) -> None:
        async with db.connection() as conn:
            state = await conn.fetchval(
                f'SELECT state FROM "{schema_name}".payments'  # noqa: S608 (test-made tenant id)
            )
        dumped.append(state)
        await asyncio.to_thread(target.write_text, state, encoding="utf-8")

    async def offboarding_waits_on_payments() -> bool:
        async with db.connection() as conn:
            waiting: bool = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted"
                " AND relation = to_regclass($1))",
                f'"{schema}".payments',
            )
        return waiting

    async with db.tenant_transaction(tenant) as refund:
        await refund.conn.execute(
            "UPDATE payments SET state = 'refunded', refunded_minor = 100, version = version + 1"
            " WHERE payment_id = 'pay_1'"
        )
        offboarding = asyncio.create_task(
            offboard_tenant(
                db, tenant, archive=LocalFolderArchive(tmp_path), dump=dump, clock=lambda: now
            )
        )
        await eventually_async(offboarding_waits_on_payments)
    report = await offboarding
    assert dumped == ["refunded"]
    archived = Path(urlsplit(report.archive_uri).path)
    assert await asyncio.to_thread(archived.read_text, encoding="utf-8") == "refunded"


def test_purge_keeps_a_secret_another_tenant_still_uses(
    cli_factory: Callable[[str], Cli],
    database_factory: Callable[[], str],
    tenant_ids: Callable[[], str],
) -> None:
    """A sandbox key shared by two tenants outlives the offboarding of one of them."""
    cli = cli_factory(database_factory())
    leaving, staying = tenant_ids(), tenant_ids()
    shared, hook = KEY.format(tenant=leaving), HOOK.format(tenant=leaving)
    put_secret(cli, shared, "sk_test_shared")
    put_secret(cli, hook, "whsec_leaving")
    for tenant in (leaving, staying):
        provision(cli, tenant)
        args = attach_args(tenant)
        args[args.index("--api-key-from-secret") + 1] = shared
        args[args.index("--webhook-secret-from-secret") + 1] = hook
        if tenant == staying:
            args.remove("--webhook-secret-from-secret")
            args.remove(hook)
        attached = cli(*args)
        assert attached.exit_code == 0, attached.output
    assert cli("request-deletion", leaving).exit_code == 0
    cli.clock.now += timedelta(days=30, minutes=1)
    assert cli("offboard-tenant", leaving).exit_code == 0
    cli.clock.now += timedelta(hours=25)

    purged = cli("purge-offboarded")
    assert purged.exit_code == 0, purged.output
    assert "secrets destroyed: 1" in purged.stdout
    assert f"kept {shared}: still used by another vendor attachment" in purged.stdout
    store = FileSecretStore(cli.secret_dir)
    assert asyncio.run(store.access(SecretRef.parse(shared))) == SecretStr("sk_test_shared")
    with pytest.raises(SecretNotFoundError):
        asyncio.run(store.access(SecretRef.parse(hook)))
    again = cli("purge-offboarded")
    assert "secrets destroyed: 0" in again.stdout
    assert "kept" not in again.stdout
