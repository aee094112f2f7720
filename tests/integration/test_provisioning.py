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
from tenancy.registry import find_tenant, get_tenant

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
    """A role named in grant_to can SET ROLE to the tenant but inherits nothing (Postgres 16+).

    Before 16 a grant cannot be made non-inheriting, so provisioning with grant_to is
    refused there, before anything is created.
    """
    service = f"tnt_{worker_token}_svc_{tenant_ids()[-6:]}"
    async with db.connection() as conn:
        await conn.execute(f'CREATE ROLE "{service}" NOLOGIN')
        pg16 = conn.get_server_version().major >= 16
    tenant = tenant_ids()
    request = ProvisionRequest(tenant, "saq_a", None)
    if not pg16:
        with pytest.raises(InvalidRequestError, match="needs Postgres 16"):
            await provision_tenant(db, tenant_migrations, request, grant_to=(service,))
        async with db.connection() as conn:
            assert await find_tenant(conn, tenant) is None
            assert await conn.fetchval(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                tenant.lower(),
            )
        assert (await provision_tenant(db, tenant_migrations, request)).created
        return
    await provision_tenant(db, tenant_migrations, request, grant_to=(service,))
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT pg_has_role($1, $2, 'SET'), pg_has_role($1, $2, 'USAGE')",
            service,
            tenant.lower() + "_rw",
        )
    assert row is not None
    can_set, inherits = row
    assert can_set
    assert not inherits


async def test_ids_differing_only_in_case_are_refused(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """tnt_Abc after tnt_abc would share its schema: refused as a conflict, nothing touched."""
    tenant = tenant_ids()
    twin = "tnt_" + tenant.removeprefix("tnt_").upper()
    await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))
    with pytest.raises(ProvisionConflictError, match=f"belongs to tenant {tenant}"):
        await provision_tenant(db, tenant_migrations, ProvisionRequest(twin, "saq_a", None))
    async with db.connection() as conn:
        assert await find_tenant(conn, twin) is None
        assert (await get_tenant(conn, tenant)).status is TenantStatus.ACTIVE


async def test_racing_case_twins_create_one_tenant(
    db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Two ids differing only in case, provisioned at once: one wins, the other conflicts."""
    tenant = tenant_ids()
    twin = "tnt_" + tenant.removeprefix("tnt_").upper()
    results = await asyncio.gather(
        provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None)),
        provision_tenant(db, tenant_migrations, ProvisionRequest(twin, "saq_a", None)),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == [
        "ProvisionConflictError",
        "ProvisionReport",
    ]
