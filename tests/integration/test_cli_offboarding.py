"""The offboarding flow of MIGRATION_PLAN 5 through payments-admin-cli, with a moved clock."""

import asyncio
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from gateway.embedded import bundled_pg_dump
from tenancy.errors import SecretNotFoundError
from tenancy.lifecycle import Operation, TenantStatus, allows
from tenancy.secrets import FileSecretStore, SecretRef
from tests.integration.conftest import Cli
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

    query(dsn, f"UPDATE \"{tenant.lower()}\".payments SET state = 'captured'")  # noqa: S608
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
