"""Saga transitions after a command: outcomes, timers, operators, compensation.

An outcome names its operation by ``seq``. Only an operation whose outcome is still open
takes one; a second outcome for a settled operation (a late webhook, a replayed response)
changes nothing, except that a success reported for an operation already settled as failed
is flagged for an operator, since money may have moved that the payment does not show.
"""

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sagas.compensation import compensate
from sagas.decision import CUSTOMER_MESSAGES, Decision, Step, pending
from sagas.messages import (
    ActionNeeded,
    Declined,
    InDoubt,
    ManualRefund,
    NotReceived,
    Succeeded,
    Unresolved,
)
from sagas.model import (
    ExpiryPolicy,
    Operation,
    OperationKind,
    OperationStatus,
    Payment,
    Timer,
    TimerKind,
)
from sagas.timing import AUTHORIZATION_LIFETIME, AUTO_VOID_MARGIN, INQUIRY_SCHEDULE, REDRIVE_AFTER
from schemas.events import (
    PaymentActionRequired,
    PaymentAuthorizationFailed,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentVoided,
    PaymentVoidFailed,
)

_VOID_REASONS = frozenset({"requested_by_customer", "duplicate", "fraudulent", "abandoned"})

Outcome = Succeeded | ActionNeeded | Declined | InDoubt | Unresolved | NotReceived | ManualRefund


def flag(payment: Payment, note: str) -> Payment:
    """``payment`` with ``note`` added to what an operator must look at."""
    notes = note if payment.attention is None else f"{payment.attention} | {note}"
    return replace(payment, attention=notes[:1000])


def unflag(payment: Payment, about: Callable[[str], bool]) -> Payment:
    """``payment`` without the attention notes ``about`` picks out (now settled)."""
    if payment.attention is None:
        return payment
    kept = [note for note in payment.attention.split(" | ") if not about(note)]
    return replace(payment, attention=" | ".join(kept) or None)


def about_operation(seq: int) -> Callable[[str], bool]:
    """Picks the notes about operation ``seq``."""
    return lambda note: f" #{seq}" in note


def apply(payment: Payment, outcome: Outcome, now: datetime) -> Decision:
    """Apply a processor's answer (or an inquiry's finding) to one operation."""
    op = payment.operation(outcome.seq)
    if op is None:
        return Decision(payment, cause="ignored")
    step = Step(payment, now, f"{op.kind}_{type(outcome).__name__.lower()}")
    if not op.in_flight:
        return _after_the_fact(step, op, outcome)
    match outcome:
        case Succeeded():
            _succeeded(step, op, outcome)
        case ActionNeeded():
            _action_needed(step, op, outcome)
        case Declined():
            _declined(step, op, outcome)
        case InDoubt():
            _in_doubt(step, op)
        case Unresolved():
            unresolved(step, op)
        case NotReceived():
            _not_received(step, op)
        case ManualRefund():
            _manual_refund(step, op)
    compensate(step)
    return step.decision()


def _after_the_fact(step: Step, op: Operation, outcome: Outcome) -> Decision:
    """An outcome for a settled operation: ignored, unless money moved that we did not book."""
    if isinstance(outcome, Succeeded) and op.status is OperationStatus.FAILED:
        step.payment = flag(
            step.payment,
            f"the processor reports {op.kind} #{op.seq} succeeded after it was settled as "
            "failed: check the vendor and give the money back by hand",
        )
        return step.decision()
    return Decision(step.payment, cause="ignored")


def _closing(step: Step, op: Operation) -> None:
    """Drop the timers that watch ``op``'s outcome."""
    step.payment = step.payment.without_timer(TimerKind.REDRIVE, op.seq).without_timer(
        TimerKind.INQUIRY, op.seq
    )


def _succeeded(step: Step, op: Operation, outcome: Succeeded) -> None:
    if op.kind is not OperationKind.VOID and outcome.amount != op.amount:
        # Money moved, but not as asked: hold the operation in doubt for an operator; no
        # redrive (it would ask again) and no inquiry (it would hear the same).
        asked, told = step.money(op.amount), step.money(outcome.amount)
        _closing(step, op)
        step.put(replace(op, status=OperationStatus.IN_DOUBT, reference=outcome.reference))
        step.payment = flag(
            step.payment,
            f"{op.kind} #{op.seq}: asked {asked.to_decimal_string()}, the processor reports "
            f"{told.to_decimal_string()} {told.currency}; resolve it by hand",
        )
        return
    _closing(step, op)
    step.payment = unflag(step.payment, about_operation(op.seq))
    op = step.settle(op, OperationStatus.SUCCEEDED, reference=outcome.reference)
    match op.kind:
        case OperationKind.AUTHORIZE:
            _authorized(step, op, outcome)
        case OperationKind.CAPTURE:
            _captured(step, op)
        case OperationKind.VOID:
            _voided(step, op)
        case OperationKind.REFUND:
            _refunded(step, op)


def _authorized(step: Step, op: Operation, outcome: Succeeded) -> None:
    payment = step.payment
    lifetime = AUTHORIZATION_LIFETIME[op.processor]
    expires_at = outcome.expires_at
    if expires_at is None and lifetime is not None and not outcome.captured:
        expires_at = step.now + lifetime
    payment = replace(
        payment,
        processor=op.processor,
        authorization_reference=op.reference,
        authorized=op.amount,
        authorization_expires_at=None if outcome.captured else expires_at,
    ).without_timer(TimerKind.ACTION_TIMEOUT)
    step.payment = payment
    step.emit(
        PaymentAuthorized(
            payment_id=payment.payment_id,
            amount=step.money(op.amount),
            processor=op.processor,
            processor_reference=outcome.reference,
            expires_at=payment.authorization_expires_at,
        ),
        op.command_key,
    )
    if outcome.captured:
        step.payment = replace(
            payment, captured=op.amount, capture_final=True, capture_reference=op.reference
        )
        step.emit(
            PaymentCaptured(
                payment_id=payment.payment_id,
                amount=step.money(op.amount),
                total_captured=step.money(op.amount),
                final=True,
            ),
            op.command_key,
        )
        return
    if expires_at is not None:
        margin = AUTO_VOID_MARGIN if payment.policy.expiry is ExpiryPolicy.AUTO_VOID else None
        due = expires_at - margin if margin is not None else expires_at
        step.payment = step.payment.with_timer(
            Timer(TimerKind.AUTHORIZATION_EXPIRY, max(due, step.now))
        )
    if payment.cancellation is None and payment.request.capture == "automatic":
        pending(
            step,
            OperationKind.CAPTURE,
            op.amount,
            origin="auto_capture",
            command_key=op.command_key,
            final=True,
            target=op.reference,
        )


def _captured(step: Step, op: Operation) -> None:
    payment = step.payment
    captured = payment.captured + op.amount
    final = op.final or captured == payment.authorized
    step.payment = replace(
        payment, captured=captured, capture_final=final, capture_reference=op.reference
    )
    if final:
        step.payment = step.payment.without_timer(TimerKind.AUTHORIZATION_EXPIRY)
    step.emit(
        PaymentCaptured(
            payment_id=payment.payment_id,
            amount=step.money(op.amount),
            total_captured=step.money(captured),
            final=final,
        ),
        op.command_key,
    )


def _voided(step: Step, op: Operation) -> None:
    payment = step.payment
    released = payment.authorized - payment.captured if not payment.capture_final else 0
    if payment.authorized == 0:
        return  # an abandoned customer action: nothing was held, nothing to announce
    if payment.captured == 0:
        payment = replace(payment, voided=True)
    else:
        payment = replace(payment, capture_final=True)
    cancellation = payment.cancellation
    if op.origin == "cancel" and cancellation is not None:
        payment = replace(payment, cancellation=replace(cancellation, voided=released))
    step.payment = payment.without_timer(TimerKind.AUTHORIZATION_EXPIRY)
    reason = {"cancel": "cancelled", "expiry": "expired"}.get(op.origin, op.reason or "")
    step.emit(
        PaymentVoided(
            payment_id=payment.payment_id,
            amount=step.money(released),
            reason=reason if reason in _VOID_REASONS | {"cancelled", "expired"} else "cancelled",
        ),
        op.command_key,
    )


def _refunded(step: Step, op: Operation) -> None:
    payment = step.payment
    refunded = payment.refunded + op.amount
    payment = replace(payment, refunded=refunded)
    cancellation = payment.cancellation
    if op.origin == "cancel" and cancellation is not None:
        payment = replace(
            payment, cancellation=replace(cancellation, refunded=cancellation.refunded + op.amount)
        )
    step.payment = payment
    step.emit(
        PaymentRefunded(
            payment_id=payment.payment_id,
            amount=step.money(op.amount),
            total_refunded=step.money(refunded),
            refund_id=op.reference or "",
        ),
        op.command_key,
    )


def _action_needed(step: Step, op: Operation, outcome: ActionNeeded) -> None:
    if op.kind is not OperationKind.AUTHORIZE or op.status is OperationStatus.ACTION_REQUIRED:
        return  # already waiting for the customer: a repeat changes nothing
    _closing(step, op)
    step.put(replace(op, status=OperationStatus.ACTION_REQUIRED, reference=outcome.reference))
    expires_at = step.now + step.payment.policy.action_timeout
    step.payment = step.payment.with_timer(Timer(TimerKind.ACTION_TIMEOUT, expires_at))
    if step.payment.cancellation is not None:
        return  # being cancelled: the attempt is abandoned in this same step
    step.emit(
        PaymentActionRequired(
            payment_id=step.payment.payment_id,
            action=outcome.action,
            redirect_url=outcome.redirect_url,
            expires_at=expires_at,
        ),
        op.command_key,
    )


def _declined(step: Step, op: Operation, outcome: Declined) -> None:
    was_pending = op.status is OperationStatus.PENDING
    _closing(step, op)
    step.payment = unflag(step.payment, about_operation(op.seq))
    op = step.settle(op, OperationStatus.FAILED, failure_code=outcome.code)
    payment = step.payment
    common = {
        "payment_id": payment.payment_id,
        "reason_code": outcome.code,
        "customer_message": CUSTOMER_MESSAGES[outcome.code],
        "retryable": outcome.retryable,
    }
    match op.kind:
        case OperationKind.AUTHORIZE:
            tried = {o.processor for o in payment.operations if o.kind is OperationKind.AUTHORIZE}
            untried = [p for p in payment.candidates if p not in tried]
            # Only a request refused as it was sent may move on; never one that was in doubt.
            if outcome.try_next and was_pending and untried and payment.cancellation is None:
                pending(
                    step,
                    OperationKind.AUTHORIZE,
                    op.amount,
                    untried[0],
                    origin="command",
                    command_key=op.command_key,
                )
                return
            step.payment = replace(payment, ending="failed").without_timer(TimerKind.ACTION_TIMEOUT)
            step.emit(
                PaymentAuthorizationFailed(**common, processor=op.processor),
                op.command_key,
            )
        case OperationKind.CAPTURE:
            step.emit(
                PaymentCaptureFailed(**common, amount=step.money(op.amount)),
                op.command_key,
            )
        case OperationKind.VOID:
            _compensation_failed(step, op)
            if op.origin == "expiry":
                step.payment = flag(
                    step.payment,
                    f"void #{op.seq} before the authorization lapses was refused "
                    f"({outcome.code}): capture or release it by hand",
                )
            if op.amount > 0:
                step.emit(
                    PaymentVoidFailed(**common, amount=step.money(op.amount)),
                    op.command_key,
                )
        case OperationKind.REFUND:
            _compensation_failed(step, op)
            step.emit(
                PaymentRefundFailed(**common, amount=step.money(op.amount)),
                op.command_key,
            )


def _compensation_failed(step: Step, op: Operation) -> None:
    cancellation = step.payment.cancellation
    if op.origin != "cancel" or cancellation is None or op.amount == 0:
        return
    step.payment = flag(
        replace(step.payment, cancellation=replace(cancellation, failed=True)),
        f"cancellation failed: {op.kind} #{op.seq} was refused ({op.failure_code}); "
        "retry it or settle it by hand",
    )


def _in_doubt(step: Step, op: Operation) -> None:
    if op.status is not OperationStatus.PENDING:
        return
    _closing(step, op)
    step.put(replace(op, status=OperationStatus.IN_DOUBT, inquiries=0))
    step.payment = step.payment.with_timer(
        Timer(TimerKind.INQUIRY, step.now + INQUIRY_SCHEDULE[0], op.seq)
    )


def unresolved(step: Step, op: Operation) -> None:
    """An inquiry could not tell: schedule the next, or hand the operation to operators."""
    if op.status is not OperationStatus.IN_DOUBT:
        return
    made = op.inquiries + 1
    step.put(replace(op, inquiries=made))
    if made < len(INQUIRY_SCHEDULE):
        step.payment = step.payment.with_timer(
            Timer(TimerKind.INQUIRY, step.now + INQUIRY_SCHEDULE[made], op.seq)
        )
        return
    step.payment = flag(
        step.payment.without_timer(TimerKind.INQUIRY, op.seq),
        f"{op.kind} #{op.seq} is still in doubt after {made} status inquiries: "
        "reconcile it and resolve it by hand",
    )


def _manual_refund(step: Step, op: Operation) -> None:
    """A refund the processor cannot make by API becomes a task for operators.

    The operation waits (``action_required``: the payment stays ``refunding``) until an
    operator has paid the money back and closes it with ``payments resolve``, which
    announces ``payment.refunded`` as any refund does.
    """
    if op.kind is not OperationKind.REFUND or op.status is not OperationStatus.PENDING:
        return
    _closing(step, op)
    step.put(replace(op, status=OperationStatus.ACTION_REQUIRED))
    amount = step.money(op.amount)
    step.payment = flag(
        step.payment,
        f"refund #{op.seq}: {op.processor} has no refund API; pay back "
        f"{amount.to_decimal_string()} {amount.currency} by hand, then close it with "
        f"payments resolve --operation {op.seq} --outcome succeeded --reference <transfer>",
    )


def _not_received(step: Step, op: Operation) -> None:
    if op.status is not OperationStatus.IN_DOUBT:
        return
    if step.payment.cancellation is not None and op.kind is OperationKind.AUTHORIZE:
        # Never received and no longer wanted: it ends here rather than being sent again.
        _declined(step, op, Declined(op.seq, "other", "cancelled before the processor had it"))
        return
    _closing(step, op)
    step.put(replace(op, status=OperationStatus.PENDING))
    step.payment = step.payment.with_timer(
        Timer(TimerKind.REDRIVE, step.now + REDRIVE_AFTER, op.seq)
    )
    step.execute.append(op.seq)
