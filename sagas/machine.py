"""The payment saga: ``decide(payment, message, now) -> Decision``.

A pure function: no I/O, no clock (``now`` is passed in), no randomness. It is the one
guard every input passes, whether a booking command, a processor's response, a webhook,
a status inquiry, a timer or an operator: a transition either keeps every invariant
(captured <= authorized <= amount, refunded <= captured, one final outcome per operation,
terminal states never left) or is refused.

::

    requested ─▶ authorizing ─┬─▶ requires_action ─┬─▶ authorized ─▶ capturing ─▶ captured
                  │  ▲ (try   │                    │      │  ▲          │         partially_captured
                  │  └─ next) └─▶ in_doubt ────────┤      │  └──────────┘              │
                  ▼                                ▼      ▼                            ▼
                failed                          expired  voiding ─▶ voided        refunding
                                                                   ─▶ partially_refunded / refunded
    cancel from anywhere: void what is held, refund what was captured; a compensation
    that fails leaves the payment in compensation_failed for an operator.
"""

from dataclasses import replace
from datetime import datetime

from sagas import outcomes, timers
from sagas.compensation import compensate
from sagas.decision import CUSTOMER_MESSAGES, Decision, Step, pending, refuse
from sagas.messages import (
    ActionNeeded,
    Authorize,
    Cancel,
    Capture,
    Declined,
    InDoubt,
    ManualRefund,
    Message,
    NotReceived,
    OperatorResolved,
    Refund,
    RetryCompensation,
    Succeeded,
    TimerFired,
    Unresolved,
    Void,
)
from sagas.model import (
    Cancellation,
    OperationKind,
    Payment,
)
from sagas.states import PaymentState
from schemas.events import PaymentAuthorizationFailed
from schemas.money import Money


def decide(payment: Payment | None, message: Message, now: datetime) -> Decision:  # noqa: PLR0911 (one return per message kind)
    """Apply ``message`` to ``payment`` (None if it does not exist yet) at ``now``."""
    if isinstance(message, Authorize):
        return _authorize(payment, message, now)
    if payment is None:
        return refuse(None, "invalid_state", "no payment with this payment_id")
    match message:
        case Capture():
            return _capture(payment, message, now)
        case Void():
            return _void(payment, message, now)
        case Refund():
            return _refund(payment, message, now)
        case Cancel():
            return _cancel(payment, message, now)
        case (
            Succeeded()
            | ActionNeeded()
            | Declined()
            | InDoubt()
            | Unresolved()
            | NotReceived()
            | ManualRefund()
        ):
            return outcomes.apply(payment, message, now)
        case TimerFired():
            return timers.timer(payment, message, now)
        case OperatorResolved() | RetryCompensation():
            return timers.operator(payment, message, now)


def _authorize(payment: Payment | None, message: Authorize, now: datetime) -> Decision:
    command = message.command
    if payment is not None:
        return refuse(payment, "invalid_state", "a payment with this payment_id already exists")
    new = Payment(
        payment_id=command.payment_id,
        currency=command.amount.currency,
        amount=command.amount.minor,
        request=command,
        policy=message.policy,
        candidates=message.candidates,
    )
    step = Step(new, now, "authorize")
    if not message.candidates:
        step.payment = replace(new, ending="failed")
        step.emit(
            PaymentAuthorizationFailed(
                payment_id=command.payment_id,
                reason_code="not_configured",
                customer_message=CUSTOMER_MESSAGES["not_configured"],
                retryable=False,
                processor=None,
            ),
            command.idempotency_key,
        )
        return step.decision()
    pending(
        step,
        OperationKind.AUTHORIZE,
        command.amount.minor,
        origin="command",
        command_key=command.idempotency_key,
    )
    return step.decision()


def _busy(payment: Payment) -> str | None:
    """Why no capture or void may start now, if one may not."""
    if payment.cancellation is not None:
        return "the payment is being cancelled"
    busy = payment.in_flight(OperationKind.AUTHORIZE, OperationKind.CAPTURE, OperationKind.VOID)
    if busy:
        return f"the payment is {payment.state}: wait for its outcome event"
    return None


def _amount(payment: Payment, asked: Money | None, limit: int, what: str) -> int | str:
    """The amount in minor units, or why it cannot be used (``what``: capture or refund)."""
    if asked is None:
        return limit if limit > 0 else f"nothing left to {what}"
    if asked.currency != payment.currency:
        return f"the payment is in {payment.currency}, not {asked.currency}"
    if asked.minor > limit:
        shown = Money(minor=limit, currency=payment.currency).to_decimal_string()
        return f"at most {shown} {payment.currency} can be {what.removesuffix('e')}ed now"
    return asked.minor


def _capture(payment: Payment, message: Capture, now: datetime) -> Decision:
    command = message.command
    busy = _busy(payment)
    if busy is not None:
        return refuse(payment, "invalid_state", busy)
    if payment.capturable == 0 or payment.state not in {
        PaymentState.AUTHORIZED,
        PaymentState.PARTIALLY_CAPTURED,
    }:
        return refuse(payment, "invalid_state", f"a {payment.state} payment cannot be captured")
    amount = _amount(payment, command.amount, payment.capturable, "capture")
    if isinstance(amount, str):
        return refuse(payment, "invalid_state", amount)
    step = Step(payment, now, "capture")
    final = command.final or amount == payment.capturable
    pending(
        step,
        OperationKind.CAPTURE,
        amount,
        origin="command",
        command_key=command.idempotency_key,
        final=final,
        target=payment.authorization_reference,
    )
    return step.decision()


def _void(payment: Payment, message: Void, now: datetime) -> Decision:
    command = message.command
    busy = _busy(payment)
    if busy is not None:
        return refuse(payment, "invalid_state", busy)
    if payment.capturable == 0:
        return refuse(payment, "invalid_state", f"a {payment.state} payment holds nothing to void")
    step = Step(payment, now, "void")
    pending(
        step,
        OperationKind.VOID,
        payment.capturable,
        origin="command",
        command_key=command.idempotency_key,
        reason=command.reason,
        target=payment.authorization_reference,
    )
    return step.decision()


def _refund(payment: Payment, message: Refund, now: datetime) -> Decision:
    command = message.command
    if payment.in_flight(OperationKind.CAPTURE) or payment.in_flight(OperationKind.VOID):
        return refuse(payment, "invalid_state", f"the payment is {payment.state}: wait")
    amount = _amount(payment, command.amount, payment.refundable, "refund")
    if isinstance(amount, str):
        return refuse(payment, "invalid_state", amount)
    step = Step(payment, now, "refund")
    pending(
        step,
        OperationKind.REFUND,
        amount,
        origin="command",
        command_key=command.idempotency_key,
        reason=command.reason,
        target=payment.authorization_reference,
    )
    return step.decision()


def _cancel(payment: Payment, message: Cancel, now: datetime) -> Decision:
    command = message.command
    if payment.cancellation is not None:
        return refuse(payment, "invalid_state", "the payment is already cancelled or cancelling")
    step = Step(payment, now, "cancel")
    step.payment = replace(
        payment,
        cancellation=Cancellation(reason=command.reason, command_key=command.idempotency_key),
    )
    compensate(step)
    return step.decision()
