"""Which verdict a verified vendor notification gets against a payment saga, case by case.

Every table row is a payment as the saga holds it, a notification and the verdict expected.
A ``Resolve`` or ``Inquire`` is compared whole; ``Known``, ``Later`` and ``Conflict`` by kind
only, since their reasons are prose for operators.
"""

from dataclasses import replace
from typing import Final, Literal, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagas.messages import Declined, Succeeded
from sagas.model import Operation, OperationKind, OperationStatus, Payment, SagaPolicy
from sagas.notifications import Conflict, Inquire, Known, Later, Resolve, Verdict, interpret
from sagas.states import PaymentState
from schemas.money import Money
from schemas.notifications import Notification, NotificationKind
from schemas.processors import Processor
from tests.unit.test_saga_machine import AMOUNT, PAYMENT_ID, START, authorize, usd

STRIPE: Final = Processor.STRIPE
PAYPAL: Final = Processor.PAYPAL
HESABPAY: Final = Processor.HESABPAY

PENDING: Final = OperationStatus.PENDING
IN_DOUBT: Final = OperationStatus.IN_DOUBT
ACTION_REQUIRED: Final = OperationStatus.ACTION_REQUIRED
SUCCEEDED: Final = OperationStatus.SUCCEEDED
FAILED: Final = OperationStatus.FAILED
IN_FLIGHT: Final = (PENDING, IN_DOUBT, ACTION_REQUIRED)

KINDS: Final[tuple[NotificationKind, ...]] = get_args(NotificationKind)

Expected = Resolve | Inquire | type[Known] | type[Later] | type[Conflict]
"""A verdict compared whole, or the kind of verdict whose reason is not compared."""


# Builders


def op(
    seq: int,
    kind: OperationKind,
    status: OperationStatus,
    amount: int = AMOUNT,
    processor: Processor = STRIPE,
) -> Operation:
    """Operation ``seq`` of ``kind``, asked for by a command."""
    return Operation(
        seq=seq, kind=kind, processor=processor, amount=amount, status=status, origin="command"
    )


def auth(status: OperationStatus, processor: Processor = STRIPE) -> Operation:
    """Authorization #1 of AMOUNT."""
    return op(1, OperationKind.AUTHORIZE, status, processor=processor)


def named(operation: Operation, reference: str) -> Operation:
    """``operation`` with the vendor's id of what it created."""
    return replace(operation, reference=reference)


def payment(*operations: Operation, capture: Literal["manual", "automatic"] = "manual") -> Payment:
    """A USD payment of AMOUNT being authorized, with ``operations``."""
    return Payment(
        payment_id=PAYMENT_ID,
        currency="USD",
        amount=AMOUNT,
        request=authorize(capture=capture).command,
        policy=SagaPolicy(),
        candidates=(STRIPE, PAYPAL, HESABPAY),
        state=PaymentState.AUTHORIZING,
        operations=operations,
    )


def held(*operations: Operation, captured: int = 0) -> Payment:
    """A payment whose authorization #1 at Stripe succeeded, with ``captured`` taken."""
    state = PaymentState.PARTIALLY_CAPTURED if captured else PaymentState.AUTHORIZED
    return replace(
        payment(named(auth(SUCCEEDED), "pi_1"), *operations),
        state=state,
        processor=STRIPE,
        authorization_reference="pi_1",
        authorized=AMOUNT,
        captured=captured,
    )


def settled(*operations: Operation, refunded: int = 0) -> Payment:
    """A payment authorized and fully captured (#1, #2) at Stripe, ``refunded`` given back."""
    state = PaymentState.PARTIALLY_REFUNDED if refunded else PaymentState.CAPTURED
    capture = named(op(2, OperationKind.CAPTURE, SUCCEEDED), "ch_1")
    return replace(
        held(capture, *operations, captured=AMOUNT),
        state=state,
        capture_final=True,
        refunded=refunded,
    )


def note(
    kind: NotificationKind,
    amount: Money | None = None,
    processor: Processor = STRIPE,
    reference: str | None = "ref_1",
    authorization_reference: str | None = None,
) -> Notification:
    """A verified notification of ``kind`` from ``processor``."""
    return Notification(
        processor=processor,
        event_id="evt_1",
        vendor_type=f"test.{kind}",
        kind=kind,
        reference=reference,
        authorization_reference=authorization_reference,
        amount=amount,
        occurred_at=START,
    )


def assert_verdict(verdict: Verdict, expected: Expected) -> None:
    """``verdict`` is ``expected``: equal to it, or of that kind."""
    if isinstance(expected, type):
        assert type(verdict) is expected, verdict
    else:
        assert verdict == expected


# Currency


@pytest.mark.parametrize("kind", KINDS)
def test_another_currency_is_a_conflict_whatever_the_kind(kind: NotificationKind) -> None:
    """An amount in another currency contradicts the payment, even with a match in flight."""
    busy = held(
        op(2, OperationKind.CAPTURE, PENDING),
        op(3, OperationKind.VOID, PENDING),
        op(4, OperationKind.REFUND, PENDING),
    )
    verdict = interpret(busy, note(kind, Money(minor=AMOUNT, currency="EUR")))
    assert isinstance(verdict, Conflict), verdict
    assert "EUR" in verdict.reason
    assert "USD" in verdict.reason


# Authorized

AUTHORIZED_CASES: Final = [
    *(
        pytest.param(
            payment(auth(status)),
            note("authorized", usd(AMOUNT), reference="pi_1"),
            Resolve(Succeeded(1, "pi_1", AMOUNT)),
            id=f"{status}-resolves",
        )
        for status in IN_FLIGHT
    ),
    pytest.param(
        payment(auth(IN_DOUBT)),
        note("authorized", usd(AMOUNT), reference="ch_1", authorization_reference="auth_1"),
        Resolve(Succeeded(1, "auth_1", AMOUNT)),
        id="authorization-reference-first",
    ),
    pytest.param(
        payment(named(auth(ACTION_REQUIRED), "pi_op")),
        note("authorized", reference=None),
        Resolve(Succeeded(1, "pi_op", AMOUNT)),
        id="no-reference-no-amount-uses-the-operation's",
    ),
    pytest.param(
        payment(auth(PENDING)),
        note("authorized", usd(AMOUNT - 1)),
        Conflict,
        id="amount-differs",
    ),
    pytest.param(
        held(),
        note("authorized", usd(AMOUNT), reference="pi_1"),
        Known,
        id="already-succeeded",
    ),
    pytest.param(
        payment(named(auth(FAILED), "pi_1")),
        note("authorized", usd(AMOUNT), reference="pi_1"),
        Conflict,
        id="failed-and-named",
    ),
    pytest.param(
        payment(named(auth(FAILED), "pi_1")),
        note("authorized", usd(AMOUNT), reference="ch_9", authorization_reference="pi_1"),
        Conflict,
        id="failed-and-named-as-authorization",
    ),
    pytest.param(
        payment(named(auth(FAILED), "pi_1")),
        note("authorized", usd(AMOUNT), reference="pi_2"),
        Later,
        id="failed-but-not-named",
    ),
    pytest.param(
        payment(),
        note("authorized", usd(AMOUNT)),
        Later,
        id="no-authorization-yet",
    ),
    pytest.param(
        payment(auth(PENDING, PAYPAL)),
        note("authorized", usd(AMOUNT)),
        Later,
        id="in-flight-at-another-processor",
    ),
    pytest.param(
        payment(
            named(auth(FAILED), "pi_1"), op(2, OperationKind.AUTHORIZE, PENDING, processor=PAYPAL)
        ),
        note("authorized", usd(AMOUNT), reference="pi_1"),
        Conflict,
        id="failed-here-named-while-another-processor-tries",
    ),
    pytest.param(
        payment(auth(FAILED, PAYPAL), op(2, OperationKind.AUTHORIZE, IN_DOUBT)),
        note("authorized", usd(AMOUNT), reference="pi_2"),
        Resolve(Succeeded(2, "pi_2", AMOUNT)),
        id="after-fail-over",
    ),
]


@pytest.mark.parametrize(("saga", "notification", "expected"), AUTHORIZED_CASES)
def test_authorized(saga: Payment, notification: Notification, expected: Expected) -> None:
    """An authorization settles the one in flight at its processor, else is known or early."""
    assert_verdict(interpret(saga, notification), expected)


# Approved

APPROVED_CASES: Final = [
    pytest.param(payment(auth(ACTION_REQUIRED)), Inquire(1), id="action-required-inquires"),
    pytest.param(payment(auth(PENDING)), Known, id="pending"),
    pytest.param(payment(auth(IN_DOUBT)), Known, id="in-doubt"),
    pytest.param(held(), Known, id="succeeded"),
    pytest.param(payment(auth(FAILED)), Known, id="failed"),
    pytest.param(payment(), Known, id="no-authorization"),
    pytest.param(payment(auth(ACTION_REQUIRED, PAYPAL)), Known, id="waiting-elsewhere"),
]


@pytest.mark.parametrize(("saga", "expected"), APPROVED_CASES)
def test_approved(saga: Payment, expected: Expected) -> None:
    """Only an authorization waiting for the customer is worth an inquiry."""
    assert_verdict(interpret(saga, note("approved", usd(AMOUNT))), expected)


# Captured

PARTIAL: Final = held(
    named(op(2, OperationKind.CAPTURE, SUCCEEDED, 3_000), "ch_1"),
    op(3, OperationKind.CAPTURE, IN_DOUBT, 4_000),
    captured=3_000,
)
"""3,000 of AMOUNT captured by #2; a capture #3 of 4,000 in doubt."""

CAPTURED_CASES: Final = [
    pytest.param(
        held(op(2, OperationKind.CAPTURE, PENDING)),
        note("captured", usd(AMOUNT), reference="ch_1"),
        Resolve(Succeeded(2, "ch_1", AMOUNT)),
        id="exact-amount",
    ),
    pytest.param(
        PARTIAL,
        note("captured", usd(4_000), reference="ch_2"),
        Conflict,
        id="stripe-own-amount-is-not-its-running-total",
    ),
    pytest.param(
        held(op(2, OperationKind.CAPTURE, IN_DOUBT, 4_000, processor=PAYPAL)),
        note("captured", usd(4_000), processor=PAYPAL, reference="CAP-2"),
        Resolve(Succeeded(2, "CAP-2", 4_000)),
        id="paypal-own-amount",
    ),
    pytest.param(
        held(
            named(op(2, OperationKind.CAPTURE, SUCCEEDED, 4_000, processor=PAYPAL), "CAP-2"),
            op(3, OperationKind.CAPTURE, PENDING, 4_000, processor=PAYPAL),
            captured=4_000,
        ),
        note("captured", usd(4_000), processor=PAYPAL, reference="CAP-2"),
        Known,
        id="paypal-late-event-of-a-settled-capture-leaves-the-next-alone",
    ),
    pytest.param(
        PARTIAL,
        note("captured", usd(7_000), reference="pi_1"),
        Resolve(Succeeded(3, "pi_1", 4_000)),
        id="partial-running-total",
    ),
    pytest.param(
        PARTIAL,
        note("captured", reference="ch_2"),
        Resolve(Succeeded(3, "ch_2", 4_000)),
        id="partial-no-amount",
    ),
    pytest.param(
        PARTIAL,
        note("captured", usd(2_000)),
        Known,
        id="partial-below-what-is-captured",
    ),
    pytest.param(PARTIAL, note("captured", usd(3_000)), Known, id="partial-what-is-captured"),
    pytest.param(PARTIAL, note("captured", usd(5_000)), Conflict, id="partial-matches-nothing"),
    pytest.param(PARTIAL, note("captured", usd(AMOUNT)), Conflict, id="partial-above-all"),
    pytest.param(
        payment(auth(PENDING), capture="automatic"),
        note("captured", usd(AMOUNT), reference="pi_1"),
        Resolve(Succeeded(1, "pi_1", AMOUNT, captured=True)),
        id="automatic-capture-settles-the-authorization",
    ),
    pytest.param(
        payment(auth(ACTION_REQUIRED), capture="automatic"),
        note("captured", usd(AMOUNT - 1)),
        Conflict,
        id="automatic-capture-amount-differs",
    ),
    pytest.param(
        payment(auth(IN_DOUBT, HESABPAY)),
        note("captured", usd(AMOUNT), HESABPAY, reference="tx_1"),
        Resolve(Succeeded(1, "tx_1", AMOUNT, captured=True)),
        id="hesabpay-captures-at-once",
    ),
    pytest.param(
        payment(auth(PENDING)),
        note("captured", usd(AMOUNT)),
        Later,
        id="manual-capture-before-authorized",
    ),
    pytest.param(
        payment(auth(PENDING, PAYPAL), capture="automatic"),
        note("captured", usd(AMOUNT)),
        Later,
        id="automatic-capture-at-another-processor",
    ),
    pytest.param(
        held(op(2, OperationKind.CAPTURE, PENDING, processor=PAYPAL)),
        note("captured", usd(AMOUNT)),
        Later,
        id="capture-at-another-processor",
    ),
    pytest.param(
        settled(),
        note("captured", usd(AMOUNT)),
        Known,
        id="nothing-in-flight-already-captured",
    ),
    pytest.param(
        settled(),
        note("captured"),
        Known,
        id="nothing-in-flight-no-amount-something-captured",
    ),
    pytest.param(
        held(), note("captured", usd(AMOUNT)), Later, id="nothing-in-flight-nothing-taken"
    ),
    pytest.param(
        held(named(op(2, OperationKind.CAPTURE, SUCCEEDED, 3_000), "ch_1"), captured=3_000),
        note("captured", usd(4_000)),
        Later,
        id="nothing-in-flight-above-what-is-captured",
    ),
]


@pytest.mark.parametrize(("saga", "notification", "expected"), CAPTURED_CASES)
def test_captured(saga: Payment, notification: Notification, expected: Expected) -> None:
    """A capture matches the one in flight by its amount or the running total."""
    assert_verdict(interpret(saga, notification), expected)


# Refunded


def refund(seq: int, status: OperationStatus, amount: int = 500) -> Operation:
    """Refund ``seq`` of ``amount`` at Stripe."""
    return op(seq, OperationKind.REFUND, status, amount)


REFUNDED_CASES: Final = [
    pytest.param(
        settled(refund(4, PENDING), refund(3, IN_DOUBT)),
        note("refunded", usd(500), reference="re_1"),
        Later,
        id="two-in-flight-same-total-waits",
    ),
    pytest.param(
        settled(refund(3, PENDING), refund(4, PENDING)),
        note("refunded", reference="re_1"),
        Later,
        id="two-in-flight-no-amount-waits",
    ),
    pytest.param(
        settled(refund(3, SUCCEEDED), refund(4, PENDING), refunded=500),
        note("refunded", usd(1_000), reference="re_2"),
        Resolve(Succeeded(4, "re_2", 500)),
        id="running-total-picks-the-other",
    ),
    pytest.param(
        settled(refund(3, PENDING, 300), refund(4, PENDING, 700)),
        note("refunded", usd(700), reference="re_2"),
        Resolve(Succeeded(4, "re_2", 700)),
        id="exact-amount-picks-its-refund",
    ),
    pytest.param(
        settled(),
        note("refunded", usd(500)),
        Later,
        id="before-the-refund-command",
    ),
    pytest.param(
        settled(refund(3, SUCCEEDED), refund(4, PENDING), refunded=500),
        note("refunded", usd(500), reference="ch_1"),
        Known,
        id="late-running-total-of-a-settled-refund-leaves-the-next-alone",
    ),
    pytest.param(
        held(),
        note("refunded", usd(500)),
        Later,
        id="refunded-before-captured",
    ),
    pytest.param(
        settled(refund(3, SUCCEEDED), refunded=500),
        note("refunded", usd(500)),
        Known,
        id="already-refunded",
    ),
    pytest.param(
        settled(refund(3, SUCCEEDED), refunded=500),
        note("refunded"),
        Known,
        id="already-refunded-no-amount",
    ),
    pytest.param(
        settled(refund(3, SUCCEEDED), refund(4, PENDING), refunded=500),
        note("refunded", usd(300)),
        Known,
        id="in-flight-below-what-is-refunded",
    ),
    pytest.param(
        settled(refund(3, SUCCEEDED), refund(4, PENDING), refunded=500),
        note("refunded", usd(1_500)),
        Conflict,
        id="in-flight-matches-nothing",
    ),
    pytest.param(
        settled(op(3, OperationKind.REFUND, PENDING, 500, PAYPAL)),
        note("refunded", usd(500)),
        Later,
        id="in-flight-at-another-processor",
    ),
]


@pytest.mark.parametrize(("saga", "notification", "expected"), REFUNDED_CASES)
def test_refunded(saga: Payment, notification: Notification, expected: Expected) -> None:
    """A refund matches the lowest refund in flight its amount or the running total fits."""
    assert_verdict(interpret(saga, notification), expected)


# Voided and expired

VOIDED_CASES: Final = [
    pytest.param(
        held(op(2, OperationKind.VOID, IN_DOUBT)),
        Resolve(Succeeded(2, "ref_1", AMOUNT)),
        id="void-in-flight",
    ),
    pytest.param(
        replace(held(op(2, OperationKind.VOID, SUCCEEDED)), voided=True),
        Known,
        id="voided",
    ),
    pytest.param(
        replace(held(), state=PaymentState.EXPIRED, ending="expired"),
        Known,
        id="expired",
    ),
    pytest.param(
        replace(payment(auth(FAILED)), state=PaymentState.FAILED, ending="failed"),
        Known,
        id="terminal",
    ),
    pytest.param(held(), Conflict, id="still-held"),
    pytest.param(held(captured=3_000), Conflict, id="rest-still-held"),
    pytest.param(
        held(op(2, OperationKind.VOID, PENDING, processor=PAYPAL)),
        Conflict,
        id="still-held-void-elsewhere",
    ),
    pytest.param(
        replace(held(captured=3_000), capture_final=True),
        Later,
        id="rest-released",
    ),
    pytest.param(settled(), Later, id="all-captured"),
    pytest.param(payment(auth(PENDING)), Later, id="not-authorized-yet"),
]


@pytest.mark.parametrize("kind", ["voided", "expired"])
@pytest.mark.parametrize(("saga", "expected"), VOIDED_CASES)
def test_voided_or_expired(
    kind: Literal["voided", "expired"], saga: Payment, expected: Expected
) -> None:
    """A lost authorization settles a void in flight; one the saga still holds is a conflict."""
    assert_verdict(interpret(saga, note(kind)), expected)


# Failures

FAILURE_KINDS: Final[list[tuple[NotificationKind, OperationKind, str]]] = [
    ("authorization_failed", OperationKind.AUTHORIZE, "card_declined"),
    ("capture_failed", OperationKind.CAPTURE, "processor_error"),
    ("refund_failed", OperationKind.REFUND, "processor_error"),
]


@pytest.mark.parametrize("status", IN_FLIGHT)
@pytest.mark.parametrize(("kind", "operation", "code"), FAILURE_KINDS)
def test_a_failure_declines_the_operation_in_flight(
    kind: NotificationKind, operation: OperationKind, code: str, status: OperationStatus
) -> None:
    """A failure settles the operation in flight as declined, with no fail-over."""
    saga = payment(op(5, operation, status))
    verdict = interpret(saga, note(kind))
    assert isinstance(verdict, Resolve), verdict
    outcome = verdict.outcome
    assert isinstance(outcome, Declined), outcome
    assert (outcome.seq, outcome.code, outcome.try_next) == (5, code, False)
    assert f"test.{kind}" in outcome.message


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        pytest.param((), Later, id="none-yet"),
        pytest.param((SUCCEEDED,), Known, id="succeeded"),
        pytest.param((FAILED,), Known, id="failed"),
        pytest.param((FAILED, SUCCEEDED), Known, id="failed-then-succeeded"),
    ],
)
@pytest.mark.parametrize(("kind", "operation", "code"), FAILURE_KINDS)
def test_a_failure_without_an_operation_in_flight(
    kind: NotificationKind,
    operation: OperationKind,
    code: str,
    operations: tuple[OperationStatus, ...],
    expected: Expected,
) -> None:
    """A failure of a settled operation is known; one before the operation exists is early."""
    del code
    saga = payment(*(op(seq, operation, status) for seq, status in enumerate(operations, 1)))
    assert_verdict(interpret(saga, note(kind)), expected)


@pytest.mark.parametrize(("kind", "operation", "code"), FAILURE_KINDS)
def test_a_failure_at_another_processor_waits(
    kind: NotificationKind, operation: OperationKind, code: str
) -> None:
    """The operation in flight must be at the notification's processor."""
    del code
    saga = payment(op(1, operation, PENDING, processor=PAYPAL))
    assert_verdict(interpret(saga, note(kind)), Later)


@pytest.mark.parametrize(
    ("reference", "seq"),
    [
        pytest.param("re_3", 3, id="named"),
        pytest.param("re_9", 4, id="unnamed-latest"),
    ],
)
def test_a_refund_failure_declines_the_refund_it_names(reference: str, seq: int) -> None:
    """Of several refunds in flight, the one the notification names, else the latest."""
    saga = settled(named(refund(3, PENDING), "re_3"), named(refund(4, IN_DOUBT), "re_4"))
    verdict = interpret(saga, note("refund_failed", reference=reference))
    assert isinstance(verdict, Resolve), verdict
    assert isinstance(verdict.outcome, Declined), verdict.outcome
    assert verdict.outcome.seq == seq


# Informational


@pytest.mark.parametrize("kind", ["action_required", "ignored"])
@pytest.mark.parametrize(
    "saga",
    [
        pytest.param(payment(auth(ACTION_REQUIRED)), id="action-required"),
        pytest.param(payment(auth(PENDING)), id="pending"),
        pytest.param(settled(refund(3, PENDING)), id="refund-in-flight"),
    ],
)
def test_informational_kinds_are_known(
    kind: Literal["action_required", "ignored"], saga: Payment
) -> None:
    """The saga learns these from the processor's own answers."""
    assert_verdict(interpret(saga, note(kind, usd(AMOUNT))), Known)


# Property: nothing in flight, nothing to resolve

REFERENCES: Final = st.sampled_from([None, "pi_1", "ch_1", "re_1", "tx_1"])


@st.composite
def quiet_payments(draw: st.DrawFn) -> Payment:
    """A payment in any state whose operations all have their outcome."""
    settled_ops = st.builds(
        Operation,
        seq=st.just(0),
        kind=st.sampled_from(OperationKind),
        processor=st.sampled_from(Processor),
        amount=st.integers(1, AMOUNT),
        status=st.sampled_from([SUCCEEDED, FAILED]),
        origin=st.sampled_from(["command", "auto_capture", "cancel", "expiry"]),
        reference=REFERENCES,
        target=REFERENCES,
    )
    operations = draw(st.lists(settled_ops, max_size=6))
    authorized = draw(st.sampled_from([0, AMOUNT]))
    captured = draw(st.integers(0, authorized))
    return replace(
        payment(
            *(replace(o, seq=seq) for seq, o in enumerate(operations, 1)),
            capture=draw(st.sampled_from(["manual", "automatic"])),
        ),
        state=draw(st.sampled_from(PaymentState)),
        authorized=authorized,
        captured=captured,
        refunded=draw(st.integers(0, captured)),
        capture_final=draw(st.booleans()),
        voided=draw(st.booleans()),
        ending=draw(st.sampled_from([None, "failed", "expired"])),
    )


NOTIFICATIONS: Final = st.builds(
    note,
    kind=st.sampled_from(KINDS),
    amount=st.none()
    | st.builds(
        Money, minor=st.integers(0, 2 * AMOUNT), currency=st.sampled_from(["USD", "USD", "EUR"])
    ),
    processor=st.sampled_from(Processor),
    reference=REFERENCES,
    authorization_reference=REFERENCES,
)


@settings(max_examples=300, deadline=None)
@given(saga=quiet_payments(), notification=NOTIFICATIONS)
def test_nothing_in_flight_is_never_resolved_or_inquired(
    saga: Payment, notification: Notification
) -> None:
    """With every operation settled, a notification can only be known, early or a conflict."""
    assert not saga.in_flight()
    verdict = interpret(saga, notification)
    assert isinstance(verdict, Known | Later | Conflict), verdict


def test_a_failure_naming_a_settled_refund_leaves_the_one_in_flight() -> None:
    """A late failure about refund #3 (settled) does not decline refund #4 (in flight)."""
    saga = settled(
        named(refund(3, SUCCEEDED), "re_3"), named(refund(4, IN_DOUBT), "re_4"), refunded=500
    )
    assert isinstance(interpret(saga, note("refund_failed", reference="re_3")), Known)
    verdict = interpret(saga, note("refund_failed", reference="re_4"))
    assert isinstance(verdict, Resolve), verdict
    assert isinstance(verdict.outcome, Declined), verdict.outcome
    assert verdict.outcome.seq == 4
