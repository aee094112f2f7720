"""The operation executor: sends pending vendor operations and applies their outcomes.

It runs outside any transaction. For one operation it: counts the attempt (a short
transaction that also proves the operation is still pending), calls the processor through
the tenant's circuit breaker with the operation's derived idempotency key, retrying
retryable errors with the same key, and applies the outcome in a new tenant transaction
(saga state, operations, timers and outbox rows together). If the process dies in between,
the operation stays pending and its redrive timer sends it again, with the same key, so the
vendor answers with the first result instead of charging twice.

Outcomes, by what the processor said:

* success / customer action needed -> ``Succeeded`` / ``ActionNeeded``
* ``InDoubtError``, or an error the adapter did not classify -> ``InDoubt`` (never failed)
* ``DeclinedError`` -> ``Declined`` (``try_next`` only when the taxonomy allows it)
* ``RetryableError`` after the retries -> stays pending for the redrive timer, unless
  nothing was sent at all (an open breaker, no attachment), or it has been sent
  ``MAX_SEND_ROUNDS`` times: then ``Declined`` with ``retryable``, since nothing took effect.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

import asyncpg
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from handlers.ports import NotAttachedError, TenantPorts
from handlers.saga_store import ConcurrentUpdateError, SaveContext, load, save
from processors.breaker import Breakers
from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    ProcessorUnavailable,
    RetryableError,
    TryNextError,
)
from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    CaptureRequest,
    Failed,
    InquiryRequest,
    NotFound,
    PaymentPort,
    RefundRequest,
    StillPending,
    VoidRequest,
)
from processors.routing import should_try_next
from sagas.machine import decide
from sagas.messages import (
    ActionNeeded,
    Declined,
    InDoubt,
    ManualRefund,
    Message,
    NotReceived,
    Outcome,
    Succeeded,
    Unresolved,
)
from sagas.model import Operation, OperationKind, OperationStatus, Payment, TimerKind, operation_key
from schemas.clock import Clock
from schemas.money import Money
from tenancy.db import Database, TenantTransaction

_log = structlog.get_logger(__name__)
Request = AuthorizeRequest | CaptureRequest | VoidRequest | RefundRequest
MAX_SEND_ROUNDS: Final = 5
APPLY_ATTEMPTS: Final = 5
_COUNT_ATTEMPTS: Final = """
UPDATE payment_operations o SET attempts = o.attempts + 1, sent = true, updated_at = $3
  FROM (SELECT seq, sent FROM payment_operations
         WHERE payment_id = $1 AND seq = ANY($2::integer[]) AND status = 'pending'
           FOR UPDATE) AS before
 WHERE o.payment_id = $1 AND o.seq = before.seq
RETURNING o.seq, o.attempts, before.sent
"""
_LAST_ERROR: Final = """
UPDATE payment_operations SET last_error = $3, sent = $4 WHERE payment_id = $1 AND seq = $2
"""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of one send, all with the same idempotency key."""

    attempts: int = 3
    total_seconds: float = 20.0
    initial_seconds: float = 0.2
    max_seconds: float = 4.0


@dataclass(frozen=True, slots=True)
class Send:
    """An operation to send, its attempt counted in the transaction that read it."""

    payment: Payment
    op: Operation
    rounds: int
    """Sends of this operation so far, this one included."""
    sent: bool
    """Whether an earlier send may have reached the vendor."""


async def count_sends(
    tx: TenantTransaction, payment: Payment | None, seqs: Iterable[int], now: datetime
) -> tuple[Send, ...]:
    """Count one more send of each still-pending operation in ``seqs``, in ``tx``.

    The transaction that decides to send an operation counts the attempt itself, so
    sending needs no transaction of its own. Counting also marks the operation as possibly
    sent, before the call: a worker that dies mid-call leaves it marked, so its redrive
    never fails over. ``Send.sent`` is the mark as it was before this round.
    """
    wanted = list(seqs)
    if payment is None or not wanted:
        return ()
    rows = await tx.conn.fetch(_COUNT_ATTEMPTS, payment.payment_id, wanted, now)
    counted = {row["seq"]: row for row in rows}
    return tuple(
        Send(payment, op, counted[seq]["attempts"], counted[seq]["sent"])
        for seq in wanted
        if seq in counted and (op := payment.operation(seq)) is not None
    )


@dataclass(slots=True)
class SendRecord:
    """Whether any attempt to send an operation may have reached the vendor."""

    sent: bool


class OperationExecutor:
    """Sends operations to processors and feeds the outcomes back to their sagas."""

    def __init__(
        self,
        db: Database,
        ports: TenantPorts,
        breakers: Breakers,
        clock: Clock,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        """Wire the executor to its dependencies."""
        self._db = db
        self._ports = ports
        self._breakers = breakers
        self._clock = clock
        self._retry = retry

    async def run(self, tenant_id: str, payment_id: str, work: Iterable[int | Send]) -> None:
        """Send each operation (a seq, or a counted ``Send``); apply outcomes until done."""
        queue = list(work)
        while queue:
            item = queue.pop(0)
            if isinstance(item, Send):
                outcome = await self._send_counted(tenant_id, item)
            else:
                outcome = await self._send(tenant_id, payment_id, item)
            if outcome is not None:
                queue.extend(await self.apply(tenant_id, payment_id, outcome))

    async def apply(
        self,
        tenant_id: str,
        payment_id: str,
        message: Message,
        *,
        fired: tuple[TimerKind, int] | None = None,
        message_id: str | None = None,
    ) -> tuple[Send, ...]:
        """Apply ``message`` to the payment in a tenant transaction; returns what to send.

        ``fired`` names the timer that caused the message: it is removed if the saga left
        it in place, so a timer fires once.
        """
        for attempt in range(1, APPLY_ATTEMPTS + 1):
            try:
                return await self._apply_once(tenant_id, payment_id, message, fired, message_id)
            except (
                ConcurrentUpdateError,
                asyncpg.SerializationError,
                asyncpg.DeadlockDetectedError,
            ):
                if attempt == APPLY_ATTEMPTS:
                    raise
                _log.info("saga_apply_conflict_retrying", payment_id=payment_id, attempt=attempt)
        return ()

    async def _apply_once(
        self,
        tenant_id: str,
        payment_id: str,
        message: Message,
        fired: tuple[TimerKind, int] | None,
        message_id: str | None,
    ) -> tuple[Send, ...]:
        now = self._clock()
        async with self._db.tenant_transaction(tenant_id) as tx:
            before = await load(tx, payment_id)
            if before is None:
                return ()
            decision = decide(before, message, now)
            after = decision.payment
            if fired is not None and after is not None:
                stale = next((t for t in before.timers if (t.kind, t.seq) == fired), None)
                if stale is not None and stale in after.timers:
                    decision = replace(decision, payment=after.without_timer(*fired))
            stored = await save(tx, before, decision, SaveContext(tenant_id, now, message_id))
            sends = await count_sends(tx, stored, decision.execute, now)
        if decision.payment is not None and decision.payment.state != before.state:
            _log.info(
                "payment_transitioned",
                payment_id=payment_id,
                from_state=before.state,
                to_state=decision.payment.state,
                cause=decision.cause,
            )
        return sends

    async def _send(self, tenant_id: str, payment_id: str, seq: int) -> Outcome | None:
        """Count and send operation ``seq`` of the payment, if it is still pending."""
        now = self._clock()
        async with self._db.tenant_transaction(tenant_id) as tx:
            sends = await count_sends(tx, await load(tx, payment_id), (seq,), now)
        return await self._send_counted(tenant_id, sends[0]) if sends else None

    async def _send_counted(self, tenant_id: str, send: Send) -> Outcome | None:
        """Send a counted operation, retrying with its key; the outcome for the saga."""
        payment, op, rounds, sent_before = send.payment, send.op, send.rounds, send.sent
        payment_id, seq = payment.payment_id, op.seq
        key = operation_key(tenant_id, payment_id, op.kind, op.seq)
        log = _log.bind(payment_id=payment_id, seq=seq, kind=op.kind, processor=op.processor)
        record = SendRecord(sent=sent_before)
        try:
            bound = await self._ports.bound(tenant_id, op.processor)
            if op.kind is OperationKind.REFUND and not bound.port.capabilities.refunds:
                log.info("operation_manual_refund")
                return ManualRefund(seq)
            request = _request(payment, op, key, bound.account)
            result = await self._call(tenant_id, op, request, bound.port, record)
        except NotAttachedError as exc:
            log.warning("operation_not_attached")
            return Declined(seq, "not_configured", str(exc), try_next=not record.sent)
        except ProcessorError as exc:
            return await self._failed(tenant_id, payment_id, op, exc, rounds, sent=record.sent)
        except Exception:  # an adapter bug may hide a success: never fail on it
            log.exception("operation_adapter_failed")
            return InDoubt(seq)
        log.info("operation_sent", attempts=rounds)
        if isinstance(result, ActionRequired):
            return ActionNeeded(seq, result.reference, result.redirect_url, result.action)
        return Succeeded(
            seq, result.reference, result.amount.minor, result.expires_at, result.captured
        )

    async def _failed(  # noqa: PLR0913 (the operation's whole send history)
        self,
        tenant_id: str,
        payment_id: str,
        op: Operation,
        exc: ProcessorError,
        rounds: int,
        *,
        sent: bool,
    ) -> Outcome | None:
        """The saga's view of a send that ended in ``exc``."""
        log = _log.bind(payment_id=payment_id, seq=op.seq, kind=op.kind, processor=op.processor)
        if isinstance(exc, RetryableError):
            return await self._unsent(tenant_id, payment_id, op, exc, rounds, sent=sent)
        if isinstance(exc, DeclinedError):
            log.info("operation_declined", code=exc.code, vendor_code=exc.vendor_code)
            # The vendor's refusal of this key is its answer; a refusal made without asking
            # the vendor is one only while no earlier attempt may have reached it.
            try_next = should_try_next(exc) and (isinstance(exc, TryNextError) or not sent)
            return Declined(op.seq, exc.code, exc.message, try_next=try_next)
        if isinstance(exc, InDoubtError):
            log.warning("operation_in_doubt", error=exc.message)
        else:
            log.warning("operation_unclassified_error", error=exc.message)
        return InDoubt(op.seq)

    async def _unsent(  # noqa: PLR0913 (the operation's whole send history)
        self,
        tenant_id: str,
        payment_id: str,
        op: Operation,
        exc: RetryableError,
        rounds: int,
        *,
        sent: bool,
    ) -> Outcome | None:
        """A send that ended in retryable errors.

        If no attempt of any round may have reached the vendor, an authorization may move
        to the next processor at once, and any operation may be given up after
        ``MAX_SEND_ROUNDS``. Once one may have, the operation stays pending for its redrive
        and, after the last round, becomes in doubt: only the vendor can say what happened.
        """
        log = _log.bind(payment_id=payment_id, seq=op.seq, code=exc.code, rounds=rounds)
        if not sent and (op.kind is OperationKind.AUTHORIZE or rounds >= MAX_SEND_ROUNDS):
            log.warning("operation_given_up")
            return Declined(op.seq, exc.code, exc.message, try_next=True, retryable=True)
        if rounds >= MAX_SEND_ROUNDS:
            log.warning("operation_retries_exhausted_in_doubt")
            return InDoubt(op.seq)
        log.warning("operation_left_pending")
        async with self._db.tenant_transaction(tenant_id) as tx:
            # Counting the round marked it sent; only a round that provably never reached
            # the vendor, after none that may have, is recorded as unsent again.
            await tx.conn.execute(_LAST_ERROR, payment_id, op.seq, exc.message[:1000], sent)
        return None

    async def _call(
        self,
        tenant_id: str,
        op: Operation,
        request: Request,
        port: PaymentPort,
        record: "SendRecord",
    ) -> Approved | ActionRequired:
        """One send: retries of retryable errors with the same key, each through the breaker."""

        async def once() -> Approved | ActionRequired:
            try:
                return await self._breakers.call(
                    tenant_id, op.processor, lambda: _dispatch(port, request)
                )
            except ProcessorError as error:
                if error.sent and not isinstance(error, ProcessorUnavailable):
                    record.sent = True
                raise
            except Exception:
                record.sent = True  # an adapter bug: assume the request went out
                raise

        retrying = AsyncRetrying(
            retry=retry_if_exception(_worth_retrying),
            stop=stop_after_attempt(self._retry.attempts)
            | stop_after_delay(self._retry.total_seconds),
            wait=_honour_retry_after(
                wait_exponential_jitter(
                    multiplier=self._retry.initial_seconds,
                    max=self._retry.max_seconds,
                    jitter=self._retry.initial_seconds,
                )
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await once()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def waiting_authorization(self, tenant_id: str, payment_id: str) -> int | None:
        """The seq of the payment's authorization waiting for the customer, if any."""
        async with self._db.tenant_transaction(tenant_id) as tx:
            payment = await load(tx, payment_id)
        if payment is None:
            return None
        waiting = [
            op.seq
            for op in payment.in_flight(OperationKind.AUTHORIZE)
            if op.status is OperationStatus.ACTION_REQUIRED
        ]
        return waiting[0] if waiting else None

    async def inquire(  # noqa: PLR0911 (one return per kind of answer)
        self, tenant_id: str, payment_id: str, seq: int
    ) -> Outcome | None:
        """Ask the processor about an operation with an open outcome; None if it has none."""
        async with self._db.tenant_transaction(tenant_id) as tx:
            payment = await load(tx, payment_id)
        op = None if payment is None else payment.operation(seq)
        if payment is None or op is None or not op.in_flight:
            return None
        key = operation_key(tenant_id, payment_id, op.kind, op.seq)
        log = _log.bind(payment_id=payment_id, seq=seq, kind=op.kind, processor=op.processor)
        try:
            bound = await self._ports.bound(tenant_id, op.processor)
            request = InquiryRequest(
                kind=op.kind,
                idempotency_key=key,
                account=bound.account,
                reference=op.reference if op.kind is OperationKind.AUTHORIZE else op.target,
                amount=Money(minor=op.amount, currency=payment.currency),
            )
            result = await self._breakers.call(
                tenant_id, op.processor, lambda: bound.port.inquire(request)
            )
        except (ProcessorError, NotAttachedError) as exc:
            log.warning("inquiry_failed", error=str(exc)[:200])
            return Unresolved(seq)
        log.info("inquiry_answered", result=type(result).__name__)
        match result:
            case Approved():
                return Succeeded(
                    seq, result.reference, result.amount.minor, result.expires_at, result.captured
                )
            case ActionRequired():
                return ActionNeeded(seq, result.reference, result.redirect_url, result.action)
            case Failed():
                return Declined(seq, result.code, result.message)
            case NotFound():
                return NotReceived(seq)
            case StillPending():
                return Unresolved(seq)


def _worth_retrying(error: BaseException) -> bool:
    return isinstance(error, RetryableError) and not isinstance(error, ProcessorUnavailable)


def _honour_retry_after(
    backoff: wait_exponential_jitter,
) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        delay = backoff(state)
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, ProcessorError) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay

    return wait


async def _dispatch(port: PaymentPort, request: Request) -> Approved | ActionRequired:
    match request:
        case AuthorizeRequest():
            return await port.authorize(request)
        case CaptureRequest():
            return await port.capture(request)
        case VoidRequest():
            return await port.void(request)
        case RefundRequest():
            return await port.refund(request)


def _request(payment: Payment, op: Operation, key: str, account: str) -> Request:
    """The adapter request for ``op``, with its derived idempotency key."""
    amount = Money(minor=op.amount, currency=payment.currency)
    target = op.target or ""
    match op.kind:
        case OperationKind.AUTHORIZE:
            command = payment.request
            return AuthorizeRequest(
                idempotency_key=key,
                account=account,
                payment_id=payment.payment_id,
                amount=amount,
                payment_method_type=command.payment_method.type,
                payment_method_token=command.payment_method.token,
                capture="manual",
                return_url=None if command.return_url is None else str(command.return_url),
                booking_reference=command.booking_reference,
                description=command.description,
                customer_email=command.customer_email,
                metadata=dict(command.metadata),
            )
        case OperationKind.CAPTURE:
            return CaptureRequest(key, account, target, amount, op.final)
        case OperationKind.VOID:
            return VoidRequest(key, account, target, op.reason or "requested_by_customer")
        case OperationKind.REFUND:
            return RefundRequest(key, account, target, amount, op.reason)
