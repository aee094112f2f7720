"""Provisioning on real Postgres: the five steps, idempotency, races and isolation."""

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from schemas.ids import InvalidTenantIdError
from tenancy.db import Database
from tenancy.errors import InvalidRequestError, ProvisionConflictError
from tenancy.lifecycle import TenantStatus
from tenancy.migration_files import Migration
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tenancy.registry import get_tenant

pytestmark = pytest.mark.integration
CMEK = "projects/gm-payments-dev/locations/us/keyRings/gm-payments/cryptoKeys/k1"


async def test_provision_creates_schema_role_migrations_registry(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """A new tenant gets its schema, its role, every migration and an active registry row."""
    tenant = tenant_ids()
    report = await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", CMEK))
    assert report.created
    assert report.migrations_applied == tuple(m.version for m in tenant_migrations)
    async with db.connection() as conn:
        record = await get_tenant(conn, tenant)
        schema = await conn.fetchval(
            "SELECT nspname FROM pg_namespace WHERE nspname = $1", tenant.lower()
        )
        history = await conn.fetch(
            "SELECT version, checksum FROM payments_central.tenant_migrations"
            " WHERE tenant_id = $1 ORDER BY version",
            tenant,
        )
    assert schema == tenant.lower()
    assert record.status is TenantStatus.ACTIVE
    assert record.cmek_key_uri == CMEK
    assert record.applied_versions == report.applied_versions
    assert [(r["version"], r["checksum"]) for r in history] == [
        (m.version, m.checksum) for m in tenant_migrations
    ]
    assert all(p.ok for p in report.isolation)
    assert {p.target for p in report.isolation} >= {
        "payments_isolation_canary.payments",
        "payments_central.tenant_schema_registry",
    }


async def test_provision_twice_is_a_no_op(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Re-running provision-tenant with the same settings changes nothing and succeeds."""
    tenant = tenant_ids()
    request = ProvisionRequest(tenant, "saq_a", None)
    await provision_tenant(db, tenant_migrations, request)
    again = await provision_tenant(db, tenant_migrations, request)
    assert not again.created
    assert again.migrations_applied == ()


async def test_two_concurrent_provisions_of_one_tenant_both_succeed_once(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Two provisions racing for one tenant: exactly one creates it, both report success."""
    tenant = tenant_ids()
    request = ProvisionRequest(tenant, "saq_a", None)
    reports = await asyncio.gather(
        provision_tenant(db, tenant_migrations, request),
        provision_tenant(db, tenant_migrations, request),
    )
    assert sorted(r.created for r in reports) == [False, True]
    async with db.connection() as conn:
        rows = await conn.fetchval(
            "SELECT count(*) FROM payments_central.tenant_migrations WHERE tenant_id = $1",
            tenant,
        )
    assert rows == len(tenant_migrations)


async def test_reprovision_with_other_settings_is_refused(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Provisioning an existing tenant with a different CMEK key is a conflict."""
    tenant = tenant_ids()
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    with pytest.raises(ProvisionConflictError, match="CMEK"):
        await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", CMEK))


async def test_tenant_role_cannot_read_another_tenant(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Inside tenant A's transaction, SELECT on tenant B's payments is permission denied."""
    a, b = tenant_ids(), tenant_ids()
    for tenant in (a, b):
        await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant_transaction(a) as tx:
            await tx.conn.fetch(f'SELECT payment_id FROM "{b.lower()}".payments')  # noqa: S608


async def test_second_tenant_probes_its_neighbour(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """When another tenant exists, provisioning also proves it is denied that tenant."""
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant_ids(), "saq_a", None))
    report = await provision_tenant(
        db, tenant_migrations, ProvisionRequest(tenant_ids(), "saq_a", None)
    )
    neighbours = [p for p in report.isolation if p.target.startswith("tnt_") and p.expected_denied]
    assert len(neighbours) == 1
    assert neighbours[0].denied


@pytest.mark.parametrize(
    ("tenant", "profile", "cmek", "error"),
    [
        ("x; drop schema y", "saq_a", None, InvalidTenantIdError),
        ("tnt_", "saq_a", None, InvalidTenantIdError),
        ("tnt_" + "a" * 49, "saq_a", None, InvalidTenantIdError),
        ("tnt_ok", "saq_d", None, InvalidRequestError),
        ("tnt_ok", "saq_a", "projects/x", InvalidRequestError),
    ],
)
def test_malformed_provision_requests_are_refused(
    tenant: str, profile: str, cmek: str | None, error: type[Exception]
) -> None:
    """Malformed ids, profiles and key URIs are refused before any database work."""
    with pytest.raises(error):
        ProvisionRequest(tenant, profile, cmek)


async def test_service_roles_reach_tenants_only_through_set_role(
    db: Database,
    tenant_ids: Callable[[], str],
    tenant_migrations: tuple[Migration, ...],
    worker_token: str,
) -> None:
    """A login role named in grant_to can SET ROLE to the tenant but inherits nothing."""
    service = f"tnt_{worker_token}_svc"
    async with db.connection() as conn:
        await conn.execute(f'CREATE ROLE "{service}" NOLOGIN')
    tenant = tenant_ids()
    await provision_tenant(
        db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None), grant_to=(service,)
    )
    async with db.connection() as conn:
        pg16 = conn.get_server_version().major >= 16
        row = await conn.fetchrow(
            "SELECT pg_has_role($1, $2, $3), pg_has_role($1, $2, 'USAGE')",
            service,
            tenant.lower() + "_rw",
            "SET" if pg16 else "MEMBER",
        )
    assert row is not None
    can_set, inherits = row
    assert can_set
    assert inherits is not pg16  # Postgres 15 has no INHERIT FALSE grants; production runs 16
