"""Saga cases that once went wrong: each test pins the behaviour that is now right."""

from datetime import UTC, datetime, timedelta

from sagas.machine import decide
from sagas.messages import (
    ActionNeeded,
    Authorize,
    Cancel,
    Capture,
    Succeeded,
    TimerFired,
    Void,
)
from sagas.model import (
    ExpiryPolicy,
    OperationKind,
    OperationStatus,
    Payment,
    SagaPolicy,
    TimerKind,
)
from sagas.states import PaymentState
from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    PaymentMethod,
    VoidPayment,
)
from schemas.money import Money
from schemas.processors import Processor

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def authorized(policy: SagaPolicy = SagaPolicy()) -> Payment:  # noqa: B008 (an immutable default)
    """A payment of 10.00 USD authorized at Stripe."""
    command = AuthorizePayment(
        payment_id="p1",
        idempotency_key="k1",
        amount=Money(minor=1000, currency="USD"),
        payment_method=PaymentMethod(type="card", token="pm_x"),
        booking_reference="BK-1",
    )
    started = decide(None, Authorize(command, (Processor.STRIPE,), policy), NOW).payment
    assert started is not None
    done = decide(started, Succeeded(1, "pi_1", 1000), NOW).payment
    assert done is not None
    return done


def test_cancel_and_void_of_an_expired_authorization_change_nothing_at_the_vendor() -> None:
    """A lapsed authorization (expire policy) holds nothing: void refused, cancel ends at once."""
    payment = authorized(SagaPolicy(expiry=ExpiryPolicy.EXPIRE))
    [expiry] = [t for t in payment.timers if t.kind is TimerKind.AUTHORIZATION_EXPIRY]
    expired = decide(payment, TimerFired(expiry.kind, 0, expiry.due_at), expiry.due_at).payment
    assert expired is not None
    assert expired.state is PaymentState.EXPIRED
    void = VoidPayment(payment_id="p1", idempotency_key="v", reason="requested_by_customer")
    refused = decide(expired, Void(void), NOW)
    assert refused.rejection is not None
    cancel = CancelPayment(payment_id="p1", idempotency_key="c", reason="gone")
    cancelled = decide(expired, Cancel(cancel), NOW)
    assert cancelled.execute == ()
    assert cancelled.payment is not None
    assert cancelled.payment.state is PaymentState.EXPIRED
    assert [type(e.event).__name__ for e in cancelled.events] == ["PaymentCancelled"]


def test_an_amount_the_vendor_did_not_ask_for_is_held_for_an_operator() -> None:
    """A capture reported for another amount goes in doubt, with no redrive to ask again."""
    payment = authorized()
    capture = CapturePayment(payment_id="p1", idempotency_key="c1", amount=None)
    capturing = decide(payment, Capture(capture), NOW).payment
    assert capturing is not None
    odd = decide(capturing, Succeeded(2, "ch_1", 999), NOW).payment
    assert odd is not None
    op = odd.operation(2)
    assert op is not None
    assert op.status is OperationStatus.IN_DOUBT
    assert odd.attention is not None
    assert not any(t.seq == 2 for t in odd.timers)
    assert odd.captured == 0


def test_a_customer_action_that_times_out_is_abandoned_at_the_vendor() -> None:
    """Expiring a payment that waits for 3-D Secure also cancels the attempt at the vendor."""
    command = AuthorizePayment(
        payment_id="p2",
        idempotency_key="k2",
        amount=Money(minor=500, currency="USD"),
        payment_method=PaymentMethod(type="card", token="pm_x"),
        booking_reference="BK-2",
    )
    started = decide(None, Authorize(command, (Processor.STRIPE,)), NOW).payment
    assert started is not None
    waiting = decide(started, ActionNeeded(1, "pi_2", "https://3ds.example/a", "three_ds"), NOW)
    assert waiting.payment is not None
    later = NOW + timedelta(hours=1)
    expired = decide(waiting.payment, TimerFired(TimerKind.ACTION_TIMEOUT), later)
    assert expired.payment is not None
    [void] = [op for op in expired.payment.operations if op.kind is OperationKind.VOID]
    assert (void.amount, void.target, void.status) == (0, "pi_2", OperationStatus.PENDING)
    assert expired.execute == (void.seq,)
    done = decide(expired.payment, Succeeded(void.seq, "pi_2", 0), later).payment
    assert done is not None
    assert done.state is PaymentState.EXPIRED


def test_a_stale_timer_firing_is_ignored() -> None:
    """A firing for a timer that has since moved (same kind and seq, new due time) does nothing."""
    payment = authorized()
    [expiry] = [t for t in payment.timers if t.kind is TimerKind.AUTHORIZATION_EXPIRY]
    stale = TimerFired(expiry.kind, 0, expiry.due_at - timedelta(days=1))
    decision = decide(payment, stale, expiry.due_at)
    assert decision.payment == payment
    assert decision.execute == ()
