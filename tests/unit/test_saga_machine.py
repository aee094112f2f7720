"""The payment saga, path by path: commands, outcomes, timers, compensation and operators."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from pydantic import BaseModel

from sagas.decision import CUSTOMER_MESSAGES, Decision, Emitted
from sagas.machine import decide
from sagas.messages import (
    ActionNeeded,
    Authorize,
    Cancel,
    Capture,
    Declined,
    InDoubt,
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
    ExpiryPolicy,
    Operation,
    OperationKind,
    OperationStatus,
    Payment,
    SagaPolicy,
    Timer,
    TimerKind,
    operation_key,
)
from sagas.states import PaymentState
from sagas.timers import EXPIRY_RETRY
from sagas.timing import (
    AUTHORIZATION_LIFETIME,
    AUTO_VOID_MARGIN,
    INQUIRY_SCHEDULE,
    REDRIVE_AFTER,
)
from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    PaymentMethod,
    RefundPayment,
    VoidPayment,
)
from schemas.events import (
    PaymentActionRequired,
    PaymentAuthorizationFailed,
    PaymentAuthorized,
    PaymentCancelled,
    PaymentCaptured,
    PaymentExpired,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentVoided,
    PaymentVoidFailed,
)
from schemas.money import Money
from schemas.processors import Processor

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TENANT = "tnt_saga_unit"
PAYMENT_ID = "pay_saga_unit_1"
AMOUNT = 10_000
REDIRECT = "https://bank.example.com/3ds/challenge"

EventT = TypeVar("EventT", bound=BaseModel)


def usd(minor: int) -> Money:
    """``minor`` cents."""
    return Money(minor=minor, currency="USD")


def authorize(
    *,
    capture: Literal["manual", "automatic"] = "manual",
    candidates: tuple[Processor, ...] = (Processor.STRIPE,),
    policy: SagaPolicy | None = None,
) -> Authorize:
    """An authorize command for AMOUNT USD, routed to ``candidates``."""
    command = AuthorizePayment(
        payment_id=PAYMENT_ID,
        idempotency_key="auth-1",
        amount=usd(AMOUNT),
        payment_method=PaymentMethod(type="card", token="pm_card_visa"),
        capture=capture,
        booking_reference="BK-1",
    )
    return Authorize(command, candidates, policy or SagaPolicy())


def capture(
    minor: int | None = None, *, final: bool = True, key: str = "cap-1", currency: str = "USD"
) -> Capture:
    """A capture command; None captures the rest."""
    amount = None if minor is None else Money(minor=minor, currency=currency)
    return Capture(
        CapturePayment(payment_id=PAYMENT_ID, idempotency_key=key, amount=amount, final=final)
    )


def refund(minor: int | None = None, *, key: str = "ref-1") -> Refund:
    """A refund command; None refunds what is left."""
    amount = None if minor is None else usd(minor)
    return Refund(RefundPayment(payment_id=PAYMENT_ID, idempotency_key=key, amount=amount))


def void(key: str = "void-1") -> Void:
    """A void command asked for by the customer."""
    return Void(
        VoidPayment(payment_id=PAYMENT_ID, idempotency_key=key, reason="requested_by_customer")
    )


def cancel(key: str = "cancel-1") -> Cancel:
    """A cancel command: the booking was called off."""
    return Cancel(
        CancelPayment(payment_id=PAYMENT_ID, idempotency_key=key, reason="booking cancelled")
    )


@dataclass
class Saga:
    """One payment driven message by message, on a clock that only moves forward."""

    payment: Payment | None = None
    now: datetime = START
    decisions: list[Decision] = field(default_factory=list)

    def send(self, message: Message, after: timedelta = timedelta(seconds=1)) -> Decision:
        """Decide ``message`` ``after`` the previous one and keep the payment it leaves."""
        self.now += after
        decision = decide(self.payment, message, self.now)
        self.decisions.append(decision)
        if decision.payment is not None:
            self.payment = decision.payment
        return decision

    def fire(self, kind: TimerKind, seq: int = 0) -> Decision:
        """Fire the payment's timer of ``kind`` and ``seq`` when it is due."""
        due = self.timer(kind, seq)
        assert due is not None, f"no {kind} timer for #{seq}"
        self.now = max(self.now, due.due_at)
        return self.send(TimerFired(kind, seq, due.due_at), after=timedelta())

    def timer(self, kind: TimerKind, seq: int = 0) -> Timer | None:
        """The payment's timer of ``kind`` and ``seq``, if it has one."""
        return next((t for t in self.p.timers if (t.kind, t.seq) == (kind, seq)), None)

    def op(self, seq: int) -> Operation:
        """The operation numbered ``seq``."""
        found = self.p.operation(seq)
        assert found is not None, f"no operation #{seq}"
        return found

    def state(self) -> PaymentState:
        """The payment's state as it stands."""
        return self.p.state

    @property
    def p(self) -> Payment:
        """The payment as it stands."""
        assert self.payment is not None
        return self.payment


def events(decision: Decision) -> list[BaseModel]:
    """The events a decision emits, in order."""
    return [emitted.event for emitted in decision.events]


def only(decision: Decision, kind: type[EventT]) -> EventT:
    """The one event of type ``kind`` that ``decision`` emits."""
    found = [event for event in events(decision) if isinstance(event, kind)]
    assert len(found) == 1, events(decision)
    return found[0]


def authorized(*, policy: SagaPolicy | None = None, expires_in: timedelta | None = None) -> Saga:
    """A payment whose AMOUNT USD authorization at Stripe succeeded (as operation #1)."""
    saga = Saga()
    saga.send(authorize(policy=policy))
    expires_at = None if expires_in is None else saga.now + expires_in
    saga.send(Succeeded(1, "pi_1", AMOUNT, expires_at=expires_at))
    return saga


def captured() -> Saga:
    """A payment authorized and fully captured (operations #1 and #2)."""
    saga = authorized()
    saga.send(capture())
    saga.send(Succeeded(2, "ch_1", AMOUNT))
    assert saga.state() is PaymentState.CAPTURED
    return saga


def assert_unchanged(before: Payment, decision: Decision) -> None:
    """The decision leaves the payment exactly as it was, emitting and sending nothing."""
    assert decision.payment is before
    assert decision.events == ()
    assert decision.execute == ()


# Authorization


def test_authorize_records_a_pending_operation_to_send() -> None:
    """An authorize command creates operation #1 at the first candidate, with a redrive timer."""
    saga = Saga()
    decision = saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    assert decision.rejection is None
    assert decision.execute == (1,)
    assert decision.events == ()
    assert saga.state() is PaymentState.AUTHORIZING
    assert saga.p.operations == (
        Operation(
            seq=1,
            kind=OperationKind.AUTHORIZE,
            processor=Processor.STRIPE,
            amount=AMOUNT,
            status=OperationStatus.PENDING,
            origin="command",
            command_key="auth-1",
        ),
    )
    assert saga.p.timers == (Timer(TimerKind.REDRIVE, saga.now + REDRIVE_AFTER, 1),)
    assert saga.p.version == 0


def test_authorization_success_holds_the_funds_until_expiry() -> None:
    """A successful authorization emits PaymentAuthorized and arms the auto-void timer."""
    saga = Saga()
    saga.send(authorize())
    decision = saga.send(Succeeded(1, "pi_1", AMOUNT))
    lifetime = AUTHORIZATION_LIFETIME[Processor.STRIPE]
    assert lifetime is not None
    expires_at = saga.now + lifetime
    assert decision.events == (
        Emitted(
            PaymentAuthorized(
                payment_id=PAYMENT_ID,
                amount=usd(AMOUNT),
                processor=Processor.STRIPE,
                processor_reference="pi_1",
                expires_at=expires_at,
            ),
            "auth-1",
        ),
    )
    assert decision.execute == ()
    assert saga.state() is PaymentState.AUTHORIZED
    assert (saga.p.authorized, saga.p.processor) == (AMOUNT, Processor.STRIPE)
    assert saga.p.authorization_reference == "pi_1"
    assert saga.p.timers == (Timer(TimerKind.AUTHORIZATION_EXPIRY, expires_at - AUTO_VOID_MARGIN),)


def test_authorization_decline_fails_the_payment() -> None:
    """A decline without try_next ends the payment as failed with a customer-safe message."""
    saga = Saga()
    saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    decision = saga.send(Declined(1, "card_declined", "do_not_honor (raw vendor text)"))
    assert events(decision) == [
        PaymentAuthorizationFailed(
            payment_id=PAYMENT_ID,
            reason_code="card_declined",
            customer_message=CUSTOMER_MESSAGES["card_declined"],
            retryable=False,
            processor=Processor.STRIPE,
        )
    ]
    assert decision.execute == ()
    assert saga.state() is PaymentState.FAILED
    assert len(saga.p.operations) == 1
    assert saga.p.timers == ()


def test_authorize_without_candidates_fails_at_once() -> None:
    """With no processor configured the payment fails immediately and nothing is sent."""
    saga = Saga()
    decision = saga.send(authorize(candidates=()))
    failed = only(decision, PaymentAuthorizationFailed)
    assert (failed.reason_code, failed.processor) == ("not_configured", None)
    assert decision.execute == ()
    assert saga.state() is PaymentState.FAILED
    assert saga.p.operations == ()


def test_a_second_authorize_for_the_same_payment_is_refused() -> None:
    """An authorize command for a payment that exists is refused and changes nothing."""
    saga = authorized()
    before = saga.p
    decision = saga.send(authorize())
    assert decision.rejection is not None
    assert decision.rejection.reason == "invalid_state"
    assert_unchanged(before, decision)


def test_commands_for_an_unknown_payment_are_refused() -> None:
    """A capture for a payment that does not exist is refused with no payment."""
    decision = Saga().send(capture())
    assert decision.payment is None
    assert decision.rejection is not None
    assert decision.rejection.reason == "invalid_state"


def test_a_try_next_decline_fails_over_to_the_next_candidate() -> None:
    """A try_next decline starts a new authorization at the next processor, silently."""
    saga = Saga()
    saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    decision = saga.send(Declined(1, "currency_not_supported", "no AFN", try_next=True))
    assert decision.events == ()
    assert decision.execute == (2,)
    assert saga.op(1).status is OperationStatus.FAILED
    second = saga.op(2)
    assert (second.kind, second.processor, second.amount) == (
        OperationKind.AUTHORIZE,
        Processor.PAYPAL,
        AMOUNT,
    )
    assert second.command_key == "auth-1"
    assert saga.state() is PaymentState.AUTHORIZING
    decision = saga.send(Succeeded(2, "PAY-1", AMOUNT))
    assert only(decision, PaymentAuthorized).processor is Processor.PAYPAL
    assert saga.p.processor is Processor.PAYPAL
    assert saga.state() is PaymentState.AUTHORIZED


def test_a_plain_decline_never_fails_over() -> None:
    """A decline without try_next fails the payment even when other candidates remain."""
    saga = Saga()
    saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    decision = saga.send(Declined(1, "insufficient_funds", "nsf"))
    assert decision.execute == ()
    assert [op.seq for op in saga.p.operations] == [1]
    assert saga.state() is PaymentState.FAILED


def test_a_try_next_decline_with_no_candidate_left_fails() -> None:
    """When every candidate was tried, a try_next decline fails the payment."""
    saga = Saga()
    saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    saga.send(Declined(1, "processor_unavailable", "down", try_next=True))
    decision = saga.send(Declined(2, "processor_unavailable", "down", try_next=True))
    failed = only(decision, PaymentAuthorizationFailed)
    assert failed.processor is Processor.PAYPAL
    assert decision.execute == ()
    assert saga.state() is PaymentState.FAILED


def test_an_in_doubt_authorization_never_moves_to_another_processor() -> None:
    """An in-doubt authorization stays in doubt through every inquiry and is never failed over."""
    saga = Saga()
    saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    decision = saga.send(InDoubt(1))
    assert decision.execute == ()
    assert saga.state() is PaymentState.IN_DOUBT
    for _ in INQUIRY_SCHEDULE:
        saga.fire(TimerKind.INQUIRY, 1)
    saga.send(Unresolved(1), after=timedelta(days=3))
    assert [(op.kind, op.processor) for op in saga.p.operations] == [
        (OperationKind.AUTHORIZE, Processor.STRIPE)
    ]
    assert saga.op(1).status is OperationStatus.IN_DOUBT
    assert saga.state() is PaymentState.IN_DOUBT
    assert saga.p.ending is None
    assert all(d.execute == () and d.events == () for d in saga.decisions[1:])


def test_a_try_next_decline_of_an_in_doubt_authorization_does_not_fail_over() -> None:
    """In doubt, then a try-next refusal for it (a late or redriven answer): no fail-over.

    The first request may have charged; only the vendor's word settles it, and another
    processor is never asked meanwhile.
    """
    saga = Saga()
    saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    saga.send(InDoubt(1))
    decision = saga.send(Declined(1, "currency_not_supported", "no AFN", try_next=True))
    assert decision.execute == ()
    assert [op.processor for op in saga.p.operations] == [Processor.STRIPE]
    assert saga.p.processor is not Processor.PAYPAL


def test_action_required_then_success_authorizes() -> None:
    """An authorization waiting for 3-D Secure announces the redirect, then succeeds."""
    saga = Saga()
    saga.send(authorize())
    decision = saga.send(ActionNeeded(1, "pi_1", REDIRECT, "three_ds"))
    timeout_at = saga.now + SagaPolicy().action_timeout
    assert events(decision) == [
        PaymentActionRequired(
            payment_id=PAYMENT_ID, action="three_ds", redirect_url=REDIRECT, expires_at=timeout_at
        )
    ]
    assert saga.state() is PaymentState.REQUIRES_ACTION
    assert saga.op(1).status is OperationStatus.ACTION_REQUIRED
    assert saga.p.timers == (Timer(TimerKind.ACTION_TIMEOUT, timeout_at),)
    decision = saga.send(Succeeded(1, "pi_1", AMOUNT), after=timedelta(minutes=3))
    assert only(decision, PaymentAuthorized).processor_reference == "pi_1"
    assert saga.state() is PaymentState.AUTHORIZED
    assert saga.timer(TimerKind.ACTION_TIMEOUT) is None


def test_an_action_nobody_finishes_expires_the_payment() -> None:
    """An unfinished 3-D Secure expires the payment and abandons the attempt at the vendor."""
    saga = Saga()
    saga.send(authorize(policy=SagaPolicy(action_timeout=timedelta(minutes=15))))
    saga.send(ActionNeeded(1, "pi_1", REDIRECT, "redirect"))
    decision = saga.fire(TimerKind.ACTION_TIMEOUT)
    assert events(decision) == [
        PaymentExpired(payment_id=PAYMENT_ID, stage="action_required", expired_at=saga.now)
    ]
    assert saga.op(1).status is OperationStatus.FAILED
    assert saga.timer(TimerKind.ACTION_TIMEOUT) is None
    assert saga.p.authorized == 0
    assert decision.execute == (2,)
    abandon = saga.op(2)
    assert (abandon.kind, abandon.amount, abandon.reason) == (OperationKind.VOID, 0, "abandoned")
    assert saga.send(Succeeded(2, "pi_1", 0)).events == ()
    assert saga.state() is PaymentState.EXPIRED
    assert saga.p.timers == ()


# Capture and void


def test_automatic_capture_follows_the_authorization() -> None:
    """With automatic capture, the saga issues a final capture as soon as it is authorized."""
    saga = Saga()
    saga.send(authorize(capture="automatic"))
    decision = saga.send(Succeeded(1, "pi_1", AMOUNT))
    assert [type(e) for e in events(decision)] == [PaymentAuthorized]
    assert decision.execute == (2,)
    op = saga.op(2)
    assert (op.kind, op.amount, op.origin, op.final) == (
        OperationKind.CAPTURE,
        AMOUNT,
        "auto_capture",
        True,
    )
    assert (op.target, op.command_key) == ("pi_1", "auth-1")
    assert saga.state() is PaymentState.CAPTURING
    decision = saga.send(Succeeded(2, "ch_1", AMOUNT))
    assert events(decision) == [
        PaymentCaptured(
            payment_id=PAYMENT_ID, amount=usd(AMOUNT), total_captured=usd(AMOUNT), final=True
        )
    ]
    assert saga.state() is PaymentState.CAPTURED
    assert saga.p.timers == ()


def test_an_authorization_captured_in_one_step_needs_no_capture() -> None:
    """A processor that charges at once reports authorized and captured together."""
    saga = Saga()
    saga.send(authorize(capture="automatic"))
    decision = saga.send(Succeeded(1, "hp_1", AMOUNT, captured=True))
    assert [type(e) for e in events(decision)] == [PaymentAuthorized, PaymentCaptured]
    assert decision.execute == ()
    assert saga.state() is PaymentState.CAPTURED
    assert saga.p.captured == AMOUNT
    assert saga.p.timers == ()


def test_a_partial_capture_then_a_final_one() -> None:
    """A partial capture leaves the rest capturable; capturing the rest makes it final."""
    saga = authorized()
    decision = saga.send(capture(3_000, final=False))
    assert decision.execute == (2,)
    assert saga.op(2).final is False
    decision = saga.send(Succeeded(2, "ch_1", 3_000))
    assert events(decision) == [
        PaymentCaptured(
            payment_id=PAYMENT_ID, amount=usd(3_000), total_captured=usd(3_000), final=False
        )
    ]
    assert saga.state() is PaymentState.PARTIALLY_CAPTURED
    assert saga.p.capturable == 7_000
    assert saga.timer(TimerKind.AUTHORIZATION_EXPIRY) is not None
    decision = saga.send(capture(key="cap-2"))
    assert saga.op(3).amount == 7_000
    decision = saga.send(Succeeded(3, "ch_2", 7_000))
    assert only(decision, PaymentCaptured).total_captured == usd(AMOUNT)
    assert only(decision, PaymentCaptured).final is True
    assert saga.state() is PaymentState.CAPTURED
    assert saga.p.timers == ()


def test_a_final_partial_capture_releases_the_rest() -> None:
    """A final capture of part of the authorization leaves nothing capturable."""
    saga = authorized()
    saga.send(capture(4_000, final=True))
    saga.send(Succeeded(2, "ch_1", 4_000))
    assert saga.state() is PaymentState.CAPTURED
    assert (saga.p.captured, saga.p.capturable) == (4_000, 0)
    decision = saga.send(capture(1, key="cap-2"))
    assert decision.rejection is not None


def test_capturing_more_than_capturable_is_refused() -> None:
    """A capture above what remains authorized is refused with invalid_state."""
    saga = authorized()
    before = saga.p
    decision = saga.send(capture(AMOUNT + 1))
    assert decision.rejection is not None
    assert decision.rejection.reason == "invalid_state"
    assert "at most 100.00 USD" in decision.rejection.detail
    assert_unchanged(before, decision)
    saga.send(capture(3_000, final=False))
    saga.send(Succeeded(2, "ch_1", 3_000))
    before = saga.p
    decision = saga.send(capture(7_001, key="cap-2"))
    assert decision.rejection is not None
    assert decision.rejection.reason == "invalid_state"
    assert_unchanged(before, decision)


def test_a_capture_in_another_currency_is_refused() -> None:
    """A capture amount in a currency other than the payment's is refused."""
    saga = authorized()
    decision = saga.send(capture(100, currency="EUR"))
    assert decision.rejection is not None
    assert "USD, not EUR" in decision.rejection.detail


def test_a_capture_waits_for_the_one_in_flight() -> None:
    """While a capture is in flight, another capture or a void is refused."""
    saga = authorized()
    saga.send(capture(1_000, final=False))
    before = saga.p
    for message in (capture(1_000, final=False, key="cap-2"), void()):
        decision = saga.send(message)
        assert decision.rejection is not None
        assert_unchanged(before, decision)


def test_void_releases_the_authorization() -> None:
    """A void command releases the whole authorization and announces it."""
    saga = authorized()
    decision = saga.send(void())
    assert decision.execute == (2,)
    op = saga.op(2)
    assert (op.kind, op.amount, op.target, op.reason) == (
        OperationKind.VOID,
        AMOUNT,
        "pi_1",
        "requested_by_customer",
    )
    assert saga.state() is PaymentState.VOIDING
    decision = saga.send(Succeeded(2, "pi_1", AMOUNT))
    assert decision.events == (
        Emitted(
            PaymentVoided(
                payment_id=PAYMENT_ID, amount=usd(AMOUNT), reason="requested_by_customer"
            ),
            "void-1",
        ),
    )
    assert saga.state() is PaymentState.VOIDED
    assert saga.p.timers == ()
    assert saga.send(capture()).rejection is not None


# Refunds


def test_partial_refunds_up_to_the_captured_amount() -> None:
    """Refunds add up to what was captured; asking for more is refused."""
    saga = captured()
    saga.send(refund(3_000))
    decision = saga.send(Succeeded(3, "re_1", 3_000))
    assert events(decision) == [
        PaymentRefunded(
            payment_id=PAYMENT_ID, amount=usd(3_000), total_refunded=usd(3_000), refund_id="re_1"
        )
    ]
    assert saga.state() is PaymentState.PARTIALLY_REFUNDED
    saga.send(refund(5_000, key="ref-2"))
    saga.send(Succeeded(4, "re_2", 5_000))
    before = saga.p
    decision = saga.send(refund(2_001, key="ref-3"))
    assert decision.rejection is not None
    assert decision.rejection.reason == "invalid_state"
    assert "at most 20.00 USD" in decision.rejection.detail
    assert_unchanged(before, decision)
    decision = saga.send(refund(key="ref-4"))
    assert saga.op(5).amount == 2_000
    decision = saga.send(Succeeded(5, "re_3", 2_000))
    assert only(decision, PaymentRefunded).total_refunded == usd(AMOUNT)
    assert saga.state() is PaymentState.REFUNDED
    assert saga.send(refund(key="ref-5")).rejection is not None


def test_refunds_in_flight_count_against_what_is_refundable() -> None:
    """Two refunds in flight reserve their amounts, so a third may take only the rest."""
    saga = captured()
    assert saga.send(refund(4_000, key="ref-1")).execute == (3,)
    assert saga.send(refund(4_000, key="ref-2")).execute == (4,)
    assert saga.p.refundable == 2_000
    assert saga.state() is PaymentState.REFUNDING
    decision = saga.send(refund(2_001, key="ref-3"))
    assert decision.rejection is not None
    assert saga.send(refund(key="ref-4")).execute == (5,)
    for seq, minor in ((3, 4_000), (4, 4_000), (5, 2_000)):
        saga.send(Succeeded(seq, f"re_{seq}", minor))
    assert (saga.p.refunded, saga.state()) == (AMOUNT, PaymentState.REFUNDED)


def test_a_refund_waits_for_a_capture_in_flight() -> None:
    """A refund is refused while a capture is still in flight."""
    saga = authorized()
    saga.send(capture(3_000, final=False))
    saga.send(Succeeded(2, "ch_1", 3_000))
    saga.send(capture(key="cap-2"))
    decision = saga.send(refund(1_000))
    assert decision.rejection is not None


# Cancellation


def test_cancel_while_authorizing_waits_then_voids() -> None:
    """A cancel during authorization waits for its outcome, then voids instead of capturing."""
    saga = Saga()
    saga.send(authorize(capture="automatic"))
    decision = saga.send(cancel())
    assert decision.rejection is None
    assert (decision.events, decision.execute) == ((), ())
    assert saga.state() is PaymentState.AUTHORIZING
    decision = saga.send(Succeeded(1, "pi_1", AMOUNT))
    assert [type(e) for e in events(decision)] == [PaymentAuthorized]
    assert decision.execute == (2,)
    op = saga.op(2)
    assert (op.kind, op.amount, op.origin, op.command_key) == (
        OperationKind.VOID,
        AMOUNT,
        "cancel",
        "cancel-1",
    )
    decision = saga.send(Succeeded(2, "pi_1", AMOUNT))
    assert events(decision) == [
        PaymentVoided(payment_id=PAYMENT_ID, amount=usd(AMOUNT), reason="cancelled"),
        PaymentCancelled(
            payment_id=PAYMENT_ID, reason="booking cancelled", voided=usd(AMOUNT), refunded=None
        ),
    ]
    assert saga.state() is PaymentState.VOIDED


def test_cancel_while_the_customer_acts_abandons_the_attempt() -> None:
    """A cancel during 3-D Secure abandons it with a void of nothing and no PaymentVoided."""
    saga = Saga()
    saga.send(authorize())
    saga.send(ActionNeeded(1, "pi_1", REDIRECT, "three_ds"))
    decision = saga.send(cancel())
    assert decision.events == ()
    assert decision.execute == (2,)
    assert saga.op(1).status is OperationStatus.FAILED
    op = saga.op(2)
    assert (op.kind, op.amount, op.reason, op.target, op.processor) == (
        OperationKind.VOID,
        0,
        "abandoned",
        "pi_1",
        Processor.STRIPE,
    )
    assert saga.timer(TimerKind.ACTION_TIMEOUT) is None
    decision = saga.send(Succeeded(2, "pi_1", 0))
    assert events(decision) == [
        PaymentCancelled(
            payment_id=PAYMENT_ID, reason="booking cancelled", voided=None, refunded=None
        )
    ]
    assert saga.state() is PaymentState.FAILED


def test_cancel_an_authorized_payment_voids_it() -> None:
    """Cancelling an authorized payment voids the authorization, then announces the cancel."""
    saga = authorized()
    decision = saga.send(cancel())
    assert decision.execute == (2,)
    assert saga.op(2).kind is OperationKind.VOID
    decision = saga.send(Succeeded(2, "pi_1", AMOUNT))
    assert only(decision, PaymentVoided).reason == "cancelled"
    assert only(decision, PaymentCancelled).voided == usd(AMOUNT)
    assert saga.state() is PaymentState.VOIDED


def test_cancel_a_partially_captured_payment_voids_the_rest_then_refunds() -> None:
    """Cancelling after a partial capture releases the rest, then refunds what was captured."""
    saga = authorized()
    saga.send(capture(3_000, final=False))
    saga.send(Succeeded(2, "ch_1", 3_000))
    decision = saga.send(cancel())
    assert decision.execute == (3,)
    assert (saga.op(3).kind, saga.op(3).amount) == (OperationKind.VOID, 7_000)
    decision = saga.send(Succeeded(3, "pi_1", 7_000))
    assert only(decision, PaymentVoided).amount == usd(7_000)
    assert decision.execute == (4,)
    op = saga.op(4)
    assert (op.kind, op.amount, op.origin) == (OperationKind.REFUND, 3_000, "cancel")
    assert saga.state() is PaymentState.REFUNDING
    decision = saga.send(Succeeded(4, "re_1", 3_000))
    assert events(decision) == [
        PaymentRefunded(
            payment_id=PAYMENT_ID, amount=usd(3_000), total_refunded=usd(3_000), refund_id="re_1"
        ),
        PaymentCancelled(
            payment_id=PAYMENT_ID,
            reason="booking cancelled",
            voided=usd(7_000),
            refunded=usd(3_000),
        ),
    ]
    assert saga.state() is PaymentState.REFUNDED


def test_cancel_a_captured_payment_refunds_it() -> None:
    """Cancelling a captured payment refunds everything captured."""
    saga = captured()
    decision = saga.send(cancel())
    assert decision.execute == (3,)
    assert (saga.op(3).kind, saga.op(3).amount) == (OperationKind.REFUND, AMOUNT)
    decision = saga.send(Succeeded(3, "re_1", AMOUNT))
    cancelled = only(decision, PaymentCancelled)
    assert (cancelled.voided, cancelled.refunded) == (None, usd(AMOUNT))
    assert saga.state() is PaymentState.REFUNDED


def test_cancel_a_failed_payment_is_announced_at_once() -> None:
    """Cancelling a failed payment moves no money and emits PaymentCancelled with nothing."""
    saga = Saga()
    saga.send(authorize())
    saga.send(Declined(1, "card_declined", "no"))
    decision = saga.send(cancel())
    assert events(decision) == [
        PaymentCancelled(
            payment_id=PAYMENT_ID, reason="booking cancelled", voided=None, refunded=None
        )
    ]
    assert decision.execute == ()
    assert saga.state() is PaymentState.FAILED


def test_a_second_cancel_is_refused() -> None:
    """A payment already cancelling refuses another cancel, and captures and voids."""
    saga = authorized()
    saga.send(cancel())
    before = saga.p
    for message in (cancel("cancel-2"), capture(), void()):
        decision = saga.send(message)
        assert decision.rejection is not None
        assert_unchanged(before, decision)


def test_a_failed_compensation_waits_for_an_operator_retry() -> None:
    """A refused refund during a cancel needs an operator; a retry sends the refund again."""
    saga = captured()
    saga.send(cancel())
    decision = saga.send(Declined(3, "processor_error", "boom"))
    assert [type(e) for e in events(decision)] == [PaymentRefundFailed]
    assert decision.execute == ()
    assert saga.state() is PaymentState.COMPENSATION_FAILED
    assert saga.p.attention is not None
    assert "cancellation failed" in saga.p.attention
    decision = saga.send(RetryCompensation("vendor says try again"))
    assert decision.execute == (4,)
    assert (saga.op(4).kind, saga.op(4).amount) == (OperationKind.REFUND, AMOUNT)
    assert saga.p.attention is None
    assert saga.state() is PaymentState.REFUNDING
    decision = saga.send(Succeeded(4, "re_1", AMOUNT))
    assert only(decision, PaymentCancelled).refunded == usd(AMOUNT)
    assert saga.state() is PaymentState.REFUNDED


def test_a_failed_void_during_cancel_is_a_compensation_failure() -> None:
    """A refused void during a cancel announces PaymentVoidFailed and needs an operator."""
    saga = authorized()
    saga.send(cancel())
    decision = saga.send(Declined(2, "processor_error", "boom"))
    assert only(decision, PaymentVoidFailed).amount == usd(AMOUNT)
    assert saga.state() is PaymentState.COMPENSATION_FAILED
    assert saga.send(RetryCompensation("again")).execute == (3,)


def test_retry_compensation_without_a_failure_is_refused() -> None:
    """An operator retry on a payment whose cancellation has not failed changes nothing."""
    saga = authorized()
    before = saga.p
    decision = saga.send(RetryCompensation("why not"))
    assert decision.rejection is not None
    assert_unchanged(before, decision)


# In doubt, inquiries, redrives and timers


def test_in_doubt_follows_the_inquiry_schedule_then_asks_for_attention() -> None:
    """Inquiries come 1 min, 5 min, 1 h, 6 h and 1 day apart, then an operator is asked."""
    saga = Saga()
    saga.send(authorize())
    saga.send(InDoubt(1))
    timer = saga.timer(TimerKind.INQUIRY, 1)
    assert timer is not None
    assert timer.due_at == saga.now + timedelta(minutes=1)
    assert saga.timer(TimerKind.REDRIVE, 1) is None
    for delay in (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=6), timedelta(days=1)):
        saga.fire(TimerKind.INQUIRY, 1)
        timer = saga.timer(TimerKind.INQUIRY, 1)
        assert timer is not None
        assert timer.due_at == saga.now + delay
        assert saga.p.attention is None
    decision = saga.fire(TimerKind.INQUIRY, 1)
    assert (decision.events, decision.execute) == ((), ())
    assert saga.p.timers == ()
    assert saga.p.attention is not None
    assert "still in doubt after 5" in saga.p.attention
    assert saga.op(1).inquiries == 5
    assert saga.state() is PaymentState.IN_DOUBT
    decision = saga.send(Succeeded(1, "pi_1", AMOUNT), after=timedelta(days=2))
    assert only(decision, PaymentAuthorized).amount == usd(AMOUNT)
    assert saga.state() is PaymentState.AUTHORIZED


def test_unresolved_inquiries_follow_the_same_schedule() -> None:
    """Unresolved inquiry results advance the same schedule as the timer does."""
    saga = Saga()
    saga.send(authorize())
    saga.send(InDoubt(1))
    for delay in INQUIRY_SCHEDULE[1:]:
        saga.send(Unresolved(1))
        timer = saga.timer(TimerKind.INQUIRY, 1)
        assert timer is not None
        assert timer.due_at == saga.now + delay
    saga.send(Unresolved(1))
    assert saga.timer(TimerKind.INQUIRY, 1) is None
    assert saga.p.attention is not None


def test_not_received_sends_the_same_operation_again() -> None:
    """When the vendor never got the request, the same seq (so the same key) is sent again."""
    saga = authorized()
    saga.send(capture())
    saga.send(InDoubt(2))
    key = operation_key(TENANT, PAYMENT_ID, saga.op(2).kind, saga.op(2).seq)
    saga.fire(TimerKind.INQUIRY, 2)
    decision = saga.send(NotReceived(2))
    assert decision.execute == (2,)
    assert decision.events == ()
    assert [op.seq for op in saga.p.operations] == [1, 2]
    op = saga.op(2)
    assert op.status is OperationStatus.PENDING
    assert operation_key(TENANT, PAYMENT_ID, op.kind, op.seq) == key
    assert saga.timer(TimerKind.INQUIRY, 2) is None
    redrive = saga.timer(TimerKind.REDRIVE, 2)
    assert redrive is not None
    assert redrive.due_at == saga.now + REDRIVE_AFTER
    assert saga.state() is PaymentState.CAPTURING
    saga.send(Succeeded(2, "ch_1", AMOUNT))
    assert saga.state() is PaymentState.CAPTURED


def test_a_redrive_timer_sends_a_pending_operation_again() -> None:
    """A pending operation whose redrive timer fires is sent again and re-armed."""
    saga = Saga()
    saga.send(authorize())
    before = saga.p
    decision = saga.fire(TimerKind.REDRIVE, 1)
    assert decision.execute == (1,)
    assert decision.events == ()
    assert saga.p.operations == before.operations
    assert saga.p.timers == (Timer(TimerKind.REDRIVE, saga.now + REDRIVE_AFTER, 1),)
    assert saga.state() is PaymentState.AUTHORIZING


def test_stale_timers_are_ignored() -> None:
    """A timer the payment no longer has, never had, or has since moved changes nothing."""
    saga = Saga()
    saga.send(authorize())
    saga.send(Succeeded(1, "pi_1", AMOUNT))
    before = saga.p
    expiry = before.timers[0]
    for fired in (
        TimerFired(TimerKind.AUTHORIZATION_EXPIRY, 0, expiry.due_at - timedelta(minutes=10)),
        TimerFired(TimerKind.REDRIVE, 1),
        TimerFired(TimerKind.INQUIRY, 1),
        TimerFired(TimerKind.ACTION_TIMEOUT),
        TimerFired(TimerKind.REDRIVE, 9),
    ):
        decision = saga.send(fired)
        assert decision.cause == "ignored"
        assert_unchanged(before, decision)


def test_authorization_expiry_auto_voids_before_the_lapse() -> None:
    """Under auto_void, the expiry timer voids the authorization an hour before it lapses."""
    saga = authorized(expires_in=timedelta(days=2))
    expires_at = saga.p.authorization_expires_at
    assert expires_at is not None
    assert saga.timer(TimerKind.AUTHORIZATION_EXPIRY) == Timer(
        TimerKind.AUTHORIZATION_EXPIRY, expires_at - AUTO_VOID_MARGIN
    )
    decision = saga.fire(TimerKind.AUTHORIZATION_EXPIRY)
    assert decision.execute == (2,)
    op = saga.op(2)
    assert (op.kind, op.amount, op.origin, op.reason, op.command_key) == (
        OperationKind.VOID,
        AMOUNT,
        "expiry",
        "expired",
        None,
    )
    decision = saga.send(Succeeded(2, "pi_1", AMOUNT))
    assert decision.events == (
        Emitted(PaymentVoided(payment_id=PAYMENT_ID, amount=usd(AMOUNT), reason="expired"), None),
    )
    assert saga.state() is PaymentState.VOIDED


def test_authorization_expiry_lets_it_lapse_under_expire() -> None:
    """Under expire, the timer fires when the authorization lapses and emits PaymentExpired."""
    saga = authorized(policy=SagaPolicy(expiry=ExpiryPolicy.EXPIRE), expires_in=timedelta(days=2))
    assert saga.timer(TimerKind.AUTHORIZATION_EXPIRY) == Timer(
        TimerKind.AUTHORIZATION_EXPIRY, saga.p.authorization_expires_at or START
    )
    decision = saga.fire(TimerKind.AUTHORIZATION_EXPIRY)
    assert events(decision) == [
        PaymentExpired(payment_id=PAYMENT_ID, stage="authorized", expired_at=saga.now)
    ]
    assert decision.execute == ()
    assert saga.state() is PaymentState.EXPIRED
    assert saga.send(capture()).rejection is not None


def test_authorization_expiry_waits_for_a_capture_in_flight() -> None:
    """An expiry timer that finds a capture in flight looks again ten minutes later."""
    saga = authorized()
    saga.send(capture(1_000, final=False))
    decision = saga.fire(TimerKind.AUTHORIZATION_EXPIRY)
    assert (decision.events, decision.execute) == ((), ())
    assert saga.timer(TimerKind.AUTHORIZATION_EXPIRY) == Timer(
        TimerKind.AUTHORIZATION_EXPIRY, saga.now + EXPIRY_RETRY
    )


# Late, duplicate and odd outcomes; operators


def test_late_and_duplicate_outcomes_change_nothing() -> None:
    """Outcomes for settled operations, or for operations that do not exist, are ignored."""
    saga = captured()
    before = saga.p
    for outcome in (
        Succeeded(1, "pi_1", AMOUNT),
        Declined(1, "card_declined", "late"),
        InDoubt(1),
        Succeeded(2, "ch_1", AMOUNT),
        Declined(2, "processor_error", "late"),
        NotReceived(2),
        Unresolved(2),
        ActionNeeded(1, "pi_1", REDIRECT, "redirect"),
        Succeeded(99, "x", 1),
    ):
        decision = saga.send(outcome)
        assert_unchanged(before, decision)


def test_a_success_after_a_failure_asks_for_attention_only() -> None:
    """A success reported for an operation settled as failed flags the payment, moves nothing."""
    saga = Saga()
    saga.send(authorize())
    saga.send(Declined(1, "card_declined", "no"))
    before = saga.p
    decision = saga.send(Succeeded(1, "pi_1", AMOUNT))
    assert decision.events == ()
    assert decision.execute == ()
    assert saga.p.attention is not None
    assert "authorize #1 succeeded after it was settled as failed" in saga.p.attention
    assert saga.p.operations == before.operations
    assert (saga.p.authorized, saga.state()) == (0, PaymentState.FAILED)


def test_a_success_for_another_amount_is_not_applied() -> None:
    """A Succeeded whose amount differs from the operation's moves nothing and flags the payment."""
    saga = authorized()
    saga.send(capture())
    decision = saga.send(Succeeded(2, "ch_1", AMOUNT - 1))
    assert decision.events == ()
    assert decision.execute == ()
    assert (saga.p.captured, saga.p.capture_final) == (0, False)
    assert saga.op(2).in_flight
    assert saga.p.attention is not None
    assert "reports 99.99 USD" in saga.p.attention
    decision = saga.send(OperatorResolved(2, succeeded=True, reference="ch_1", note="checked"))
    assert only(decision, PaymentCaptured).amount == usd(AMOUNT)
    assert saga.state() is PaymentState.CAPTURED


def test_an_operator_resolves_an_in_doubt_operation_as_succeeded() -> None:
    """An operator settling an in-doubt authorization as succeeded authorizes the payment."""
    saga = Saga()
    saga.send(authorize())
    saga.send(InDoubt(1))
    decision = saga.send(OperatorResolved(1, succeeded=True, reference="pi_1", note="dashboard"))
    assert decision.cause == "operator_resolved"
    assert only(decision, PaymentAuthorized).processor_reference == "pi_1"
    assert saga.state() is PaymentState.AUTHORIZED
    assert saga.p.timers == (
        Timer(
            TimerKind.AUTHORIZATION_EXPIRY,
            saga.now + timedelta(days=7) - AUTO_VOID_MARGIN,
        ),
    )


def test_an_operator_resolves_an_in_doubt_operation_as_failed() -> None:
    """An operator settling an in-doubt authorization as failed fails it without fail-over."""
    saga = Saga()
    saga.send(authorize(candidates=(Processor.STRIPE, Processor.PAYPAL)))
    saga.send(InDoubt(1))
    decision = saga.send(OperatorResolved(1, succeeded=False, reference=None, note="not there"))
    assert only(decision, PaymentAuthorizationFailed).reason_code == "other"
    assert decision.execute == ()
    assert saga.state() is PaymentState.FAILED
    assert saga.p.timers == ()


def test_an_operator_resolution_is_refused_when_it_cannot_apply() -> None:
    """A success without a reference, or for a settled operation, is refused and changes nothing."""
    saga = Saga()
    saga.send(authorize())
    saga.send(InDoubt(1))
    before = saga.p
    decision = saga.send(OperatorResolved(1, succeeded=True, reference=None, note="?"))
    assert decision.rejection is not None
    assert_unchanged(before, decision)
    saga.send(Succeeded(1, "pi_1", AMOUNT))
    before = saga.p
    decision = saga.send(OperatorResolved(1, succeeded=False, reference=None, note="late"))
    assert decision.rejection is not None
    assert_unchanged(before, decision)


# Redelivered answers, an expired authorization, refusal wording, operator warnings


def test_a_repeated_action_needed_changes_nothing_the_second_time() -> None:
    """A redelivered ActionNeeded neither announces the action again nor extends its timeout."""
    saga = Saga()
    saga.send(authorize())
    notice = ActionNeeded(1, "pi_1", REDIRECT, "three_ds")
    saga.send(notice)
    timeout = saga.timer(TimerKind.ACTION_TIMEOUT)
    decision = saga.send(notice, after=timedelta(minutes=30))
    assert decision.events == ()
    assert saga.timer(TimerKind.ACTION_TIMEOUT) == timeout


def test_an_expired_authorization_cannot_be_voided() -> None:
    """A payment expired under the expire policy refuses a void and stays expired."""
    saga = authorized(policy=SagaPolicy(expiry=ExpiryPolicy.EXPIRE))
    saga.fire(TimerKind.AUTHORIZATION_EXPIRY)
    assert saga.state() is PaymentState.EXPIRED
    decision = saga.send(void())
    assert decision.rejection is not None
    assert saga.state() is PaymentState.EXPIRED


def test_cancelling_an_expired_payment_moves_no_money() -> None:
    """Cancelling a payment expired under the expire policy sends nothing and stays expired."""
    saga = authorized(policy=SagaPolicy(expiry=ExpiryPolicy.EXPIRE))
    saga.fire(TimerKind.AUTHORIZATION_EXPIRY)
    decision = saga.send(cancel())
    assert decision.execute == ()
    assert [type(e) for e in events(decision)] == [PaymentCancelled]
    assert saga.state() is PaymentState.EXPIRED


def test_a_refused_refund_says_how_much_can_still_be_refunded() -> None:
    """A refund above what is left is refused with a detail that reads "can be refunded"."""
    saga = captured()
    decision = saga.send(refund(AMOUNT + 1))
    assert decision.rejection is not None
    assert "at most 100.00 USD can be refunded now" in decision.rejection.detail


def test_resolving_one_operation_keeps_the_attention_another_needs() -> None:
    """An operator settling one operation does not clear a warning about money another moved."""
    saga = authorized()
    saga.send(capture(3_000, final=False))
    saga.send(Declined(2, "processor_error", "timeout at the acquirer"))
    saga.send(Succeeded(2, "ch_1", 3_000))
    warning = saga.p.attention
    assert warning is not None
    assert "capture #2" in warning
    saga.send(capture(3_000, final=False, key="cap-2"))
    saga.send(InDoubt(3))
    saga.send(OperatorResolved(3, succeeded=True, reference="ch_2", note="seen on the dashboard"))
    assert saga.p.captured == 3_000
    assert saga.p.attention is not None
    assert "capture #2" in saga.p.attention
