"""The compensation a CancelPayment runs: give back whatever the payment holds.

One step at a time, each after the previous one settled: abandon a customer action still
pending at the vendor, void what is authorized and uncaptured, refund what was captured,
then announce ``payment.cancelled``. An operation in flight is waited for; a refusal stops
the compensation in ``compensation_failed`` (see ``sagas.outcomes``).
"""

from dataclasses import replace

from sagas.decision import Step, pending
from sagas.model import OperationKind, OperationStatus, Origin, TimerKind
from schemas.events import PaymentCancelled


def abandon_customer_actions(step: Step, *, origin: Origin, command_key: str | None) -> None:
    """Settle authorizations waiting for the customer as failed and cancel them at the vendor.

    The vendor is told (a void of nothing), so a customer who finishes later is not charged
    for a payment we have given up on.
    """
    for op in step.payment.in_flight(OperationKind.AUTHORIZE):
        if op.status is not OperationStatus.ACTION_REQUIRED:
            continue
        step.settle(op, OperationStatus.FAILED, failure_code="authentication_failed")
        step.payment = step.payment.without_timer(TimerKind.ACTION_TIMEOUT)
        pending(
            step,
            OperationKind.VOID,
            0,
            op.processor,
            origin=origin,
            command_key=command_key,
            reason="abandoned",
            target=op.reference,
        )


def compensate(step: Step) -> None:
    """Take a cancellation's next step, if it has one and nothing blocks it."""
    cancellation = step.payment.cancellation
    if cancellation is None or cancellation.done or cancellation.failed:
        return
    if step.payment.in_flight(OperationKind.AUTHORIZE):
        abandon_customer_actions(step, origin="cancel", command_key=cancellation.command_key)
        if not step.payment.in_flight(OperationKind.AUTHORIZE):
            step.payment = replace(step.payment, ending="failed")
    payment = step.payment
    if payment.in_flight():
        return
    if payment.capturable > 0:
        pending(
            step,
            OperationKind.VOID,
            payment.capturable,
            origin="cancel",
            command_key=cancellation.command_key,
            reason="requested_by_customer",
            target=payment.authorization_reference,
        )
        return
    if payment.refundable > 0:
        pending(
            step,
            OperationKind.REFUND,
            payment.refundable,
            origin="cancel",
            command_key=cancellation.command_key,
            reason=cancellation.reason,
            target=payment.authorization_reference,
        )
        return
    step.payment = replace(payment, cancellation=replace(cancellation, done=True))
    step.emit(
        PaymentCancelled(
            payment_id=payment.payment_id,
            reason=cancellation.reason,
            voided=step.money(cancellation.voided) if cancellation.voided else None,
            refunded=step.money(cancellation.refunded) if cancellation.refunded else None,
        ),
        cancellation.command_key,
    )
