"""What a transition decides, and the small builder the transitions share."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from pydantic import BaseModel

from sagas.model import (
    IN_FLIGHT,
    Operation,
    OperationKind,
    OperationStatus,
    Payment,
    Timer,
    TimerKind,
)
from sagas.states import PaymentState
from sagas.timing import REDRIVE_AFTER
from schemas.events import FailureCode, RejectionReason
from schemas.money import Money
from schemas.processors import Processor

CUSTOMER_MESSAGES: Final[dict[FailureCode, str]] = {
    "card_declined": "The card was declined. Please use another payment method.",
    "insufficient_funds": "The payment method has insufficient funds.",
    "expired_card": "The card has expired. Please use another card.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "authentication_required": "The bank asks the customer to confirm this payment.",
    "authentication_failed": "The customer did not confirm the payment with the bank.",
    "fraud_suspected": "The payment could not be completed. Please use another method.",
    "currency_not_supported": "This currency is not accepted for this payment method.",
    "amount_too_large": "The amount is larger than what can be taken.",
    "already_settled": "The payment was already settled.",
    "processor_unavailable": "The payment service is temporarily unavailable.",
    "processor_error": "The payment could not be processed.",
    "invalid_request": "The payment could not be processed.",
    "not_configured": "No payment method is available for this payment.",
    "other": "The payment could not be completed.",
}
"""Texts safe to show a customer, by failure code: never a vendor's raw message."""


@dataclass(frozen=True, slots=True)
class Emitted:
    """An event to publish, and the command key it answers (for idempotent replays)."""

    event: BaseModel
    command_key: str | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command refused as it stands; nothing changed because of it."""

    reason: RejectionReason
    detail: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a transition.

    ``payment`` is the new state (None when a command was refused before any payment
    existed); ``execute`` lists the seqs of operations to send to processors once the
    decision is committed.
    """

    payment: Payment | None
    events: tuple[Emitted, ...] = ()
    execute: tuple[int, ...] = ()
    rejection: Rejection | None = None
    cause: str = ""


@dataclass(slots=True)
class Step:
    """A transition being built: the payment so far, and what it emits and sends."""

    payment: Payment
    now: datetime
    cause: str
    events: list[Emitted] = field(default_factory=list)
    execute: list[int] = field(default_factory=list)

    def money(self, minor: int) -> Money:
        """``minor`` units of the payment's currency."""
        return Money(minor=minor, currency=self.payment.currency)

    def emit(self, event: BaseModel, command_key: str | None) -> None:
        """Announce ``event``."""
        self.events.append(Emitted(event, command_key))

    def put(self, op: Operation) -> None:
        """Record ``op`` (new, or a new version of one)."""
        self.payment = self.payment.with_operation(op)

    def start(self, op: Operation) -> None:
        """Record a new pending operation and send it after commit."""
        self.put(op)
        self.execute.append(op.seq)

    def settle(self, op: Operation, status: OperationStatus, **changes: object) -> Operation:
        """Give ``op`` its final status (and any other changes); returns the new value."""
        settled = replace(op, status=status, **changes)  # type: ignore[arg-type]
        self.put(settled)
        return settled

    def decision(self) -> Decision:
        """The finished decision, with the payment's state derived from its parts."""
        payment = replace(self.payment, state=derive_state(self.payment))
        return Decision(payment, tuple(self.events), tuple(self.execute), None, self.cause)


def pending(
    step: Step,
    kind: OperationKind,
    amount: int,
    processor: Processor | None = None,
    **fields: object,
) -> Operation:
    """Start a new pending operation with a redrive timer, to be sent after commit."""
    payment = step.payment
    processor = processor or payment.processor or payment.candidates[0]
    op = Operation(
        seq=payment.next_seq,
        kind=kind,
        processor=processor,
        amount=amount,
        status=OperationStatus.PENDING,
        **fields,  # type: ignore[arg-type]
    )
    step.start(op)
    step.payment = step.payment.with_timer(
        Timer(TimerKind.REDRIVE, step.now + REDRIVE_AFTER, op.seq)
    )
    return op


def derive_state(payment: Payment) -> PaymentState:
    """The state that the payment's amounts, operations and flags add up to."""
    open_ops = {(op.kind, op.status) for op in payment.operations if op.status in IN_FLIGHT}
    kinds = {kind for kind, _ in open_ops}
    cancellation = payment.cancellation
    derived = PaymentState.REQUESTED
    if any(status is OperationStatus.IN_DOUBT for _, status in open_ops):
        derived = PaymentState.IN_DOUBT
    elif (OperationKind.AUTHORIZE, OperationStatus.ACTION_REQUIRED) in open_ops:
        derived = PaymentState.REQUIRES_ACTION
    elif OperationKind.AUTHORIZE in kinds:
        derived = PaymentState.AUTHORIZING
    elif OperationKind.VOID in kinds:
        derived = PaymentState.VOIDING
    elif OperationKind.CAPTURE in kinds:
        derived = PaymentState.CAPTURING
    elif OperationKind.REFUND in kinds:
        derived = PaymentState.REFUNDING
    elif cancellation is not None and cancellation.failed:
        derived = PaymentState.COMPENSATION_FAILED
    else:
        derived = _at_rest(payment)
    return derived


def _at_rest(payment: Payment) -> PaymentState:  # noqa: PLR0911 (one return per state)
    """The state of a payment with nothing in flight."""
    if payment.captured > 0:
        if not payment.capture_final:
            return PaymentState.PARTIALLY_CAPTURED
        if payment.refunded == payment.captured:
            return PaymentState.REFUNDED
        if payment.refunded > 0:
            return PaymentState.PARTIALLY_REFUNDED
        return PaymentState.CAPTURED
    if payment.voided:
        return PaymentState.VOIDED
    if payment.ending == "failed":
        return PaymentState.FAILED
    if payment.ending == "expired":
        return PaymentState.EXPIRED
    if payment.authorized > 0:
        return PaymentState.AUTHORIZED
    return PaymentState.REQUESTED


def refuse(payment: Payment | None, reason: RejectionReason, detail: str) -> Decision:
    """A decision that changes nothing and refuses the command."""
    return Decision(payment, rejection=Rejection(reason, detail), cause="rejected")
