"""Saga transitions when a timer comes due, and when an operator decides.

A timer is identified by (kind, seq) and its due time: a firing for a timer the payment no
longer has, or has since moved, changes nothing (a late or repeated firing).
"""

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from sagas.compensation import abandon_customer_actions, compensate
from sagas.decision import Decision, Step, pending, refuse
from sagas.messages import Declined, OperatorResolved, RetryCompensation, Succeeded, TimerFired
from sagas.model import ExpiryPolicy, OperationKind, OperationStatus, Payment, Timer, TimerKind
from sagas.outcomes import Outcome, about_operation, apply, unflag, unresolved
from sagas.timing import REDRIVE_AFTER
from schemas.events import PaymentExpired

EXPIRY_RETRY: Final = timedelta(minutes=10)
"""When an authorization-expiry timer finds an operation in flight, it looks again then."""


def timer(payment: Payment, fired: TimerFired, now: datetime) -> Decision:
    """Act on a timer that came due; a timer the payment no longer has changes nothing."""
    current = next((t for t in payment.timers if (t.kind, t.seq) == (fired.kind, fired.seq)), None)
    if current is None or (fired.due_at is not None and current.due_at != fired.due_at):
        return Decision(payment, cause="ignored")
    step = Step(payment.without_timer(fired.kind, fired.seq), now, f"timer_{fired.kind}")
    op = payment.operation(fired.seq)
    match fired.kind:
        case TimerKind.REDRIVE if op is not None and op.status is OperationStatus.PENDING:
            step.payment = step.payment.with_timer(
                Timer(TimerKind.REDRIVE, now + REDRIVE_AFTER, op.seq)
            )
            step.execute.append(op.seq)
        case TimerKind.INQUIRY if op is not None:
            unresolved(step, op)
        case TimerKind.ACTION_TIMEOUT:
            _action_timeout(step)
        case TimerKind.AUTHORIZATION_EXPIRY:
            _authorization_expiry(step)
        case _:
            pass
    compensate(step)
    return step.decision()


def _action_timeout(step: Step) -> None:
    """The customer never finished: expire the payment and cancel the attempt at the vendor."""
    waiting = [
        op
        for op in step.payment.in_flight(OperationKind.AUTHORIZE)
        if op.status is OperationStatus.ACTION_REQUIRED
    ]
    if not waiting:
        return
    abandon_customer_actions(step, origin="expiry", command_key=waiting[0].command_key)
    step.payment = replace(step.payment, ending="expired")
    step.emit(
        PaymentExpired(
            payment_id=step.payment.payment_id, stage="action_required", expired_at=step.now
        ),
        waiting[0].command_key,
    )


def _authorization_expiry(step: Step) -> None:
    payment = step.payment
    if payment.capturable == 0:
        return
    if payment.in_flight(OperationKind.CAPTURE, OperationKind.VOID, OperationKind.AUTHORIZE):
        step.payment = payment.with_timer(
            Timer(TimerKind.AUTHORIZATION_EXPIRY, step.now + EXPIRY_RETRY)
        )
        return
    if payment.policy.expiry is ExpiryPolicy.AUTO_VOID:
        pending(
            step,
            OperationKind.VOID,
            payment.capturable,
            origin="expiry",
            reason="expired",
            target=payment.authorization_reference,
        )
        return
    # The vendor lets the rest lapse: nothing more can be captured, and nothing is held.
    ending = "expired" if payment.captured == 0 else payment.ending
    step.payment = replace(payment, capture_final=True, ending=ending)
    step.emit(
        PaymentExpired(payment_id=payment.payment_id, stage="authorized", expired_at=step.now),
        None,
    )


def operator(
    payment: Payment, message: OperatorResolved | RetryCompensation, now: datetime
) -> Decision:
    """Apply an operator's decision about an operation, or retry a failed cancellation."""
    if isinstance(message, RetryCompensation):
        cancellation = payment.cancellation
        if cancellation is None or not cancellation.failed:
            return refuse(payment, "invalid_state", "no failed cancellation to retry")
        step = Step(
            unflag(
                replace(payment, cancellation=replace(cancellation, failed=False)),
                lambda note: note.startswith("cancellation failed"),
            ),
            now,
            "operator_retry_compensation",
        )
        compensate(step)
        return step.decision()
    op = payment.operation(message.seq)
    if op is None or not op.in_flight:
        return refuse(payment, "invalid_state", f"operation #{message.seq} has no open outcome")
    if message.succeeded and message.reference is None and op.kind is not OperationKind.VOID:
        return refuse(payment, "invalid_state", "a successful outcome needs the vendor reference")
    cleared = unflag(payment, about_operation(op.seq))
    outcome: Outcome = (
        Succeeded(message.seq, message.reference or op.target or "", op.amount)
        if message.succeeded
        else Declined(message.seq, "other", message.note)
    )
    decision = apply(cleared, outcome, now)
    return replace(decision, cause="operator_resolved")
