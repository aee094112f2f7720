"""Operator services: idempotency clean-up, a payment's timeline, payments needing a person.

``gc_idempotency`` (the hourly ``payments-idempotency-gc`` CronJob) deletes, tenant by
tenant, command idempotency keys past ``expires_at`` and processed-message rows older than
``MESSAGE_RETENTION``, but only where the payment is at rest (``SETTLED_STATES``) or has
no row at all: a key of an open payment may still be retried and must answer as before.
Rows go in batches, each in its own short tenant transaction, so a large tenant never
holds its locks for long; a tenant that fails is reported and the others carry on. (A
settled payment that reopens meanwhile, a refund starting, does so under a new key: its
old keys are past their time either way.)

``resolve`` applies an operator's decision through the saga guard in one tenant
transaction, as the executor applies an outcome, and keeps the operator's note in the
payment's timeline; it returns the operations the decision started, for the executor.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import asyncpg
import structlog

from handlers.idempotency import MESSAGE_RETENTION
from handlers.saga_store import SaveContext, event_id, load, save
from sagas.machine import decide
from sagas.messages import OperatorResolved, RetryCompensation
from sagas.model import IN_FLIGHT, OperationKind, Payment
from sagas.states import SETTLED_STATES, PaymentState
from tenancy.db import Database
from tenancy.errors import TenancyError, TenantStateError
from tenancy.lifecycle import SERVING_STATUSES
from tenancy.registry import get_tenant, list_tenants

_log = structlog.get_logger(__name__)
_SETTLED: Final = sorted(SETTLED_STATES)
_AT_REST: Final = """
NOT EXISTS (SELECT 1 FROM payments AS p
             WHERE p.payment_id = t.payment_id AND p.state <> ALL ($2::text[]))
"""
_GC_KEYS: Final = f"""
DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
    SELECT t.ctid FROM idempotency_keys AS t WHERE t.expires_at < $1 AND {_AT_REST} LIMIT $3))
"""  # noqa: S608 (constant SQL fragments only)
_GC_MESSAGES: Final = f"""
DELETE FROM processed_messages WHERE ctid = ANY (ARRAY(
    SELECT t.ctid FROM processed_messages AS t WHERE t.processed_at < $1 AND {_AT_REST} LIMIT $3))
"""  # noqa: S608 (constant SQL fragments only)
_TENANT_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TenancyError)


@dataclass(frozen=True, slots=True)
class TenantGc:
    """What the clean-up deleted in one tenant, or why it stopped."""

    tenant_id: str
    keys_deleted: int = 0
    messages_deleted: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class GcReport:
    """The clean-up of every tenant it visited."""

    tenants: tuple[TenantGc, ...]

    @property
    def keys_deleted(self) -> int:
        """Idempotency keys deleted, over all tenants."""
        return sum(t.keys_deleted for t in self.tenants)

    @property
    def messages_deleted(self) -> int:
        """Processed-message rows deleted, over all tenants."""
        return sum(t.messages_deleted for t in self.tenants)

    @property
    def failed(self) -> tuple[TenantGc, ...]:
        """Tenants whose clean-up stopped on an error."""
        return tuple(t for t in self.tenants if t.error is not None)


async def gc_idempotency(
    db: Database, now: datetime, *, tenant_ids: Sequence[str] | None = None, batch: int = 1000
) -> GcReport:
    """Delete expired keys and old processed messages of payments at rest, tenant by tenant.

    ``tenant_ids`` narrows the run; each must be a known tenant whose schema is served.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    tenants = await _targets(db, tenant_ids)
    return GcReport(tuple([await _gc_tenant(db, tenant, now, batch) for tenant in tenants]))


async def _targets(db: Database, tenant_ids: Sequence[str] | None) -> list[str]:
    async with db.connection() as conn:
        if tenant_ids is None:
            return [t.tenant_id for t in await list_tenants(conn) if t.status in SERVING_STATUSES]
        records = [await get_tenant(conn, tenant) for tenant in dict.fromkeys(tenant_ids)]
    for record in records:
        if record.status not in SERVING_STATUSES:
            raise TenantStateError(f"tenant {record.tenant_id} is {record.status}; nothing to do")
    return [record.tenant_id for record in records]


async def _gc_tenant(db: Database, tenant_id: str, now: datetime, batch: int) -> TenantGc:
    done = TenantGc(tenant_id)
    try:
        keys = await _delete_in_batches(db, tenant_id, _GC_KEYS, now, batch)
        done = replace(done, keys_deleted=keys)
        old = now - MESSAGE_RETENTION
        messages = await _delete_in_batches(db, tenant_id, _GC_MESSAGES, old, batch)
        done = replace(done, messages_deleted=messages)
    except _TENANT_ERRORS as exc:
        _log.error("idempotency_gc_failed", tenant_id=tenant_id, error=str(exc)[:500])
        return replace(done, error=f"{type(exc).__name__}: {exc}")
    _log.info("idempotency_gc_done", tenant_id=tenant_id, keys=keys, messages=messages)
    return done


async def _delete_in_batches(
    db: Database, tenant_id: str, sql: str, before: datetime, batch: int
) -> int:
    deleted = 0
    while True:
        async with db.tenant_transaction(tenant_id) as tx:
            status: str = await tx.conn.execute(sql, before, _SETTLED, batch)
        count = int(status.rsplit(" ", 1)[-1])
        deleted += count
        if count < batch:
            return deleted


@dataclass(frozen=True, slots=True)
class PaymentSummary:
    """The payment row as it stands; amounts in minor units of ``currency``."""

    payment_id: str
    state: str
    currency: str
    amount_minor: int
    authorized_minor: int
    captured_minor: int
    refunded_minor: int
    processor: str | None
    processor_reference: str | None
    attention: str | None
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OperationEntry:
    """One vendor operation of the payment."""

    seq: int
    kind: str
    processor: str
    amount_minor: int
    status: str
    attempts: int
    inquiries: int
    vendor_reference: str | None
    failure_code: str | None
    last_error: str | None
    idempotency_key: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TimerEntry:
    """A saga timer still set on the payment."""

    kind: str
    seq: int
    due_at: datetime
    lease_until: datetime | None


@dataclass(frozen=True, slots=True)
class TransitionEntry:
    """One stored version of the payment."""

    version: int
    from_state: str | None
    to_state: str
    cause: str
    message_id: str | None
    detail: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class EventEntry:
    """One event the payment emitted, as it went to the outbox."""

    event_id: str
    version: int
    type: str
    command_key: str | None
    created_at: datetime
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Timeline:
    """A payment with its operations, timers, transitions and events, oldest first."""

    payment: PaymentSummary
    operations: tuple[OperationEntry, ...]
    timers: tuple[TimerEntry, ...]
    transitions: tuple[TransitionEntry, ...]
    events: tuple[EventEntry, ...]


_SUMMARY: Final = """
SELECT payment_id, state, currency, amount_minor, authorized_minor, captured_minor,
       refunded_minor, processor, processor_reference, attention, version, created_at, updated_at
  FROM payments WHERE payment_id = $1
"""
_OPERATIONS: Final = """
SELECT seq, kind, processor, amount_minor, status, attempts, inquiries, vendor_reference,
       failure_code, last_error, idempotency_key, updated_at
  FROM payment_operations WHERE payment_id = $1 ORDER BY seq
"""
_TIMERS: Final = """
SELECT kind, seq, due_at, lease_until FROM saga_timers WHERE payment_id = $1 ORDER BY due_at, seq
"""
_TRANSITIONS: Final = """
SELECT version, from_state, to_state, cause, message_id, detail, at
  FROM payment_transitions WHERE payment_id = $1 ORDER BY version
"""
_EVENTS: Final = """
SELECT event_id, version, type, command_key, created_at, data::text AS data
  FROM payment_events WHERE payment_id = $1
"""


async def payment_timeline(db: Database, tenant_id: str, payment_id: str) -> Timeline | None:
    """Everything stored about one payment; None if the tenant has no such payment."""
    async with db.tenant_transaction(tenant_id) as tx:
        row = await tx.conn.fetchrow(_SUMMARY, payment_id)
        if row is None:
            return None
        operations = await tx.conn.fetch(_OPERATIONS, payment_id)
        timers = await tx.conn.fetch(_TIMERS, payment_id)
        transitions = await tx.conn.fetch(_TRANSITIONS, payment_id)
        events = await tx.conn.fetch(_EVENTS, payment_id)
    return Timeline(
        payment=PaymentSummary(**dict(row)),
        operations=tuple(OperationEntry(**dict(op)) for op in operations),
        timers=tuple(TimerEntry(**dict(timer)) for timer in timers),
        transitions=tuple(TransitionEntry(**dict(t)) for t in transitions),
        events=tuple(_in_emission_order(payment_id, events)),
    )


def _in_emission_order(payment_id: str, rows: list[asyncpg.Record]) -> list[EventEntry]:
    """Events by time and version, and within a version in the order they were emitted."""
    entries = [EventEntry(**{**dict(row), "data": json.loads(row["data"])}) for row in rows]
    versions = {entry.version for entry in entries}
    index = {event_id(payment_id, v, i): i for v in versions for i in range(len(entries))}
    return sorted(
        entries, key=lambda e: (e.created_at, e.version, index.get(e.event_id, len(entries)))
    )


@dataclass(frozen=True, slots=True)
class OpenOperation:
    """An operation whose outcome is still open."""

    seq: int
    kind: str
    status: str


@dataclass(frozen=True, slots=True)
class AttentionItem:
    """A payment an operator must look at, and why."""

    payment_id: str
    state: str
    attention: str | None
    processor: str | None
    currency: str
    amount_minor: int
    updated_at: datetime
    open_operations: tuple[OpenOperation, ...]


_ATTENTION: Final = """
SELECT p.payment_id, p.state, p.attention, p.processor, p.currency, p.amount_minor, p.updated_at,
       coalesce(jsonb_agg(jsonb_build_object('seq', o.seq, 'kind', o.kind, 'status', o.status)
                          ORDER BY o.seq) FILTER (WHERE o.seq IS NOT NULL), '[]')::text AS open
  FROM payments AS p
  LEFT JOIN payment_operations AS o
         ON o.payment_id = p.payment_id AND o.status = ANY ($1::text[])
 WHERE p.attention IS NOT NULL OR p.state = ANY ($2::text[])
 GROUP BY p.payment_id
 ORDER BY p.updated_at, p.payment_id
"""
_NEEDS_OPERATOR: Final = sorted({PaymentState.IN_DOUBT, PaymentState.COMPENSATION_FAILED})


async def list_attention(db: Database, tenant_id: str) -> list[AttentionItem]:
    """Payments flagged for an operator, in doubt, or with a failed compensation; oldest first."""
    async with db.tenant_transaction(tenant_id) as tx:
        rows = await tx.conn.fetch(_ATTENTION, sorted(IN_FLIGHT), _NEEDS_OPERATOR)
    return [
        AttentionItem(
            payment_id=row["payment_id"],
            state=row["state"],
            attention=row["attention"],
            processor=row["processor"],
            currency=row["currency"],
            amount_minor=row["amount_minor"],
            updated_at=row["updated_at"],
            open_operations=tuple(OpenOperation(**op) for op in json.loads(row["open"])),
        )
        for row in rows
    ]


class OperatorRequestError(LookupError):
    """The decision names a payment or operation that is not there, or lacks a reference."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """What an operator's decision did: the payment's state and the operations to send."""

    state: PaymentState
    execute: tuple[int, ...] = ()
    refused: str | None = None
    """The saga's reason for refusing the decision; nothing changed."""


_NOTE: Final = """
UPDATE payment_transitions SET detail = $3 WHERE payment_id = $1 AND version = $2
"""


async def resolve(
    db: Database,
    tenant_id: str,
    payment_id: str,
    decision: OperatorResolved | RetryCompensation,
    now: datetime,
) -> Resolution:
    """Apply an operator's ``decision`` to the payment through the saga guard."""
    async with db.tenant_transaction(tenant_id) as tx:
        before = await load(tx, payment_id)
        if before is None:
            raise OperatorRequestError(f"unknown payment {payment_id} in {tenant_id}")
        if isinstance(decision, OperatorResolved):
            _check_operation(before, decision)
        decided = decide(before, decision, now)
        if decided.rejection is not None:
            return Resolution(before.state, refused=decided.rejection.detail)
        after = await save(tx, before, decided, SaveContext(tenant_id, now)) or before
        if after.version != before.version:
            detail = "; ".join(filter(None, (f"operator: {decision.note}", after.attention)))
            await tx.conn.execute(_NOTE, payment_id, after.version, detail[:1000])
    _log.info(
        "payment_operator_decision",
        tenant_id=tenant_id,
        payment_id=payment_id,
        cause=decided.cause,
        from_state=before.state,
        to_state=after.state,
        note=decision.note,
    )
    return Resolution(after.state, decided.execute)


def _check_operation(payment: Payment, decision: OperatorResolved) -> None:
    op = payment.operation(decision.seq)
    if op is None:
        raise OperatorRequestError(f"payment {payment.payment_id} has no operation #{decision.seq}")
    if decision.succeeded and decision.reference is None and op.kind is not OperationKind.VOID:
        raise OperatorRequestError(
            f"operation #{op.seq} is a {op.kind}: a successful outcome needs the vendor reference"
        )
