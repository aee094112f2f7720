"""Booking commands into payment sagas: one tenant transaction per message.

In that transaction: the message is recorded as processed (a redelivery stops here), the
tenant's lifecycle is checked (a soft-deleted tenant takes no authorize or capture), the
idempotency key is checked (a repeat re-emits the first answer, a conflict is refused),
the saga decides, and its new state, operations, timers and events are stored together.
Only after commit are the decided operations sent to processors, by the executor.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import asyncpg
import structlog

from handlers.executor import OperationExecutor, Send, count_sends
from handlers.idempotency import check_key, first_delivery, record_key, replay
from handlers.ports import TenantPorts
from handlers.saga_store import ConcurrentUpdateError, SaveContext, load, save
from outbox.store import OutgoingEvent, append
from processors.breaker import Breakers
from processors.routing import candidates
from sagas.machine import decide
from sagas.messages import Authorize, Cancel, Capture, CommandMessage, Refund, Void
from sagas.model import ExpiryPolicy, SagaPolicy
from schemas.catalog import type_of
from schemas.clock import Clock
from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    Command,
    RefundPayment,
    VoidPayment,
)
from schemas.envelope import SOURCE, Envelope, rejection_id
from schemas.events import CommandRejected, RejectionReason
from schemas.processors import Processor
from schemas.topology import PAYMENT_EVENTS
from tenancy.db import Database, TenantTransaction
from tenancy.lifecycle import Operation, allows

_log = structlog.get_logger(__name__)
TRANSACTION_ATTEMPTS: Final = 5
_OPERATION: Final[dict[type[Command], Operation]] = {
    AuthorizePayment: Operation.AUTHORIZE,
    CapturePayment: Operation.CAPTURE,
    VoidPayment: Operation.VOID,
    RefundPayment: Operation.REFUND,
    CancelPayment: Operation.CANCEL,
}
_POLICY: Final = """
SELECT authorization_expiry, extract(epoch FROM action_timeout)::float8 AS action_timeout
  FROM saga_policy
"""


@dataclass(frozen=True, slots=True)
class Received:
    """A command and what the consumer knows about its message."""

    tenant_id: str
    source: str
    message_id: str
    """The ce-id."""
    command: Command

    @property
    def dedupe_id(self) -> str:
        """The message's identity for de-duplication: source and id."""
        return f"{self.source}|{self.message_id}"[:600]


class PaymentCommands:
    """The handlers of the five payment commands."""

    def __init__(
        self,
        db: Database,
        executor: OperationExecutor,
        ports: TenantPorts,
        breakers: Breakers,
        clock: Clock,
    ) -> None:
        """Wire the handlers to their dependencies."""
        self._db = db
        self._executor = executor
        self._ports = ports
        self._breakers = breakers
        self._clock = clock

    async def handle(self, received: Received) -> None:
        """Apply one command; send whatever operations it decided once committed."""
        command = received.command
        routes = None
        if isinstance(command, AuthorizePayment):
            routes = await self._routes(received.tenant_id, command)
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                execute = await self._transact(received, routes)
                break
            except (
                ConcurrentUpdateError,
                asyncpg.UniqueViolationError,
                asyncpg.SerializationError,
                asyncpg.DeadlockDetectedError,
            ):
                if attempt == TRANSACTION_ATTEMPTS:
                    raise
                _log.info("command_conflict_retrying", attempt=attempt)
        if execute:
            await self._executor.run(received.tenant_id, command.payment_id, execute)

    async def _routes(self, tenant_id: str, command: AuthorizePayment) -> tuple[Processor, ...]:
        options = await self._ports.options(tenant_id)
        return candidates(
            options,
            currency=command.amount.currency,
            method=command.payment_method.type,
            manual_capture=command.capture == "manual",
            hint=command.processor,
            is_open=lambda processor: self._breakers.is_open(tenant_id, processor),
        )

    async def _transact(
        self, received: Received, routes: tuple[Processor, ...] | None
    ) -> tuple[Send, ...]:
        command = received.command
        now = self._clock()
        context = SaveContext(received.tenant_id, now, received.dedupe_id)
        async with self._db.tenant_transaction(received.tenant_id) as tx:
            if not await first_delivery(tx, received.dedupe_id, command.payment_id, now):
                _log.info("command_duplicate_ignored")
                return ()
            if not allows(tx.status, _OPERATION[type(command)]):
                await _reject(
                    tx,
                    received,
                    "tenant_not_serving",
                    f"tenant {received.tenant_id} is {tx.status}: it takes no new "
                    f"{_OPERATION[type(command)]}s (refunds, voids and cancels still work)",
                    now,
                )
                return ()
            # The payment's row lock first: a copy of this command running concurrently
            # has then committed its key (or rolled back) before this one looks for it.
            before = await load(tx, command.payment_id)
            use = await check_key(tx, command.idempotency_key, command.payment_id, command)
            if use.conflict is not None:
                await _reject(tx, received, "idempotency_conflict", use.conflict, now)
                return ()
            if use.seen:
                replayed = await replay(
                    tx, command.idempotency_key, command.payment_id, received.message_id, context
                )
                _log.info("command_repeat_answered", events=replayed)
                return ()
            message = await _saga_message(tx, command, routes)
            decision = decide(before, message, now)
            if decision.rejection is not None:
                rejection = decision.rejection
                await _reject(tx, received, rejection.reason, rejection.detail, now)
                return ()
            stored = await save(tx, before, decision, context)
            await record_key(tx, command, received.dedupe_id, now)
            return await count_sends(tx, stored, decision.execute, now)


async def _saga_message(
    tx: TenantTransaction, command: Command, routes: tuple[Processor, ...] | None
) -> CommandMessage:
    match command:
        case AuthorizePayment():
            row = await tx.conn.fetchrow(_POLICY)
            policy = (
                SagaPolicy()
                if row is None
                else SagaPolicy(
                    expiry=ExpiryPolicy(row["authorization_expiry"]),
                    action_timeout=timedelta(seconds=row["action_timeout"]),
                )
            )
            return Authorize(command, routes or (), policy)
        case CapturePayment():
            return Capture(command)
        case VoidPayment():
            return Void(command)
        case RefundPayment():
            return Refund(command)
        case CancelPayment():
            return Cancel(command)


async def _reject(
    tx: TenantTransaction,
    received: Received,
    reason: RejectionReason,
    detail: str,
    now: datetime,
) -> None:
    """Answer the command with ``command.rejected``, in the tenant transaction."""
    command = received.command
    event = CommandRejected(
        payment_id=command.payment_id,
        rejected_message_id=received.message_id[:255],
        rejected_type=type_of(type(command)),
        reason=reason,
        detail=detail[:1000],
    )
    envelope = Envelope(
        id=rejection_id(received.source, received.message_id),
        source=SOURCE,
        type=type_of(CommandRejected),
        time=now,
        subject=command.payment_id,
        tenant_id=received.tenant_id,
    )
    data = event.model_dump_json().encode()
    await append(tx.conn, [OutgoingEvent(envelope, data, PAYMENT_EVENTS, command.payment_id)])
    _log.info("command_rejected", reason=reason, detail=detail[:200])
