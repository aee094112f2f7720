"""The tenant transaction: registry lookup, role and search_path, and their reset."""

from collections.abc import Callable

import pytest

from schemas.ids import InvalidTenantIdError
from tenancy.db import Database
from tenancy.errors import TenantStateError, UnknownTenantError
from tenancy.lifecycle import TenantStatus
from tenancy.migration_files import Migration
from tenancy.provisioning import ProvisionRequest, provision_tenant

pytestmark = pytest.mark.integration


async def test_runs_as_tenant_role_on_tenant_schema(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Inside the transaction current_user is the tenant role and names resolve in its schema."""
    tenant = tenant_ids()
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    async with db.tenant_transaction(tenant) as tx:
        user = await tx.conn.fetchval("SELECT current_user")
        path = await tx.conn.fetchval("SHOW search_path")
        await tx.conn.execute(
            "INSERT INTO payments (payment_id, state, currency, amount_minor)"
            " VALUES ('pay_1', 'requested', 'USD', 100)"
        )
    assert user == tenant.lower() + "_rw"
    assert path == tenant.lower()
    assert tx.status is TenantStatus.ACTIVE
    async with db.connection() as conn:
        after_user = await conn.fetchval("SELECT current_user")
        count = await conn.fetchval(f'SELECT count(*) FROM "{tenant.lower()}".payments')  # noqa: S608
    assert after_user != user
    assert count == 1


async def test_unknown_tenant_is_refused(db: Database, tenant_ids: Callable[[], str]) -> None:
    """A well-formed id missing from the registry raises UnknownTenantError."""
    with pytest.raises(UnknownTenantError):
        async with db.tenant_transaction(tenant_ids()):
            pass


async def test_malformed_tenant_id_is_refused_before_sql(db: Database) -> None:
    """An id like "x; drop schema y" never reaches the database."""
    with pytest.raises(InvalidTenantIdError):
        async with db.tenant_transaction("x; drop schema y"):
            pass


async def test_status_outside_the_allowed_set_is_refused(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """A caller that only serves active tenants is refused a soft-deleted one."""
    tenant = tenant_ids()
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry"
            " SET status = 'soft_deleted', soft_deleted_at = now() WHERE tenant_id = $1",
            tenant,
        )
    with pytest.raises(TenantStateError, match="soft_deleted"):
        async with db.tenant_transaction(tenant, statuses={TenantStatus.ACTIVE}):
            pass
    async with db.tenant_transaction(tenant) as tx:
        assert tx.status is TenantStatus.SOFT_DELETED


async def test_money_checks_hold_under_the_tenant_role(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """The database refuses captured above authorized, whatever the code asks."""
    tenant = tenant_ids()
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    with pytest.raises(Exception, match="check constraint"):
        async with db.tenant_transaction(tenant) as tx:
            await tx.conn.execute(
                "INSERT INTO payments (payment_id, state, currency, amount_minor,"
                " authorized_minor, captured_minor)"
                " VALUES ('pay_x', 'captured', 'USD', 100, 50, 60)"
            )
