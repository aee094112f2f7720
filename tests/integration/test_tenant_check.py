"""The consumer's tenant check: served tenants are remembered briefly, others never."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from gateway.worker import tenant_check
from tenancy.db import Database
from tenancy.migration_files import Migration
from tenancy.registry import SERVED_TTL
from tests.integration.conftest import FakeClock
from tests.integration.outbox_helpers import provisioned

pytestmark = pytest.mark.integration


async def test_a_served_tenant_is_remembered_until_the_ttl_runs_out(
    db: Database, tenant_migrations: tuple[Migration, ...], tenant_ids: Callable[[], str]
) -> None:
    """A status change reaches the check at most one TTL later; unknown tenants are refused."""
    tenant = await provisioned(db, tenant_migrations, tenant_ids())
    clock = FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    check = tenant_check(db, clock)
    assert await check(tenant) is None
    assert await check(tenant_ids()) == "unknown"
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'offboarding',"
            " soft_deleted_at = now() WHERE tenant_id = $1",
            tenant,
        )
    assert await check(tenant) is None
    clock.now += SERVED_TTL + timedelta(milliseconds=1)
    assert await check(tenant) == "offboarding"
    assert await check(tenant) == "offboarding"
