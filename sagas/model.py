"""The payment saga's state: the payment, its vendor operations and its timers.

Everything here is a frozen value; a transition returns new values (``dataclasses.replace``)
and never mutates. Amounts are integer minor units of the payment's currency.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from sagas.states import PaymentState
from schemas.commands import AuthorizePayment
from schemas.events import FailureCode
from schemas.processors import Processor


class OperationKind(StrEnum):
    """What a vendor operation does; the values match ``payment_operations.kind``."""

    AUTHORIZE = "authorize"
    CAPTURE = "capture"
    VOID = "void"
    REFUND = "refund"


class OperationStatus(StrEnum):
    """Where a vendor operation stands; succeeded and failed are final."""

    PENDING = "pending"
    """Recorded, to be sent (or being sent) with its derived idempotency key."""
    ACTION_REQUIRED = "action_required"
    IN_DOUBT = "in_doubt"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


IN_FLIGHT: frozenset[OperationStatus] = frozenset(
    {OperationStatus.PENDING, OperationStatus.ACTION_REQUIRED, OperationStatus.IN_DOUBT}
)
FINAL: frozenset[OperationStatus] = frozenset({OperationStatus.SUCCEEDED, OperationStatus.FAILED})

Origin = Literal["command", "auto_capture", "cancel", "expiry"]
"""Why an operation exists: a booking command, or a step the saga took on its own."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One call to a processor, identified within its payment by ``seq`` (1, 2, ...).

    Its vendor idempotency key is derived from the tenant, the payment, ``kind`` and
    ``seq`` (see ``operation_key``), so every retry and every inquiry uses the same key.
    """

    seq: int
    kind: OperationKind
    processor: Processor
    amount: int
    status: OperationStatus
    origin: Origin
    command_key: str | None = None
    """The idempotency key of the command that asked for it, if a command did."""
    final: bool = True
    """For a capture: whether it releases the rest of the authorization."""
    reason: str | None = None
    reference: str | None = None
    """The vendor's id of what the operation created (authorization, capture, refund)."""
    target: str | None = None
    """The vendor's id of what the operation acts on (the authorization or capture)."""
    failure_code: FailureCode | None = None
    inquiries: int = 0
    """Status inquiries made while in doubt."""

    @property
    def in_flight(self) -> bool:
        """Whether the outcome is still open."""
        return self.status in IN_FLIGHT


def operation_key(tenant_id: str, payment_id: str, kind: OperationKind, seq: int) -> str:
    """The vendor idempotency key of an operation: ``{tenant}:{payment}:{kind}:{seq}``."""
    return f"{tenant_id}:{payment_id}:{kind}:{seq}"


class TimerKind(StrEnum):
    """What a saga timer does when it fires; the values match ``saga_timers.kind``."""

    REDRIVE = "redrive"
    """Send a pending operation again (same key): its executor may have died."""
    INQUIRY = "inquiry"
    """Ask the processor about an in-doubt operation."""
    ACTION_TIMEOUT = "action_timeout"
    """The customer did not finish the redirect or 3-D Secure in time."""
    AUTHORIZATION_EXPIRY = "authorization_expiry"
    """The authorization is about to lapse (auto-void) or has lapsed (expire)."""


@dataclass(frozen=True, slots=True)
class Timer:
    """A saga timer: at most one per (kind, seq) and payment."""

    kind: TimerKind
    due_at: datetime
    seq: int = 0


class ExpiryPolicy(StrEnum):
    """A tenant's choice for authorizations nobody captured."""

    AUTO_VOID = "auto_void"
    """Void shortly before the processor would let the authorization lapse."""
    EXPIRE = "expire"
    """Let it lapse and announce ``payment.expired``."""


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    """The tenant's saga settings, passed in with an authorize command."""

    expiry: ExpiryPolicy = ExpiryPolicy.AUTO_VOID
    action_timeout: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A CancelPayment in progress: what it has given back so far."""

    reason: str
    command_key: str
    voided: int = 0
    refunded: int = 0
    failed: bool = False
    done: bool = False


Ending = Literal["failed", "expired"]


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment saga."""

    payment_id: str
    currency: str
    amount: int
    request: AuthorizePayment
    policy: SagaPolicy
    candidates: tuple[Processor, ...]
    """Processors to try, in routing order; fail-over walks this list."""
    state: PaymentState = PaymentState.REQUESTED
    processor: Processor | None = None
    authorization_reference: str | None = None
    capture_reference: str | None = None
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    capture_final: bool = False
    """No more may be captured: a final capture happened or the rest was released."""
    voided: bool = False
    ending: Ending | None = None
    authorization_expires_at: datetime | None = None
    operations: tuple[Operation, ...] = ()
    timers: tuple[Timer, ...] = ()
    cancellation: Cancellation | None = None
    attention: str | None = None
    """Why an operator must look at this payment, if one must."""
    version: int = 0
    """The stored row's version; 0 for a payment not stored yet."""

    def operation(self, seq: int) -> Operation | None:
        """The operation numbered ``seq``, if any."""
        return next((op for op in self.operations if op.seq == seq), None)

    def in_flight(self, *kinds: OperationKind) -> tuple[Operation, ...]:
        """Operations with an open outcome, of the given kinds (any kind if none given)."""
        return tuple(
            op for op in self.operations if op.in_flight and (not kinds or op.kind in kinds)
        )

    @property
    def next_seq(self) -> int:
        """The number the next operation gets."""
        return max((op.seq for op in self.operations), default=0) + 1

    @property
    def refundable(self) -> int:
        """Captured, minus refunded, minus refunds still in flight."""
        reserved = sum(op.amount for op in self.in_flight(OperationKind.REFUND))
        return self.captured - self.refunded - reserved

    @property
    def capturable(self) -> int:
        """What a capture may still take."""
        return 0 if self.capture_final or self.voided else self.authorized - self.captured

    def with_operation(self, op: Operation) -> "Payment":
        """This payment with ``op`` added, or replacing the operation of the same seq."""
        others = tuple(o for o in self.operations if o.seq != op.seq)
        return replace(self, operations=tuple(sorted((*others, op), key=lambda o: o.seq)))

    def with_timer(self, timer: Timer) -> "Payment":
        """This payment with ``timer`` set (replacing one of the same kind and seq)."""
        others = tuple(t for t in self.timers if (t.kind, t.seq) != (timer.kind, timer.seq))
        return replace(self, timers=(*others, timer))

    def without_timer(self, kind: TimerKind, seq: int = 0) -> "Payment":
        """This payment with the timer of ``kind`` and ``seq`` removed."""
        return replace(self, timers=tuple(t for t in self.timers if (t.kind, t.seq) != (kind, seq)))
