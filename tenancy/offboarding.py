"""Tenant offboarding: MIGRATION_PLAN 5.

``request_deletion`` pauses while the tenant has open payments, else starts the 30-day
soft-delete window (no new authorize or capture; refunds and webhooks continue).
``cancel_deletion`` ends the window early. ``offboard_tenant``, once the window is over,
turns the tenant ``offboarding`` (it stops being served), snapshots the schema to the
archive, drops schema and role, schedules the vendor secrets for destruction (24 h
grace), archives the registry row, and anonymizes the tenant's webhook-inbox rows (kept
90 days). ``purge_offboarded`` carries out what was scheduled, sparing secrets another
tenant still uses.
"""

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import structlog

from sagas.states import OPEN_STATES
from schemas.clock import Clock
from schemas.ids import quote_sql_name, validate_tenant_id
from tenancy.archive import SnapshotArchive
from tenancy.db import Conn, Database
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
from tenancy.vendors import VendorAttachment, list_attachments

_log = structlog.get_logger(__name__)
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
    """The final step, after the 30-day window: snapshot, drop, schedule, archive.

    The tenant first turns ``offboarding`` (no new tenant transaction may start); then,
    holding a SHARE lock on its payments table (which waits for the writers already in
    flight and keeps out any late one), open payments are counted: if any, the tenant
    returns to ``soft_deleted`` and the request is refused. Otherwise the schema is
    snapshotted and, in that same transaction, dropped with the role, and the tenant
    archived. A tenant left ``offboarding`` by a crash is resumed from the snapshot.
    """
    now = clock()
    async with db.connection() as conn:
        tenant = await _begin_offboarding(conn, tenant_id, now)
        schema = quote_sql_name(tenant.schema_name)
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {schema}.payments IN SHARE MODE")
            open_payments: int = await conn.fetchval(
                f"SELECT count(*) FROM {schema}.payments WHERE state = ANY($1::text[])",  # noqa: S608 (schema name from the registry, quoted)
                sorted(OPEN_STATES),
            )
            if not open_payments:
                uri = await _snapshot(tenant, now, archive=archive, dump=dump)
                destroy_after = now + SECRET_DESTRUCTION_GRACE
                anonymized = await _drop_and_archive(conn, tenant, uri, now, destroy_after)
                return OffboardReport(tenant_id, uri, destroy_after, anonymized)
            await conn.execute(
                "UPDATE payments_central.tenant_schema_registry SET status = 'soft_deleted'"
                " WHERE tenant_id = $1 AND status = 'offboarding'",
                tenant_id,
            )
    raise TenantStateError(
        f"tenant {tenant_id} still has {open_payments} open payment(s); settle them first"
    )


async def _begin_offboarding(conn: Conn, tenant_id: str, now: datetime) -> TenantRecord:
    """Turn a soft-deleted tenant whose window is over ``offboarding``; resume one already so."""
    async with conn.transaction():
        await conn.execute(
            "SELECT 1 FROM payments_central.tenant_schema_registry WHERE tenant_id = $1 FOR UPDATE",
            validate_tenant_id(tenant_id),
        )
        tenant = await get_tenant(conn, tenant_id)
        if tenant.status is TenantStatus.OFFBOARDING:
            _log.warning("tenant_offboarding_resumed", tenant_id=tenant_id)
            return tenant
        _check_window_over(tenant, now)
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'offboarding'"
            " WHERE tenant_id = $1",
            tenant_id,
        )
        return await get_tenant(conn, tenant_id)


async def _snapshot(
    tenant: TenantRecord, now: datetime, *, archive: SnapshotArchive, dump: SchemaDump
) -> str:
    with tempfile.TemporaryDirectory(prefix="offboard-") as folder:
        dump_path = Path(folder) / "schema.pgdump"
        await dump(tenant.schema_name, dump_path)
        return await archive.store(f"{tenant.tenant_id}/{now:%Y%m%dT%H%M%SZ}.pgdump", dump_path)


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
    conn: Conn, tenant: TenantRecord, uri: str, now: datetime, destroy_after: datetime
) -> int:
    """Inside the caller's transaction: drop schema and role, schedule, anonymize, archive."""
    schema, role = quote_sql_name(tenant.schema_name), quote_sql_name(tenant.role_name)
    status = await conn.fetchval(
        "SELECT status FROM payments_central.tenant_schema_registry"
        " WHERE tenant_id = $1 FOR UPDATE",
        tenant.tenant_id,
    )
    if status != TenantStatus.OFFBOARDING:
        raise TenantStateError(f"tenant {tenant.tenant_id} became {status} meanwhile")
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await conn.execute(f"DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}")
    await conn.execute(
        "DELETE FROM payments_central.saga_wakeups WHERE tenant_id = $1", tenant.tenant_id
    )
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
    """What ``purge_offboarded`` destroyed, spared or deleted."""

    secrets_destroyed: tuple[SecretRef, ...]
    inbox_rows_deleted: int
    secrets_kept: tuple[SecretRef, ...] = ()
    """Due for destruction but still used by an attachment not scheduled for it."""


def _due(attachment: VendorAttachment, now: datetime) -> bool:
    due = attachment.secrets_destroy_after
    return due is not None and due <= now and attachment.secrets_destroyed_at is None


def _in_use(attachment: VendorAttachment, now: datetime) -> bool:
    """Whether the attachment still needs its secrets: not scheduled, or not yet due."""
    if attachment.secrets_destroyed_at is not None:
        return False
    due = attachment.secrets_destroy_after
    return due is None or due > now


async def purge_offboarded(db: Database, secrets: SecretStore, *, clock: Clock) -> PurgeReport:
    """Destroy secrets whose grace has passed; delete inbox rows past their retention.

    ``destroy`` removes a whole secret, every version included, so a secret that another
    attachment still uses (a shared sandbox key, say) is kept and reported instead; the
    offboarded attachment's secrets count as handled either way.
    """
    now = clock()
    attachments = await list_attachments(db)
    in_use = {ref.secret_name for a in attachments if _in_use(a, now) for ref in a.secret_refs()}
    destroyed: list[SecretRef] = []
    kept: list[SecretRef] = []
    for attachment in (a for a in attachments if _due(a, now)):
        for ref in attachment.secret_refs():
            if ref.secret_name in in_use:
                _log.warning(
                    "secret_kept_still_in_use", tenant_id=attachment.tenant_id, secret=str(ref)
                )
                kept.append(ref)
            elif all(ref.secret_name != done.secret_name for done in destroyed):
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
    return PurgeReport(tuple(destroyed), int(deleted.rsplit(" ", 1)[-1]), tuple(kept))
