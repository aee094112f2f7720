"""``provision-tenant``: MIGRATION_PLAN 2.1.

1. create schema ``tnt_<id>``;  2. create the tenant role with USAGE on that schema only
(plus membership of ``payments_tenants``: INSERT of its own rows into the central outbox);
3. apply every tenant migration;  4. record the tenant (CMEK URI, applied versions) in the
registry;  5. prove the role is denied a cross-tenant SELECT. The registry row is written
first, as ``provisioning``, so that the migration history can reference it; the tenant
turns ``active`` only after step 5 passes. Runs for one tenant serialize on an advisory
lock keyed by the lower-cased id (ids differing only in case share a schema, and the
second one is refused), and every step is idempotent, so re-running (or racing) is safe.

Service roles named in ``grant_to`` get the tenant role ``WITH INHERIT FALSE``, which
needs Postgres 16; on an older server provisioning with ``grant_to`` is refused, since
the services would otherwise inherit every tenant's privileges.
"""

import re
from dataclasses import dataclass
from typing import Final

from schemas.ids import quote_sql_name, role_name_for, schema_name_for, validate_tenant_id
from tenancy.db import Conn, Database
from tenancy.errors import InvalidRequestError, ProvisionConflictError, TenantStateError
from tenancy.isolation import IsolationProbe, verify_isolation
from tenancy.lifecycle import TenantStatus
from tenancy.migration_files import Migration
from tenancy.registry import find_tenant, get_tenant
from tenancy.tenant_migrations import grant_tenant_role, migrate_tenant

PCI_PROFILES: Final = frozenset({"saq_a"})
_PG16: Final = 16
TENANTS_GROUP: Final = "payments_tenants"
"""Holds what every tenant role may do centrally: append its own outbox rows."""
_CMEK_PATTERN: Final = re.compile(
    r"projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]{1,63}"
    r"/keyRings/[A-Za-z0-9_-]{1,63}/cryptoKeys/[A-Za-z0-9_-]{1,63}"
)
_INSERT: Final = """
INSERT INTO payments_central.tenant_schema_registry
       (tenant_id, schema_name, role_name, pci_profile, cmek_key_uri)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    """The validated arguments of ``provision-tenant``."""

    tenant_id: str
    pci_profile: str
    cmek_key_uri: str | None

    def __post_init__(self) -> None:
        """Refuse malformed input before anything touches the database."""
        validate_tenant_id(self.tenant_id)
        if self.pci_profile not in PCI_PROFILES:
            raise InvalidRequestError(
                f"unsupported PCI profile {self.pci_profile!r}: expected one of "
                f"{', '.join(sorted(PCI_PROFILES))}"
            )
        if self.cmek_key_uri is not None and not _CMEK_PATTERN.fullmatch(self.cmek_key_uri):
            raise InvalidRequestError(
                f"invalid CMEK key {self.cmek_key_uri[:120]!r}: expected "
                "projects/P/locations/L/keyRings/R/cryptoKeys/K"
            )


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What each step found or did."""

    tenant_id: str
    schema_name: str
    role_name: str
    created: bool
    migrations_applied: tuple[int, ...]
    applied_versions: tuple[int, ...]
    isolation: tuple[IsolationProbe, ...]


async def provision_tenant(
    db: Database,
    migrations: tuple[Migration, ...],
    request: ProvisionRequest,
    *,
    grant_to: tuple[str, ...] = (),
) -> ProvisionReport:
    """Provision (or finish provisioning) a tenant; a no-op for an active one.

    ``grant_to`` names login roles (the services' own) that must be able to
    ``SET ROLE`` to the tenant role; it needs Postgres 16 or later.
    """
    lock_key = f"provision:{request.tenant_id.lower()}"
    async with db.connection() as conn:
        version = conn.get_server_version()
        if grant_to and version.major < _PG16:
            raise InvalidRequestError(
                f"granting tenant roles to service roles ({', '.join(grant_to)}) needs"
                f" Postgres {_PG16} or later (GRANT ... WITH INHERIT FALSE); this server is"
                f" {version.major}.{version.minor}, where they would inherit every tenant's"
                " privileges"
            )
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", lock_key)
        try:
            created = await _create_schema_and_role(conn, request, grant_to)
            tenant = await get_tenant(conn, request.tenant_id)
            outcome = await migrate_tenant(conn, tenant, migrations)
            tenant = await get_tenant(conn, request.tenant_id)
            probes = await verify_isolation(conn, tenant)
            await conn.execute(
                "UPDATE payments_central.tenant_schema_registry SET status = 'active'"
                " WHERE tenant_id = $1 AND status = 'provisioning'",
                request.tenant_id,
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", lock_key)
    return ProvisionReport(
        tenant_id=tenant.tenant_id,
        schema_name=tenant.schema_name,
        role_name=tenant.role_name,
        created=created,
        migrations_applied=outcome.versions,
        applied_versions=tenant.applied_versions,
        isolation=tuple(probes),
    )


async def _create_schema_and_role(
    conn: Conn, request: ProvisionRequest, grant_to: tuple[str, ...]
) -> bool:
    """Steps 1 and 2 (and the registry row) in one transaction; False if all existed."""
    schema_name, role_name = schema_name_for(request.tenant_id), role_name_for(request.tenant_id)
    other = await conn.fetchval(
        "SELECT tenant_id FROM payments_central.tenant_schema_registry"
        " WHERE schema_name = $1 AND tenant_id <> $2",
        schema_name,
        request.tenant_id,
    )
    if other is not None:
        raise ProvisionConflictError(
            f"tenant {request.tenant_id} would use schema {schema_name}, which belongs to"
            f" tenant {other}; tenant ids may not differ only in case"
        )
    existing = await find_tenant(conn, request.tenant_id)
    if existing is not None:
        _check_same_settings(existing.pci_profile, existing.cmek_key_uri, request)
        if existing.status not in {TenantStatus.PROVISIONING, TenantStatus.ACTIVE}:
            raise TenantStateError(
                f"tenant {request.tenant_id} is {existing.status}; it cannot be provisioned"
            )
        if existing.status is TenantStatus.ACTIVE:
            return False
    schema, role = quote_sql_name(schema_name), quote_sql_name(role_name)
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM PUBLIC")
        role_exists = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role_name
        )
        if not role_exists:
            await conn.execute(f"CREATE ROLE {role} NOLOGIN")
        await grant_tenant_role(conn, schema_name, role_name)
        await conn.execute(f"GRANT {TENANTS_GROUP} TO {role}")
        await conn.execute(f"GRANT {role} TO current_user")
        # Services reach a tenant's data only through SET ROLE, never by inheritance
        # (provision_tenant refuses grant_to on servers older than Postgres 16).
        for member in map(quote_sql_name, grant_to):
            await conn.execute(f"GRANT {role} TO {member} WITH INHERIT FALSE")
        await conn.execute(
            _INSERT,
            request.tenant_id,
            schema_name,
            role_name,
            request.pci_profile,
            request.cmek_key_uri,
        )
    return existing is None


def _check_same_settings(pci_profile: str, cmek: str | None, request: ProvisionRequest) -> None:
    if pci_profile != request.pci_profile or cmek != request.cmek_key_uri:
        raise ProvisionConflictError(
            f"tenant {request.tenant_id} is already provisioned with PCI profile "
            f"{pci_profile} and CMEK key {cmek or '(none)'}; re-running needs the same values"
        )
