"""Reads of ``payments_central.tenant_schema_registry``, naming every column they use.

Columns are listed explicitly (never ``SELECT *``) so the code keeps working while the
registry gains columns during an expand/contract rollout.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg

from schemas.clock import Clock
from schemas.ids import validate_tenant_id
from tenancy.db import Conn, Database
from tenancy.errors import UnknownTenantError
from tenancy.lifecycle import SERVING_STATUSES, TenantStatus

_COLUMNS: Final = """
    tenant_id, schema_name, role_name, pci_profile, cmek_key_uri, status, applied_versions,
    payments_ready, migration_error, deletion_requested_at, deletion_paused_reason,
    created_at, soft_deleted_at, archived_at, archive_uri
"""
_BY_ID: Final = (
    f"SELECT {_COLUMNS} FROM payments_central.tenant_schema_registry WHERE tenant_id = $1"  # noqa: S608 (constant column list)
)
_ALL: Final = f"SELECT {_COLUMNS} FROM payments_central.tenant_schema_registry ORDER BY tenant_id"  # noqa: S608 (constant column list)


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """One tenant as the registry knows it."""

    tenant_id: str
    schema_name: str
    role_name: str
    pci_profile: str
    cmek_key_uri: str | None
    status: TenantStatus
    applied_versions: tuple[int, ...]
    payments_ready: bool
    migration_error: str | None
    deletion_requested_at: datetime | None
    deletion_paused_reason: str | None
    created_at: datetime
    soft_deleted_at: datetime | None
    archived_at: datetime | None
    archive_uri: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> "TenantRecord":
        """Build from a row selected with this module's column list."""
        return cls(
            tenant_id=row["tenant_id"],
            schema_name=row["schema_name"],
            role_name=row["role_name"],
            pci_profile=row["pci_profile"],
            cmek_key_uri=row["cmek_key_uri"],
            status=TenantStatus(row["status"]),
            applied_versions=tuple(row["applied_versions"]),
            payments_ready=row["payments_ready"],
            migration_error=row["migration_error"],
            deletion_requested_at=row["deletion_requested_at"],
            deletion_paused_reason=row["deletion_paused_reason"],
            created_at=row["created_at"],
            soft_deleted_at=row["soft_deleted_at"],
            archived_at=row["archived_at"],
            archive_uri=row["archive_uri"],
        )


async def find_tenant(conn: Conn, tenant_id: str) -> TenantRecord | None:
    """The tenant's record, or None. The id is validated first."""
    row = await conn.fetchrow(_BY_ID, validate_tenant_id(tenant_id))
    return None if row is None else TenantRecord.from_row(row)


async def get_tenant(conn: Conn, tenant_id: str) -> TenantRecord:
    """The tenant's record; ``UnknownTenantError`` if there is none."""
    record = await find_tenant(conn, tenant_id)
    if record is None:
        raise UnknownTenantError(f"unknown tenant {tenant_id}")
    return record


async def list_tenants(conn: Conn) -> list[TenantRecord]:
    """Every tenant, archived ones included, ordered by id."""
    return [TenantRecord.from_row(row) for row in await conn.fetch(_ALL)]


SERVED_TTL: Final = timedelta(seconds=5)


class ServedTenants:
    """Whether a tenant is served, a served answer remembered for ``SERVED_TTL``.

    The consumer and the webhook endpoint ask for every message; a tenant transaction (or
    the inbox insert) checks the status again, so a change is seen at most a TTL later
    by this cache and never missed where it matters. Unserved answers are not cached.
    """

    def __init__(self, db: Database, clock: Clock) -> None:
        """Read the registry through ``db``."""
        self._db = db
        self._clock = clock
        self._served: dict[str, datetime] = {}

    async def refusal(self, tenant_id: str) -> str | None:
        """None if ``tenant_id`` is served; else ``"unknown"`` or its status."""
        now = self._clock()
        seen = self._served.get(tenant_id)
        if seen is not None and now - seen < SERVED_TTL:
            return None
        async with self._db.connection() as conn:
            tenant = await find_tenant(conn, tenant_id)
        if tenant is None:
            return "unknown"
        if tenant.status not in SERVING_STATUSES:
            self._served.pop(tenant_id, None)
            return str(tenant.status)
        self._served[tenant_id] = now
        return None

    def forget(self, tenant_id: str) -> None:
        """Drop what is remembered of ``tenant_id``."""
        self._served.pop(tenant_id, None)
