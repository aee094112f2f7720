"""Tenant offboarding: MIGRATION_PLAN 5.

``request_deletion`` pauses while the tenant has open payments, else starts the 30-day
soft-delete window (no new authorize or capture; refunds and webhooks continue).
``cancel_deletion`` ends the window early. ``offboard_tenant``, once the window is over,
snapshots the schema to the archive, drops schema and role, schedules the vendor secrets
for destruction (24 h grace), archives the registry row, and anonymizes the tenant's
webhook-inbox rows (kept 90 days). ``purge_offboarded`` carries out what was scheduled.
"""

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from sagas.states import OPEN_STATES
from schemas.clock import Clock
from schemas.ids import quote_sql_name
from tenancy.archive import SnapshotArchive
from tenancy.db import Database
from tenancy.errors import TenantStateError
from tenancy.lifecycle import (
    INBOX_RETENTION_AFTER_OFFBOARDING,
    SECRET_DESTRUCTION_GRACE,
    SERVING_STATUSES,
    SOFT_DELETE_WINDOW,
    TenantStatus,
)
from tenancy.registry import TenantRecord, get_tenant
from tenancy.secrets import SecretRef, SecretStore
from tenancy.vendors import list_attachments

SchemaDump = Callable[[str, Path], Awaitable[None]]
_OPEN_PAYMENTS: Final = "SELECT count(*) FROM payments WHERE state = ANY($1::text[])"
_SET_STATUS: Final = """
UPDATE payments_central.tenant_schema_registry
   SET status = $2, deletion_requested_at = coalesce(deletion_requested_at, $3),
       deletion_paused_reason = $4, soft_deleted_at = $5
 WHERE tenant_id = $1
"""


@dataclass(frozen=True, slots=True)
class DeletionOutcome:
    """Where a deletion request left the tenant."""

    tenant_id: str
    status: TenantStatus
    open_payments: int
    offboard_after: datetime | None


@dataclass(frozen=True, slots=True)
class OffboardReport:
    """What the final offboarding step did."""

    tenant_id: str
    archive_uri: str
    secrets_destroy_after: datetime
    inbox_rows_anonymized: int


async def count_open_payments(db: Database, tenant_id: str) -> int:
    """Payments holding money or awaiting an outcome, read as the tenant role."""
    async with db.tenant_transaction(tenant_id, statuses=SERVING_STATUSES) as tx:
        count: int = await tx.conn.fetchval(_OPEN_PAYMENTS, sorted(OPEN_STATES))
    return count


async def request_deletion(db: Database, tenant_id: str, *, clock: Clock) -> DeletionOutcome:
    """Start the soft-delete window, or pause the request while payments are open."""
    async with db.connection() as conn:
        tenant = await get_tenant(conn, tenant_id)
    if tenant.status is TenantStatus.SOFT_DELETED:
        return _outcome(tenant, 0)
    if tenant.status not in {TenantStatus.ACTIVE, TenantStatus.DELETION_PAUSED}:
        raise TenantStateError(f"tenant {tenant_id} is {tenant.status}; it cannot be deleted")
    open_payments = await count_open_payments(db, tenant_id)
    now = clock()
    async with db.connection() as conn:
        if open_payments:
            reason = f"{open_payments} payment(s) not settled"
            await conn.execute(_SET_STATUS, tenant_id, "deletion_paused", now, reason, None)
        else:
            await conn.execute(_SET_STATUS, tenant_id, "soft_deleted", now, None, now)
        tenant = await get_tenant(conn, tenant_id)
    return _outcome(tenant, open_payments)


def _outcome(tenant: TenantRecord, open_payments: int) -> DeletionOutcome:
    after = None if tenant.soft_deleted_at is None else tenant.soft_deleted_at + SOFT_DELETE_WINDOW
    return DeletionOutcome(tenant.tenant_id, tenant.status, open_payments, after)


async def cancel_deletion(db: Database, tenant_id: str) -> TenantRecord:
    """Return a paused or soft-deleted tenant to active."""
    async with db.connection() as conn:
        tenant = await get_tenant(conn, tenant_id)
        if tenant.status not in {TenantStatus.DELETION_PAUSED, TenantStatus.SOFT_DELETED}:
            raise TenantStateError(f"tenant {tenant_id} is {tenant.status}; nothing to cancel")
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'active',"
            " deletion_requested_at = NULL, deletion_paused_reason = NULL,"
            " soft_deleted_at = NULL WHERE tenant_id = $1",
            tenant_id,
        )
        return await get_tenant(conn, tenant_id)


async def offboard_tenant(
    db: Database,
    tenant_id: str,
    *,
    archive: SnapshotArchive,
    dump: SchemaDump,
    clock: Clock,
) -> OffboardReport:
    """The final step, after the 30-day window: snapshot, drop, schedule, archive."""
    async with db.connection() as conn:
        tenant = await get_tenant(conn, tenant_id)
    now = clock()
    _check_window_over(tenant, now)
    open_payments = await count_open_payments(db, tenant_id)
    if open_payments:
        raise TenantStateError(
            f"tenant {tenant_id} still has {open_payments} open payment(s); settle them first"
        )
    with tempfile.TemporaryDirectory(prefix="offboard-") as folder:
        dump_path = Path(folder) / "schema.pgdump"
        await dump(tenant.schema_name, dump_path)
        uri = await archive.store(f"{tenant_id}/{now:%Y%m%dT%H%M%SZ}.pgdump", dump_path)
    destroy_after = now + SECRET_DESTRUCTION_GRACE
    anonymized = await _drop_and_archive(db, tenant, uri, now, destroy_after)
    return OffboardReport(tenant_id, uri, destroy_after, anonymized)


def _check_window_over(tenant: TenantRecord, now: datetime) -> None:
    if tenant.status is TenantStatus.ARCHIVED:
        raise TenantStateError(f"tenant {tenant.tenant_id} is already archived")
    if tenant.status is not TenantStatus.SOFT_DELETED or tenant.soft_deleted_at is None:
        raise TenantStateError(
            f"tenant {tenant.tenant_id} is {tenant.status}; run request-deletion first"
        )
    ends = tenant.soft_deleted_at + SOFT_DELETE_WINDOW
    if now < ends:
        days = (ends - now).total_seconds() / 86400
        raise TenantStateError(
            f"tenant {tenant.tenant_id} is in its soft-delete window until "
            f"{ends:%Y-%m-%d %H:%M} UTC ({days:.1f} days left)"
        )


async def _drop_and_archive(
    db: Database, tenant: TenantRecord, uri: str, now: datetime, destroy_after: datetime
) -> int:
    schema, role = quote_sql_name(tenant.schema_name), quote_sql_name(tenant.role_name)
    async with db.connection() as conn, conn.transaction():
        status = await conn.fetchval(
            "SELECT status FROM payments_central.tenant_schema_registry"
            " WHERE tenant_id = $1 FOR UPDATE",
            tenant.tenant_id,
        )
        if status != TenantStatus.SOFT_DELETED:
            raise TenantStateError(f"tenant {tenant.tenant_id} became {status} meanwhile")
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.execute(f"DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}")
        await conn.execute(
            "UPDATE payments_central.vendor_attachments SET enabled = false,"
            " secrets_destroy_after = $2, updated_at = $3 WHERE tenant_id = $1",
            tenant.tenant_id,
            destroy_after,
            now,
        )
        anonymized: str = await conn.execute(
            "UPDATE payments_central.webhook_inbox SET tenant_id = NULL, anonymized_at = $2,"
            " retain_until = $3 WHERE tenant_id = $1",
            tenant.tenant_id,
            now,
            now + INBOX_RETENTION_AFTER_OFFBOARDING,
        )
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'archived',"
            " archived_at = $2, archive_uri = $3, payments_ready = false WHERE tenant_id = $1",
            tenant.tenant_id,
            now,
            uri,
        )
    return int(anonymized.rsplit(" ", 1)[-1])


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What ``purge_offboarded`` destroyed or deleted."""

    secrets_destroyed: tuple[SecretRef, ...]
    inbox_rows_deleted: int


async def purge_offboarded(db: Database, secrets: SecretStore, *, clock: Clock) -> PurgeReport:
    """Destroy secrets whose grace has passed; delete inbox rows past their retention."""
    now = clock()
    async with db.connection() as conn:
        tenant_ids = await conn.fetch(
            "SELECT DISTINCT tenant_id FROM payments_central.vendor_attachments"
            " WHERE secrets_destroy_after <= $1 AND secrets_destroyed_at IS NULL",
            now,
        )
    destroyed: list[SecretRef] = []
    for row in tenant_ids:
        for attachment in await list_attachments(db, row["tenant_id"]):
            due = attachment.secrets_destroy_after
            if due is None or due > now or attachment.secrets_destroyed_at is not None:
                continue
            for ref in attachment.secret_refs():
                await secrets.destroy(ref)
                destroyed.append(ref)
            async with db.connection() as conn:
                await conn.execute(
                    "UPDATE payments_central.vendor_attachments SET secrets_destroyed_at = $4"
                    " WHERE tenant_id = $1 AND processor = $2 AND env = $3",
                    attachment.tenant_id,
                    attachment.processor.value,
                    attachment.env.value,
                    now,
                )
    async with db.connection() as conn:
        deleted: str = await conn.execute(
            "DELETE FROM payments_central.webhook_inbox WHERE retain_until <= $1", now
        )
    return PurgeReport(tuple(destroyed), int(deleted.rsplit(" ", 1)[-1]))
