"""Inbox appliers: stored webhooks, applied to their payments through the saga's guard.

``payment-worker`` runs an ``InboxApplier``. It wakes on the inbox's NOTIFY (a statement
trigger on insert) and polls as a fallback, claims due ``pending`` rows with a lease
(``FOR UPDATE SKIP LOCKED``, so several workers share the work), and for each row:

1. finds the payment in the tenant's schema, by the payment id the vendor echoed or by
   the vendor's reference recorded on one of its operations;
2. asks ``sagas.notifications.interpret`` what the notification means for it;
3. applies an outcome with ``OperationExecutor.apply`` (same transaction shape, same
   guard, same outbox as vendor responses and inquiries), then sends whatever the saga
   decided next; or inquires, when the customer finished a redirect.

A row then becomes ``applied`` (or stays ``pending`` with a later ``next_attempt_at``:
the payment is unknown yet, or the operation it answers is not in flight yet; after
``InboxPolicy.give_up_after`` it is ``parked``). One that contradicts its payment is
``parked`` at once. Parked rows are for operators (``payments-admin-cli webhooks``);
nothing is dropped. Rows of one payment are applied in the order they arrived.
"""

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import asyncpg
import structlog
from pydantic import ValidationError

from handlers.executor import OperationExecutor
from handlers.saga_store import load
from sagas.messages import Unresolved
from sagas.notifications import Conflict, Inquire, Known, Later, Resolve, interpret
from schemas.clock import Clock
from schemas.notifications import Notification
from tenancy.db import Database
from tenancy.errors import TenantStateError, UnknownTenantError

_log = structlog.get_logger(__name__)

CHANNEL: Final = "webhook_inbox"
_CLAIM: Final = """
UPDATE payments_central.webhook_inbox SET claimed_until = $3
 WHERE inbox_id IN (
       SELECT inbox_id FROM payments_central.webhook_inbox
        WHERE status = 'pending' AND next_attempt_at <= $1
          AND (claimed_until IS NULL OR claimed_until <= $1)
          AND ($4::text IS NULL OR tenant_id = $4)
        ORDER BY next_attempt_at, inbox_id
        LIMIT $2
          FOR UPDATE SKIP LOCKED)
RETURNING inbox_id, processor, vendor_event_id, tenant_id, payload::text AS payload,
          attempts, received_at, claimed_until
"""
_SETTLE: Final = """
UPDATE payments_central.webhook_inbox
   SET status = $2::text, attempts = attempts + 1, next_attempt_at = $3::timestamptz,
       claimed_until = NULL, last_error = $4::text, payment_id = coalesce($5::text, payment_id),
       settled_at = CASE WHEN $2::text = 'pending' THEN NULL ELSE $6::timestamptz END
 WHERE inbox_id = $1 AND status = 'pending' AND claimed_until = $7
"""
_FIND_PAYMENT: Final = """
SELECT payment_id FROM payments WHERE payment_id = $1
UNION ALL
(SELECT payment_id FROM payment_operations
  WHERE processor = $2 AND vendor_reference = ANY($3::text[])
  ORDER BY seq DESC LIMIT 1)
LIMIT 1
"""
_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class InboxPolicy:
    """How the appliers claim, retry and give up."""

    batch: int = 100
    lease: timedelta = timedelta(minutes=5)
    """A claimed batch's time; a row whose lease ran out before its turn is left alone."""
    poll_seconds: float = 1.0
    first_retry: timedelta = timedelta(seconds=2)
    max_retry: timedelta = timedelta(minutes=10)
    give_up_after: timedelta = timedelta(hours=24)
    """A row still not applicable this long after it arrived is parked for operators."""
    concurrency: int = 16
    """Payments applied at once (rows of one payment always in order)."""

    def retry_in(self, attempts: int) -> timedelta:
        """The wait before attempt ``attempts + 1`` (doubling, capped)."""
        return min(self.first_retry * (1 << min(attempts, 20)), self.max_retry)


@dataclass(frozen=True, slots=True)
class InboxRow:
    """A claimed inbox row."""

    inbox_id: int
    tenant_id: str | None
    notification: Notification | None
    """The stored notification; None if it no longer reads (the row is parked)."""
    attempts: int
    received_at: datetime
    processor: str
    event_id: str
    claimed_until: datetime

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> "InboxRow":
        """From a claimed row; the notification is read once, here."""
        try:
            notification = Notification.model_validate_json(row["payload"])
        except ValidationError:
            notification = None
        return cls(
            row["inbox_id"],
            row["tenant_id"],
            notification,
            row["attempts"],
            row["received_at"],
            row["processor"],
            row["vendor_event_id"],
            row["claimed_until"],
        )


@dataclass(frozen=True, slots=True)
class Settled:
    """What became of one row."""

    status: str
    reason: str | None = None
    payment_id: str | None = None


class InboxApplier:
    """Applies stored webhooks to their sagas."""

    def __init__(
        self,
        db: Database,
        executor: OperationExecutor,
        clock: Clock,
        policy: InboxPolicy = InboxPolicy(),
    ) -> None:
        """Apply through ``executor``."""
        self._db = db
        self._executor = executor
        self._clock = clock
        self._policy = policy
        self._wake = asyncio.Event()
        self.listening = asyncio.Event()
        """Set once the applier listens for the inbox's NOTIFY and has caught up once."""

    async def run(self, stop: asyncio.Event) -> None:
        """Apply due rows until ``stop``: on each NOTIFY, else every ``poll_seconds``."""
        listening = await self._listen()
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    applied = await self.run_once()
                except _ERRORS as exc:
                    _log.error("inbox_claim_failed", error=type(exc).__name__)
                    applied = 0
                if applied >= self._policy.batch:
                    continue
                if listening is not None:
                    self.listening.set()
                await _first_of(stop, self._wake, self._policy.poll_seconds)
        finally:
            if listening is not None:
                await self._unlisten(listening)

    async def run_once(self, tenant_id: str | None = None) -> int:
        """Claim and apply one batch of due rows (of one tenant); how many were claimed."""
        now = self._clock()
        async with self._db.connection() as conn:
            records = await conn.fetch(
                _CLAIM, now, self._policy.batch, now + self._policy.lease, tenant_id
            )
        rows = [InboxRow.from_record(r) for r in records]
        if not rows:
            return 0
        groups: dict[tuple[str | None, str], list[InboxRow]] = defaultdict(list)
        for row in sorted(rows, key=lambda r: r.inbox_id):
            groups[(row.tenant_id, _payment_hint(row))].append(row)
        gate = asyncio.Semaphore(self._policy.concurrency)

        async def apply_group(group: Sequence[InboxRow]) -> None:
            async with gate:
                for row in group:
                    if self._clock() >= row.claimed_until:
                        _log.warning("inbox_lease_expired", inbox_id=row.inbox_id)
                        return  # another applier may hold it now; the rest follow it
                    await self._settle(row, await self._apply_safely(row))

        async with asyncio.TaskGroup() as tasks:
            for group in groups.values():
                tasks.create_task(apply_group(group))
        return len(rows)

    async def _apply_safely(self, row: InboxRow) -> Settled:
        try:
            return await self.apply(row)
        except (UnknownTenantError, TenantStateError) as exc:
            return Settled("parked", f"the tenant is not served: {exc}")
        except Exception as exc:  # noqa: BLE001 (one bad row must not stop the others)
            _log.exception("inbox_apply_failed", inbox_id=row.inbox_id)
            return self._later(row, f"applying failed: {type(exc).__name__}")

    async def apply(self, row: InboxRow) -> Settled:  # noqa: PLR0911 (one answer per verdict)
        """Apply one row to its payment; what became of it."""
        if row.tenant_id is None:
            return Settled("ignored", "the tenant was offboarded")
        notification = row.notification
        if notification is None:
            return Settled("parked", "the stored notification no longer reads")
        tenant_id = row.tenant_id
        async with self._db.tenant_transaction(tenant_id) as tx:
            names = [n for n in (notification.reference, notification.authorization_reference) if n]
            payment_id = await tx.conn.fetchval(
                _FIND_PAYMENT, notification.payment_id, notification.processor.value, names
            )
            payment = None if payment_id is None else await load(tx, payment_id)
        if payment is None:
            return self._later(row, "no payment of this tenant matches it yet")
        verdict = interpret(payment, notification)
        log = _log.bind(
            inbox_id=row.inbox_id,
            tenant_id=tenant_id,
            payment_id=payment.payment_id,
            kind=notification.kind,
            processor=notification.processor,
        )
        message_id = f"webhook:{row.processor}:{row.event_id}"
        match verdict:
            case Resolve(outcome):
                sends = await self._executor.apply(
                    tenant_id, payment.payment_id, outcome, message_id=message_id
                )
                log.info("webhook_applied", outcome=type(outcome).__name__)
                await self._executor.run(tenant_id, payment.payment_id, sends)
                return Settled("applied", None, payment.payment_id)
            case Inquire(seq):
                answer = await self._executor.inquire(tenant_id, payment.payment_id, seq)
                log.info("webhook_inquired", outcome=type(answer).__name__)
                if answer is None or isinstance(answer, Unresolved):
                    return self._later(row, "the processor could not tell yet", payment.payment_id)
                sends = await self._executor.apply(
                    tenant_id, payment.payment_id, answer, message_id=message_id
                )
                await self._executor.run(tenant_id, payment.payment_id, sends)
                return Settled("applied", None, payment.payment_id)
            case Known(reason):
                log.info("webhook_already_known", reason=reason)
                return Settled("applied", reason, payment.payment_id)
            case Later(reason):
                return self._later(row, reason, payment.payment_id)
            case Conflict(reason):
                log.warning("webhook_parked", reason=reason)
                return Settled("parked", reason, payment.payment_id)

    def _later(self, row: InboxRow, reason: str, payment_id: str | None = None) -> Settled:
        if self._clock() - row.received_at >= self._policy.give_up_after:
            _log.warning("webhook_parked", inbox_id=row.inbox_id, reason=reason, gave_up=True)
            return Settled("parked", f"gave up waiting: {reason}", payment_id)
        return Settled("pending", reason, payment_id)

    async def _settle(self, row: InboxRow, settled: Settled) -> None:
        now = self._clock()
        retry_at = now + self._policy.retry_in(row.attempts)
        try:
            async with self._db.connection() as conn:
                updated = await conn.execute(
                    _SETTLE,
                    row.inbox_id,
                    settled.status,
                    retry_at if settled.status == "pending" else now,
                    None if settled.reason is None else settled.reason[:1000],
                    settled.payment_id,
                    now,
                    row.claimed_until,
                )
        except _ERRORS as exc:
            # The lease runs out and the row is claimed again; applying is idempotent.
            _log.error("inbox_settle_failed", inbox_id=row.inbox_id, error=type(exc).__name__)
            return
        if updated == "UPDATE 0":
            _log.warning("inbox_lease_lost", inbox_id=row.inbox_id, status=settled.status)
            return
        if settled.status == "pending":
            _log.info(
                "webhook_deferred",
                inbox_id=row.inbox_id,
                reason=settled.reason,
                attempts=row.attempts + 1,
            )

    async def _listen(self) -> Any:  # noqa: ANN401 (a pool connection, or None)
        """A connection listening on the inbox channel; None (polling only) if it fails."""
        try:
            conn = await self._db.pool.acquire()
        except _ERRORS as exc:
            _log.warning("inbox_listen_failed", error=type(exc).__name__)
            return None
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except _ERRORS as exc:
            _log.warning("inbox_listen_failed", error=type(exc).__name__)
            await self._db.pool.release(conn)
            return None
        return conn

    async def _unlisten(self, conn: Any) -> None:  # noqa: ANN401 (a pool connection)
        self.listening.clear()
        try:
            await conn.remove_listener(CHANNEL, self._notified)
        except _ERRORS:
            _log.info("inbox_unlisten_failed")
        await self._db.pool.release(conn)

    def _notified(self, *_args: object) -> None:
        self._wake.set()


def _payment_hint(row: InboxRow) -> str:
    """Rows naming the same payment or vendor object go in one ordered group."""
    notification = row.notification
    if notification is None:
        return f"row:{row.inbox_id}"
    return (
        notification.payment_id
        or notification.authorization_reference
        or notification.reference
        or f"row:{row.inbox_id}"
    )


async def _first_of(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, or ``seconds`` pass."""
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One inbox row, as operators see it."""

    inbox_id: int
    processor: str
    vendor_event_id: str
    tenant_id: str | None
    event_type: str
    status: str
    attempts: int
    payment_id: str | None
    last_error: str | None
    received_at: datetime
    next_attempt_at: datetime


_LIST: Final = """
SELECT inbox_id, processor, vendor_event_id, tenant_id, event_type, status, attempts,
       payment_id, last_error, received_at, next_attempt_at
  FROM payments_central.webhook_inbox
 WHERE status = $1 AND ($2::text IS NULL OR tenant_id = $2)
 ORDER BY received_at, inbox_id
 LIMIT $3
"""
_REQUEUE: Final = """
UPDATE payments_central.webhook_inbox
   SET status = 'pending', next_attempt_at = $2, claimed_until = NULL, settled_at = NULL
 WHERE inbox_id = $1 AND status = 'parked' AND tenant_id IS NOT NULL
RETURNING inbox_id
"""


async def list_inbox(
    db: Database, status: str, tenant_id: str | None = None, limit: int = 100
) -> list[InboxEntry]:
    """Inbox rows in ``status`` (of one tenant, or all), oldest first."""
    async with db.connection() as conn:
        rows = await conn.fetch(_LIST, status, tenant_id, limit)
    return [InboxEntry(**dict(row)) for row in rows]


async def requeue(db: Database, inbox_id: int, now: datetime) -> bool:
    """Put a parked row back in the queue, due now (parked again if it still cannot apply)."""
    async with db.connection() as conn:
        found = await conn.fetchval(_REQUEUE, inbox_id, now)
    if found is not None:
        _log.warning("webhook_requeued", inbox_id=inbox_id)
    return found is not None
