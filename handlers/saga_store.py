"""Saga persistence in the tenant schema: load a payment, store a decision.

``load`` reads a payment with its operations and timers, locking the row (the per-payment
lock every transition takes). ``save`` writes what a decision changed in the caller's
tenant transaction: the payment under optimistic concurrency (``WHERE version = read``;
the database trigger refuses anything else), new and changed operations, the timer set,
one timeline row per version, and each event both in the payment's timeline and in the
outbox. Event ids derive from (payment, version, index), so a transition can never be
announced twice.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel

from outbox.store import OutgoingEvent, append
from sagas.decision import Decision
from sagas.model import (
    Cancellation,
    ExpiryPolicy,
    Operation,
    OperationKind,
    OperationStatus,
    Payment,
    SagaPolicy,
    Timer,
    TimerKind,
    operation_key,
)
from sagas.states import PaymentState
from schemas.catalog import type_of
from schemas.commands import AuthorizePayment
from schemas.envelope import SOURCE, Envelope
from schemas.processors import Processor
from schemas.topology import PAYMENT_EVENTS
from tenancy.db import TenantTransaction

EVENT_NAMESPACE: Final = uuid.UUID("0c7f7f4e-4a55-4c39-9d1e-6b6a1d0f3e21")

_PAYMENT: Final = """
SELECT p.payment_id, p.state, p.currency, p.amount_minor, p.authorized_minor,
       p.captured_minor, p.refunded_minor, p.processor, p.version, p.processor_reference,
       p.authorization_expires_at, p.attention, p.saga,
       (SELECT coalesce(json_agg(json_build_object(
                   'seq', o.seq, 'kind', o.kind, 'processor', o.processor,
                   'amount_minor', o.amount_minor, 'status', o.status, 'origin', o.origin,
                   'command_key', o.command_key, 'final', o.final, 'reason', o.reason,
                   'vendor_reference', o.vendor_reference,
                   'target_reference', o.target_reference, 'failure_code', o.failure_code,
                   'inquiries', o.inquiries) ORDER BY o.seq), '[]')
          FROM payment_operations AS o WHERE o.payment_id = p.payment_id) AS operations,
       (SELECT coalesce(json_agg(json_build_object(
                   'kind', t.kind, 'seq', t.seq, 'due_at', t.due_at)), '[]')
          FROM saga_timers AS t WHERE t.payment_id = p.payment_id) AS timers
  FROM payments AS p WHERE p.payment_id = $1 FOR UPDATE OF p
"""
_INSERT_PAYMENT: Final = """
INSERT INTO payments (payment_id, state, currency, amount_minor, authorized_minor,
                      captured_minor, refunded_minor, processor, version, capture_mode,
                      processor_reference, authorization_expires_at, attention, saga,
                      created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12, $13::jsonb, $14, $14)
"""
_UPDATE_PAYMENT: Final = """
UPDATE payments
   SET state = $3, authorized_minor = $4, captured_minor = $5, refunded_minor = $6,
       processor = $7, version = version + 1, processor_reference = $8,
       authorization_expires_at = $9, attention = $10, saga = $11::jsonb, updated_at = $12
 WHERE payment_id = $1 AND version = $2
"""
_UPSERT_OPERATION: Final = """
INSERT INTO payment_operations (payment_id, seq, kind, processor, amount_minor,
                                idempotency_key, status, origin, command_key, final, reason,
                                vendor_reference, target_reference, failure_code, inquiries,
                                created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)
ON CONFLICT (payment_id, seq) DO UPDATE
   SET status = excluded.status, vendor_reference = excluded.vendor_reference,
       target_reference = excluded.target_reference, failure_code = excluded.failure_code,
       inquiries = excluded.inquiries, updated_at = excluded.updated_at
"""
_DELETE_TIMER: Final = "DELETE FROM saga_timers WHERE payment_id = $1 AND kind = $2 AND seq = $3"
_UPSERT_TIMER: Final = """
INSERT INTO saga_timers (payment_id, kind, seq, due_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (payment_id, kind, seq) DO UPDATE SET due_at = excluded.due_at, lease_until = NULL
"""
_WAKEUP_SHARE: Final = """
SELECT due_at FROM payments_central.saga_wakeups WHERE tenant_id = $1 FOR KEY SHARE
"""
_WAKEUP: Final = """
INSERT INTO payments_central.saga_wakeups AS w (tenant_id, due_at) VALUES ($1, $2)
ON CONFLICT (tenant_id) DO UPDATE SET due_at = least(w.due_at, excluded.due_at)
"""
_TRANSITION: Final = """
INSERT INTO payment_transitions (payment_id, version, from_state, to_state, cause, message_id,
                                 detail, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_EVENT: Final = """
INSERT INTO payment_events
       (event_id, payment_id, version, type, command_key, data, created_at, replay_of)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
"""


class ConcurrentUpdateError(Exception):
    """The payment changed since it was read; the whole transaction must be retried."""


@dataclass(frozen=True, slots=True)
class SaveContext:
    """Where a decision came from, for ids and the timeline."""

    tenant_id: str
    now: datetime
    message_id: str | None = None


async def load(tx: TenantTransaction, payment_id: str) -> Payment | None:
    """The payment with its operations and timers, row-locked; None if there is none.

    One round trip: operations and timers come along as JSON arrays.
    """
    row = await tx.conn.fetchrow(_PAYMENT, payment_id)
    if row is None:
        return None
    operations = json.loads(row["operations"])
    timers = json.loads(row["timers"])
    saga: dict[str, Any] = json.loads(row["saga"])
    cancellation = saga.get("cancellation")
    return Payment(
        payment_id=row["payment_id"],
        currency=row["currency"],
        amount=row["amount_minor"],
        request=AuthorizePayment.model_validate(saga["request"]),
        policy=SagaPolicy(
            expiry=ExpiryPolicy(saga["policy"]["expiry"]),
            action_timeout=timedelta(seconds=saga["policy"]["action_timeout_s"]),
        ),
        candidates=tuple(Processor(p) for p in saga["candidates"]),
        state=PaymentState(row["state"]),
        processor=None if row["processor"] is None else Processor(row["processor"]),
        authorization_reference=row["processor_reference"],
        capture_reference=saga.get("capture_reference"),
        authorized=row["authorized_minor"],
        captured=row["captured_minor"],
        refunded=row["refunded_minor"],
        capture_final=saga["capture_final"],
        voided=saga["voided"],
        ending=saga.get("ending"),
        authorization_expires_at=row["authorization_expires_at"],
        operations=tuple(_operation(op) for op in operations),
        timers=tuple(
            Timer(TimerKind(t["kind"]), datetime.fromisoformat(t["due_at"]), t["seq"])
            for t in timers
        ),
        cancellation=None if cancellation is None else Cancellation(**cancellation),
        attention=row["attention"],
        version=row["version"],
    )


def _operation(row: dict[str, Any]) -> Operation:
    return Operation(
        seq=row["seq"],
        kind=OperationKind(row["kind"]),
        processor=Processor(row["processor"]),
        amount=row["amount_minor"],
        status=OperationStatus(row["status"]),
        origin=row["origin"],
        command_key=row["command_key"],
        final=row["final"],
        reason=row["reason"],
        reference=row["vendor_reference"],
        target=row["target_reference"],
        failure_code=row["failure_code"],
        inquiries=row["inquiries"],
    )


def _saga_json(payment: Payment) -> str:
    cancellation = payment.cancellation
    return json.dumps(
        {
            "request": payment.request.model_dump(mode="json"),
            "policy": {
                "expiry": payment.policy.expiry.value,
                "action_timeout_s": payment.policy.action_timeout.total_seconds(),
            },
            "candidates": [p.value for p in payment.candidates],
            "capture_reference": payment.capture_reference,
            "capture_final": payment.capture_final,
            "voided": payment.voided,
            "ending": payment.ending,
            "cancellation": None
            if cancellation is None
            else {
                "reason": cancellation.reason,
                "command_key": cancellation.command_key,
                "voided": cancellation.voided,
                "refunded": cancellation.refunded,
                "failed": cancellation.failed,
                "done": cancellation.done,
            },
        }
    )


def event_id(payment_id: str, version: int, index: int) -> str:
    """The CloudEvent id of the ``index``-th event of a payment's ``version``."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{payment_id}:{version}:{index}"))


async def save(
    tx: TenantTransaction, before: Payment | None, decision: Decision, context: SaveContext
) -> Payment | None:
    """Store what ``decision`` changed; returns the stored payment (with its new version)."""
    after = decision.payment
    if after is None or (after == before and not decision.events):
        return before
    version = await _save_payment(tx, before, after, context)
    await _save_operations(tx, before, after, context)
    await _save_timers(tx, before, after, context)
    await tx.conn.execute(
        _TRANSITION,
        after.payment_id,
        version,
        None if before is None else before.state.value,
        after.state.value,
        decision.cause[:100] or "update",
        context.message_id,
        after.attention,
        context.now,
    )
    await save_events(
        tx, after.payment_id, version, [(e.event, e.command_key) for e in decision.events], context
    )
    return Payment(**{**_fields(after), "version": version})


def _fields(payment: Payment) -> dict[str, Any]:
    return {name: getattr(payment, name) for name in Payment.__dataclass_fields__}


async def _save_payment(
    tx: TenantTransaction, before: Payment | None, after: Payment, context: SaveContext
) -> int:
    amounts = (after.authorized, after.captured, after.refunded)
    processor = None if after.processor is None else after.processor.value
    if before is None:
        await tx.conn.execute(
            _INSERT_PAYMENT,
            after.payment_id,
            after.state.value,
            after.currency,
            after.amount,
            *amounts,
            processor,
            after.request.capture,
            after.authorization_reference,
            after.authorization_expires_at,
            after.attention,
            _saga_json(after),
            context.now,
        )
        return 1
    status = await tx.conn.execute(
        _UPDATE_PAYMENT,
        after.payment_id,
        before.version,
        after.state.value,
        *amounts,
        processor,
        after.authorization_reference,
        after.authorization_expires_at,
        after.attention,
        _saga_json(after),
        context.now,
    )
    if status != "UPDATE 1":
        raise ConcurrentUpdateError(f"payment {after.payment_id} changed since it was read")
    return before.version + 1


async def _save_operations(
    tx: TenantTransaction, before: Payment | None, after: Payment, context: SaveContext
) -> None:
    old = {} if before is None else {op.seq: op for op in before.operations}
    rows = [
        (
            after.payment_id,
            op.seq,
            op.kind.value,
            op.processor.value,
            op.amount,
            operation_key(context.tenant_id, after.payment_id, op.kind, op.seq),
            op.status.value,
            op.origin,
            op.command_key,
            op.final,
            op.reason,
            op.reference,
            op.target,
            op.failure_code,
            op.inquiries,
            context.now,
        )
        for op in after.operations
        if old.get(op.seq) != op
    ]
    if rows:
        await tx.conn.executemany(_UPSERT_OPERATION, rows)


async def _save_timers(
    tx: TenantTransaction, before: Payment | None, after: Payment, context: SaveContext
) -> None:
    old = set() if before is None else set(before.timers)
    new = set(after.timers)
    keys = {(t.kind, t.seq) for t in new}
    gone = [
        (after.payment_id, t.kind.value, t.seq) for t in old - new if (t.kind, t.seq) not in keys
    ]
    if gone:
        await tx.conn.executemany(_DELETE_TIMER, gone)
    added = [(after.payment_id, t.kind.value, t.seq, t.due_at) for t in new - old]
    if added:
        await tx.conn.executemany(_UPSERT_TIMER, added)
        await _wake_by(tx, context.tenant_id, min(t.due_at for t in new - old))


async def _wake_by(tx: TenantTransaction, tenant_id: str, due_at: datetime) -> None:
    """Make sure the timer loop visits the tenant by ``due_at``.

    The tenant's wake-up row is shared by all its sagas, so it is only written when it
    must move earlier; otherwise a key-share lock is enough. That lock keeps the loop
    (which recomputes the row under FOR UPDATE) waiting until this transaction's timers
    are committed and visible to it, so no wake-up is lost, and it does not make
    concurrent sagas wait for one another.
    """
    current = await tx.conn.fetchval(_WAKEUP_SHARE, tenant_id)
    if current is None or current > due_at:
        await tx.conn.execute(_WAKEUP, tenant_id, due_at)


async def save_events(  # noqa: PLR0913 (replays pass their own ids by keyword)
    tx: TenantTransaction,
    payment_id: str,
    version: int,
    events: list[tuple[BaseModel, str | None]],
    context: SaveContext,
    *,
    ids: list[str] | None = None,
    replay_of: list[str] | None = None,
) -> None:
    """Record ``events`` in the payment's timeline and in the outbox.

    A replay passes its own ``ids`` and, in ``replay_of``, the events it repeats.
    """
    if not events:
        return
    outgoing = []
    timeline = []
    for index, (event, command_key) in enumerate(events):
        ce_id = ids[index] if ids is not None else event_id(payment_id, version, index)
        envelope = Envelope(
            id=ce_id,
            source=SOURCE,
            type=type_of(type(event)),
            time=context.now,
            subject=payment_id,
            tenant_id=context.tenant_id,
        )
        data = event.model_dump_json()
        outgoing.append(OutgoingEvent(envelope, data.encode(), PAYMENT_EVENTS, payment_id))
        repeats = replay_of[index] if replay_of is not None else None
        timeline.append(
            (ce_id, payment_id, version, envelope.type, command_key, data, context.now, repeats)
        )
    await tx.conn.executemany(_EVENT, timeline)
    await append(tx.conn, outgoing)
