"""``FakeProcessor``: the port contract for each processor, then the fake's own controls."""

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from processors import fake_webhooks
from processors.errors import DeclinedError, InDoubtError, RetryableError, TryNextError
from processors.fake import (
    Decline,
    Fail5xx,
    FakeProcessor,
    RequireAction,
    TimeoutAfterApply,
    TimeoutBeforeApply,
    TryNext,
)
from processors.fake_ledger import default_capabilities
from processors.port import Approved, Failed, OperationKind, WebhookRequest
from schemas.events import FailureCode
from schemas.money import Money
from schemas.notifications import Notification
from schemas.processors import Processor
from tests.contracts.payment_port import Payment, PaymentPortContract, PortUnderTest
from tests.unit.test_caching_secret_store import ManualClock


class ScriptedControl:
    """``VendorControl`` over the fake's scripts."""

    def __init__(self, fake: FakeProcessor, clock: ManualClock) -> None:
        """Control ``fake``, whose clock is ``clock``."""
        self._fake = fake
        self._clock = clock

    def decline_next(self, kind: OperationKind, code: FailureCode) -> None:
        """Script a decline."""
        self._fake.script(kind, Decline(code))

    def fail_next_5xx(self, kind: OperationKind) -> None:
        """Script a 5xx."""
        self._fake.script(kind, Fail5xx())

    def timeout_after_apply_next(self, kind: OperationKind) -> None:
        """Script a response lost after applying."""
        self._fake.script(kind, TimeoutAfterApply())

    def timeout_before_apply_next(self, kind: OperationKind) -> None:
        """Script a request lost before applying."""
        self._fake.script(kind, TimeoutBeforeApply())

    def require_action_next(self) -> None:
        """Script an authorization that waits for the customer."""
        self._fake.script(OperationKind.AUTHORIZE, RequireAction())

    def complete_action(self, reference: str) -> None:
        """Approve the waiting authorization."""
        self._fake.complete_action(reference)

    async def webhook_about(
        self, reference: str, *, age: timedelta = timedelta(0), secret: str | None = None
    ) -> WebhookRequest:
        """The fake's webhook announcing the authorization ``reference``."""
        notification = Notification(
            processor=self._fake.processor,
            event_id=f"evt_{reference}",
            vendor_type="authorization.created",
            kind="authorized",
            reference=reference,
            occurred_at=self._clock() - age,
        )
        return fake_webhooks.sign(notification, secret or "whsec_fake", self._clock() - age)


class TestFakeProcessor(PaymentPortContract):
    """The fake of each processor keeps the port contract."""

    @pytest.fixture(params=list(Processor), ids=str)
    def vendor(self, request: pytest.FixtureRequest) -> PortUnderTest:
        """A fake with that processor's default capabilities."""
        processor: Processor = request.param
        clock = ManualClock()
        fake = FakeProcessor(processor, clock=clock)
        return PortUnderTest(fake, ScriptedControl(fake, clock))


@pytest.fixture
def clock() -> ManualClock:
    """The fake vendor's clock."""
    return ManualClock()


@pytest.fixture
def stripe(clock: ManualClock) -> FakeProcessor:
    """A fake Stripe."""
    return FakeProcessor(Processor.STRIPE, clock=clock)


@pytest.fixture
def payment(stripe: FakeProcessor, clock: ManualClock) -> Payment:
    """A payment at the fake Stripe."""
    return Payment(PortUnderTest(stripe, ScriptedControl(stripe, clock)))


async def test_replays_are_not_applied_again(stripe: FakeProcessor, payment: Payment) -> None:
    """Three sends of one authorization are three calls but one authorization."""
    request = payment.authorization(1000)

    for _ in range(3):
        await stripe.authorize(request)

    assert len(stripe.calls) == 3
    assert stripe.applied(OperationKind.AUTHORIZE) == 1
    assert stripe.authorizations_for(payment.payment_id) == 1


async def test_scripted_outcome_is_consumed_by_new_calls_only(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """A scripted decline is replayed for its key and does not reach the next new key."""
    stripe.script(OperationKind.AUTHORIZE, Decline("insufficient_funds"))
    declined = payment.authorization(1000)

    for _ in range(2):
        with pytest.raises(DeclinedError, match="declined"):
            await stripe.authorize(declined)
    approved = await stripe.authorize(payment.authorization(1000))

    assert isinstance(approved, Approved)
    assert stripe.applied(OperationKind.AUTHORIZE) == 1


async def test_concurrent_calls_with_one_key_apply_once(clock: ManualClock) -> None:
    """Of two concurrent sends of one key, one applies and the other gets a retryable 409."""
    fake = FakeProcessor(Processor.STRIPE, clock=clock, latency=0.001)
    payment = Payment(PortUnderTest(fake, ScriptedControl(fake, ManualClock())))
    request = payment.authorization(1000)

    results = await asyncio.gather(
        fake.authorize(request), fake.authorize(request), return_exceptions=True
    )

    assert isinstance(results[0], Approved)
    assert isinstance(results[1], RetryableError)
    assert results[1].vendor_code == "idempotency_key_in_use"
    assert fake.applied(OperationKind.AUTHORIZE) == 1


async def test_cancelled_call_frees_its_key(clock: ManualClock) -> None:
    """A call cancelled during the vendor's latency applies nothing; its key works later."""
    fake = FakeProcessor(Processor.STRIPE, clock=clock, latency=0.05)
    payment = Payment(PortUnderTest(fake, ScriptedControl(fake, ManualClock())))
    request = payment.authorization(1000)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fake.authorize(request), timeout=0.001)
    result = await fake.authorize(request)

    assert isinstance(result, Approved)
    assert fake.authorizations_for(payment.payment_id) == 1


async def test_storm_fails_the_next_calls_then_passes(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """``storm(2)`` fails two calls with a sent 5xx; the third is approved."""
    stripe.storm(2)
    request = payment.authorization(1000)

    for _ in range(2):
        with pytest.raises(RetryableError) as failed:
            await stripe.authorize(request)
        assert failed.value.sent
    result = await stripe.authorize(request)

    assert isinstance(result, Approved)


async def test_connect_error_storm_sends_nothing(stripe: FakeProcessor, payment: Payment) -> None:
    """A storm of refused connections raises errors saying nothing was sent."""
    stripe.storm(1, connect_error=True)

    with pytest.raises(RetryableError) as failed:
        await stripe.authorize(payment.authorization(1000))

    assert not failed.value.sent
    assert failed.value.vendor_code == "connect_error"


async def test_timeout_after_apply_counts_as_applied(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """An operation whose response was lost did take effect."""
    stripe.script(OperationKind.AUTHORIZE, TimeoutAfterApply())

    with pytest.raises(InDoubtError):
        await stripe.authorize(payment.authorization(1000))

    assert stripe.applied(OperationKind.AUTHORIZE) == 1
    assert stripe.authorizations_for(payment.payment_id) == 1


async def test_scripted_try_next_raises_try_next_error(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """A scripted ``TryNext`` raises ``TryNextError`` with its code."""
    stripe.script(OperationKind.AUTHORIZE, TryNext("processor_error", "processing_error"))

    with pytest.raises(TryNextError) as refused:
        await stripe.authorize(payment.authorization(1000))

    assert (refused.value.code, refused.value.vendor_code) == (
        "processor_error",
        "processing_error",
    )


@pytest.mark.parametrize(
    ("processor", "currency"), [(Processor.HESABPAY, "USD"), (Processor.PAYPAL, "AFN")]
)
async def test_unsupported_currency_is_try_next(
    clock: ManualClock, processor: Processor, currency: str
) -> None:
    """An authorization in a currency the processor lacks may go to another processor."""
    fake = FakeProcessor(processor, clock=clock)
    request = Payment(PortUnderTest(fake, ScriptedControl(fake, ManualClock()))).authorization(1000)
    request = replace(request, amount=Money(minor=1000, currency=currency))

    with pytest.raises(TryNextError) as refused:
        await fake.authorize(request)

    assert refused.value.code == "currency_not_supported"


async def test_hesabpay_charges_at_once_and_cannot_refund(clock: ManualClock) -> None:
    """A manual-capture authorization at HesabPay is captured at once; refunds are refused."""
    fake = FakeProcessor(Processor.HESABPAY, clock=clock)
    payment = Payment(PortUnderTest(fake, ScriptedControl(fake, ManualClock())))

    result = await fake.authorize(payment.authorization(1000, capture="manual"))
    assert isinstance(result, Approved)
    with pytest.raises(DeclinedError) as refused:
        await fake.refund(payment.refund(result.reference, 100))

    assert result.captured
    assert result.expires_at is None
    assert refused.value.vendor_code == "operation_not_supported"


@pytest.mark.parametrize(
    ("processor", "hold"),
    [(Processor.STRIPE, timedelta(days=7)), (Processor.PAYPAL, timedelta(days=29))],
)
async def test_authorization_expires_after_the_processor_hold(
    clock: ManualClock, processor: Processor, hold: timedelta
) -> None:
    """An uncaptured authorization expires after its processor's hold period."""
    fake = FakeProcessor(processor, clock=clock)

    result = await fake.authorize(
        Payment(PortUnderTest(fake, ScriptedControl(fake, ManualClock()))).authorization()
    )

    assert isinstance(result, Approved)
    assert result.expires_at == clock.now + hold


async def test_failed_action_is_reported_by_inquiry(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """An authorization whose customer failed the action is found failed by an inquiry."""
    stripe.script(OperationKind.AUTHORIZE, RequireAction(action="three_ds"))
    request = payment.authorization(1000)
    waiting = await stripe.authorize(request)

    stripe.fail_action(waiting.reference)
    found = await stripe.inquire(
        payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, None)
    )

    assert isinstance(found, Failed)
    assert found.code == "authentication_failed"


async def test_inquiry_reports_a_scripted_decline_as_failed(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """An inquiry about a declined request finds it failed with the decline's code."""
    stripe.script(OperationKind.AUTHORIZE, Decline("expired_card"))
    request = payment.authorization(1000)
    with pytest.raises(DeclinedError):
        await stripe.authorize(request)

    found = await stripe.inquire(
        payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, None)
    )

    assert isinstance(found, Failed)
    assert found.code == "expired_card"


async def test_refund_by_authorization_spans_its_captures(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """A refund against the authorization may cover several captures, up to their total."""
    reference = await payment.authorized(1000)
    await stripe.capture(payment.capture(reference, 400, final=False))
    await stripe.capture(payment.capture(reference, 600))

    refunded = await stripe.refund(payment.refund(reference, 1000))
    with pytest.raises(DeclinedError) as refused:
        await stripe.refund(payment.refund(reference, 1))

    assert refunded.amount == payment.money(1000)
    assert refused.value.code == "already_settled"
    assert stripe.authorization(reference).refunded == payment.money(1000)


async def test_refund_by_capture_is_limited_to_that_capture(
    stripe: FakeProcessor, payment: Payment
) -> None:
    """A refund against one capture may not exceed that capture."""
    reference = await payment.authorized(1000)
    first = await stripe.capture(payment.capture(reference, 400, final=False))

    with pytest.raises(DeclinedError) as refused:
        await stripe.refund(payment.refund(first.reference, 500))

    assert refused.value.code == "amount_too_large"


async def test_partial_capture_is_refused_without_the_capability(clock: ManualClock) -> None:
    """A processor without partial capture refuses to capture less than the whole amount."""
    capabilities = replace(default_capabilities(Processor.STRIPE), partial_capture=False)
    fake = FakeProcessor(Processor.STRIPE, clock=clock, capabilities=capabilities)
    payment = Payment(PortUnderTest(fake, ScriptedControl(fake, ManualClock())))
    reference = await payment.authorized(1000)

    with pytest.raises(DeclinedError) as refused:
        await fake.capture(payment.capture(reference, 400))

    assert refused.value.vendor_code == "partial_capture_not_supported"


async def test_void_is_refused_after_a_capture(stripe: FakeProcessor, payment: Payment) -> None:
    """An authorization with a capture cannot be voided."""
    reference = await payment.authorized(1000)
    await stripe.capture(payment.capture(reference, 400, final=False))

    with pytest.raises(DeclinedError) as refused:
        await stripe.void(payment.void(reference))

    assert refused.value.code == "already_settled"
    assert not stripe.authorization(reference).voided


def test_only_an_authorization_can_wait_for_the_customer(stripe: FakeProcessor) -> None:
    """Scripting a customer action for a capture is refused."""
    with pytest.raises(ValueError, match="only an authorization"):
        stripe.script(OperationKind.CAPTURE, RequireAction())
