"""The ``PaymentPort`` contract: what every processor adapter must do, whatever the vendor.

Subclass ``PaymentPortContract`` as ``Test<Implementation>`` and provide a ``vendor``
fixture returning a ``PortUnderTest``: the port, and a ``VendorControl`` that injects
failures at the vendor behind it (the fake scripts itself; a sandbox vendor is told through
its own controls). Tests that need a capability the port lacks are skipped. Each test
works on a payment id of its own, so the suite can share one vendor account.
"""

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, Protocol

import pytest

from processors.errors import (
    DeclinedError,
    InDoubtError,
    RetryableError,
    TryNextError,
    WebhookRejected,
)
from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    CaptureRequest,
    InquiryRequest,
    NotFound,
    OperationKind,
    PaymentPort,
    RefundRequest,
    VoidRequest,
    WebhookRequest,
)
from schemas.events import FailureCode
from schemas.money import Money

if TYPE_CHECKING:
    from schemas.notifications import Notification


class VendorControl(Protocol):
    """Failure injection at the vendor behind a port; each arms the next new request."""

    def decline_next(self, kind: OperationKind, code: FailureCode) -> None:
        """The next ``kind`` request is declined with ``code``."""
        ...

    def fail_next_5xx(self, kind: OperationKind) -> None:
        """The next ``kind`` request gets a 5xx and takes no effect."""
        ...

    def timeout_after_apply_next(self, kind: OperationKind) -> None:
        """The next ``kind`` request takes effect, then its response is lost."""
        ...

    def timeout_before_apply_next(self, kind: OperationKind) -> None:
        """The next ``kind`` request is lost before the vendor sees it."""
        ...

    def require_action_next(self) -> None:
        """The next authorization waits for the customer."""
        ...

    def complete_action(self, reference: str) -> None:
        """The customer completes the action on authorization ``reference``."""
        ...

    async def webhook_about(
        self, reference: str, *, age: timedelta = timedelta(0), secret: str | None = None
    ) -> WebhookRequest:
        """The signed webhook the vendor sends about the object ``reference``.

        Signed ``age`` ago, with the account's webhook secret, or with ``secret``.
        """
        ...


@dataclass(frozen=True)
class PortUnderTest:
    """A port, the controls of the vendor behind it, and the values its sandbox accepts."""

    port: PaymentPort
    control: VendorControl
    account: str = "acct_contract"
    payment_method_token: str | None = "pm_contract"


@dataclass
class Payment:
    """Builds the requests of one payment, each with a fresh derived idempotency key."""

    vendor: PortUnderTest
    payment_id: str = field(default_factory=lambda: f"pay_{uuid.uuid4().hex[:16]}")
    _seq: Iterator[int] = field(init=False, default_factory=lambda: itertools.count(1))

    @property
    def port(self) -> PaymentPort:
        """The port under test."""
        return self.vendor.port

    def money(self, minor: int) -> Money:
        """``minor`` units of a currency the port supports (USD when it can)."""
        currencies = self.port.capabilities.currencies
        return Money(minor=minor, currency="USD" if "USD" in currencies else min(currencies))

    def key(self, operation: str) -> str:
        """A derived key for the next ``operation`` of this payment."""
        return f"tnt_contract:{self.payment_id}:{operation}:{next(self._seq)}"

    def authorization(
        self, minor: int = 1000, *, capture: Literal["manual", "automatic"] = "manual"
    ) -> AuthorizeRequest:
        """An authorization request with a new key."""
        return AuthorizeRequest(
            idempotency_key=self.key("authorize"),
            account=self.vendor.account,
            payment_id=self.payment_id,
            amount=self.money(minor),
            payment_method_type=min(self.port.capabilities.payment_method_types),
            payment_method_token=self.vendor.payment_method_token,
            capture=capture,
            return_url="https://hotel.invalid/return",
            booking_reference="BK-CONTRACT",
        )

    def capture(self, reference: str, minor: int, *, final: bool = True) -> CaptureRequest:
        """A capture request with a new key."""
        return CaptureRequest(
            self.key("capture"), self.vendor.account, reference, self.money(minor), final
        )

    def void(self, reference: str) -> VoidRequest:
        """A void request with a new key."""
        return VoidRequest(self.key("void"), self.vendor.account, reference, "abandoned")

    def refund(self, reference: str, minor: int) -> RefundRequest:
        """A refund request with a new key."""
        return RefundRequest(self.key("refund"), self.vendor.account, reference, self.money(minor))

    def inquiry(
        self, kind: OperationKind, key: str, reference: str | None, minor: int = 1000
    ) -> InquiryRequest:
        """An inquiry about the operation sent with ``key``."""
        return InquiryRequest(kind, key, self.vendor.account, reference, self.money(minor))

    async def settled_reference(self, minor: int = 1000) -> str:
        """Authorize ``minor`` with the capture the port allows; the authorization's reference."""
        capture: Literal["manual", "automatic"] = (
            "manual" if self.port.capabilities.manual_capture else "automatic"
        )
        result = await self.port.authorize(self.authorization(minor, capture=capture))
        assert isinstance(result, Approved)
        return result.reference

    async def authorized(self, minor: int = 1000) -> str:
        """Authorize ``minor`` (manual capture) and return the authorization's reference."""
        result = await self.port.authorize(self.authorization(minor))
        assert isinstance(result, Approved)
        return result.reference

    async def captured(self, minor: int = 1000) -> str:
        """Take ``minor`` in full and return the reference refunds are made against."""
        if not self.port.capabilities.manual_capture:
            result = await self.port.authorize(self.authorization(minor, capture="automatic"))
            assert isinstance(result, Approved)
            assert result.captured
            return result.reference
        capture = await self.port.capture(self.capture(await self.authorized(minor), minor))
        return capture.reference


def needs(vendor: PortUnderTest, *capabilities: str) -> None:
    """Skip the test unless the port has every named capability."""
    caps = vendor.port.capabilities
    missing = [name for name in capabilities if not getattr(caps, name)]
    if missing:
        pytest.skip(f"{vendor.port.processor} lacks {', '.join(missing)}")


class WebhookContract:
    """What every port does with webhooks; mixed into ``PaymentPortContract``."""

    async def test_a_signed_webhook_is_verified_and_normalized(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """The vendor's own webhook about an authorization parses into its notification."""
        reference = await payment.settled_reference()
        webhook = await vendor.control.webhook_about(reference)

        notification = await payment.port.parse_webhook(webhook)

        assert notification.processor is payment.port.processor
        assert reference in {notification.reference, notification.authorization_reference}
        assert notification.event_id

    async def test_a_tampered_body_is_rejected(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """One changed byte in the body fails verification."""
        webhook = await vendor.control.webhook_about(await payment.settled_reference())
        body = bytearray(webhook.body)
        body[len(body) // 2] ^= 0x01

        with pytest.raises(WebhookRejected):
            await payment.port.parse_webhook(replace(webhook, body=bytes(body)))

    async def test_a_stale_webhook_is_rejected(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A webhook signed long ago is refused as stale."""
        reference = await payment.settled_reference()
        webhook = await vendor.control.webhook_about(reference, age=timedelta(hours=1))

        with pytest.raises(WebhookRejected) as rejected:
            await payment.port.parse_webhook(webhook)
        assert rejected.value.reason == "stale"

    async def test_a_webhook_signed_with_another_secret_is_rejected(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A signature made with a secret that is not the account's fails verification."""
        reference = await payment.settled_reference()
        webhook = await vendor.control.webhook_about(reference, secret="whsec_someone_else")

        with pytest.raises(WebhookRejected):
            await payment.port.parse_webhook(webhook)

    async def test_a_replayed_webhook_is_refused_or_recognisable(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """The same webhook twice is refused as a replay, or parses to the same event id."""
        webhook = await vendor.control.webhook_about(await payment.settled_reference())
        first = await payment.port.parse_webhook(webhook)

        second: Notification | WebhookRejected
        try:
            second = await payment.port.parse_webhook(webhook)
        except WebhookRejected as rejected:
            second = rejected
        if isinstance(second, WebhookRejected):
            assert second.reason == "replayed"
        else:
            assert second.event_id == first.event_id


class PaymentPortContract(WebhookContract):
    """Behaviour every ``PaymentPort`` shows; subclasses provide the ``vendor`` fixture."""

    @pytest.fixture
    def payment(self, vendor: PortUnderTest) -> Payment:
        """A payment of this test's own."""
        return Payment(vendor)

    async def test_authorization_reserves_the_amount(self, payment: Payment) -> None:
        """An approved authorization carries the amount, captured only without manual capture."""
        result = await payment.port.authorize(payment.authorization(1000))

        assert isinstance(result, Approved)
        assert result.amount == payment.money(1000)
        assert result.captured is not payment.port.capabilities.manual_capture

    async def test_automatic_capture_captures_at_once(self, payment: Payment) -> None:
        """An authorization with automatic capture reports the funds captured."""
        result = await payment.port.authorize(payment.authorization(1000, capture="automatic"))

        assert isinstance(result, Approved)
        assert result.captured

    async def test_partial_then_final_capture_takes_the_whole_amount(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A partial capture then a final one take the whole authorization, and no more."""
        needs(vendor, "manual_capture", "partial_capture")
        reference = await payment.authorized(1000)

        first = await payment.port.capture(payment.capture(reference, 400, final=False))
        rest = await payment.port.capture(payment.capture(reference, 600, final=True))

        assert (first.amount, rest.amount) == (payment.money(400), payment.money(600))
        with pytest.raises(DeclinedError):
            await payment.port.capture(payment.capture(reference, 1))

    async def test_capture_beyond_the_authorization_is_declined(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """Capturing more than was authorized is refused as ``amount_too_large``."""
        needs(vendor, "manual_capture")
        reference = await payment.authorized(1000)

        with pytest.raises(DeclinedError) as refused:
            await payment.port.capture(payment.capture(reference, 1001))

        assert refused.value.code == "amount_too_large"

    async def test_void_releases_the_authorization(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A voided authorization releases its amount and can no longer be captured."""
        needs(vendor, "manual_capture", "void")
        reference = await payment.authorized(1000)

        voided = await payment.port.void(payment.void(reference))

        assert voided.amount == payment.money(1000)
        with pytest.raises(DeclinedError) as refused:
            await payment.port.capture(payment.capture(reference, 1000))
        assert refused.value.code == "already_settled"

    async def test_partial_refunds_add_up_to_the_captured_amount(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """Partial refunds are accepted up to the captured amount, and not a unit more."""
        needs(vendor, "refunds")
        reference = await payment.captured(1000)

        first = await payment.port.refund(payment.refund(reference, 300))
        rest = await payment.port.refund(payment.refund(reference, 700))

        assert (first.amount, rest.amount) == (payment.money(300), payment.money(700))
        with pytest.raises(DeclinedError):
            await payment.port.refund(payment.refund(reference, 1))

    async def test_refund_beyond_the_captured_amount_is_declined(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """Refunding more than was captured is refused as ``amount_too_large``."""
        needs(vendor, "refunds")
        reference = await payment.captured(1000)

        with pytest.raises(DeclinedError) as refused:
            await payment.port.refund(payment.refund(reference, 1001))

        assert refused.value.code == "amount_too_large"

    async def test_replayed_authorization_returns_the_first_result(self, payment: Payment) -> None:
        """The same authorization request sent twice yields one authorization."""
        request = payment.authorization(1000)

        first = await payment.port.authorize(request)
        again = await payment.port.authorize(request)

        assert again == first

    async def test_replayed_capture_applies_once(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A capture sent twice is applied once: the remainder is still capturable."""
        needs(vendor, "manual_capture", "partial_capture")
        reference = await payment.authorized(1000)
        request = payment.capture(reference, 600, final=False)

        first = await payment.port.capture(request)
        again = await payment.port.capture(request)
        rest = await payment.port.capture(payment.capture(reference, 400))

        assert again.reference == first.reference
        assert rest.amount == payment.money(400)

    async def test_replayed_void_returns_the_first_result(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A void sent twice succeeds both times with the same reference."""
        needs(vendor, "manual_capture", "void")
        request = payment.void(await payment.authorized(1000))

        first = await payment.port.void(request)
        again = await payment.port.void(request)

        assert again.reference == first.reference

    async def test_replayed_refund_applies_once(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A refund sent twice is applied once: the rest is still refundable."""
        needs(vendor, "refunds")
        reference = await payment.captured(1000)
        request = payment.refund(reference, 600)

        first = await payment.port.refund(request)
        again = await payment.port.refund(request)
        rest = await payment.port.refund(payment.refund(reference, 400))

        assert again.reference == first.reference
        assert rest.amount == payment.money(400)

    async def test_same_key_with_different_parameters_is_refused(self, payment: Payment) -> None:
        """Reusing a key for another amount is refused as ``invalid_request``."""
        request = payment.authorization(1000)
        await payment.port.authorize(request)
        other = replace(request, amount=payment.money(2000))

        with pytest.raises(DeclinedError) as refused:
            await payment.port.authorize(other)

        assert refused.value.code == "invalid_request"
        assert not isinstance(refused.value, TryNextError)

    @pytest.mark.parametrize("code", ["card_declined", "insufficient_funds", "expired_card"])
    async def test_decline_raises_declined_error_with_its_code(
        self, vendor: PortUnderTest, payment: Payment, code: FailureCode
    ) -> None:
        """A declined authorization raises a terminal ``DeclinedError`` with the failure code."""
        vendor.control.decline_next(OperationKind.AUTHORIZE, code)

        with pytest.raises(DeclinedError) as refused:
            await payment.port.authorize(payment.authorization(1000))

        assert refused.value.code == code
        assert not isinstance(refused.value, TryNextError)

    async def test_declined_request_is_declined_again_on_replay(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """Resending a declined request with its key gets the same decline, not a new try."""
        vendor.control.decline_next(OperationKind.AUTHORIZE, "insufficient_funds")
        request = payment.authorization(1000)
        with pytest.raises(DeclinedError):
            await payment.port.authorize(request)

        with pytest.raises(DeclinedError) as again:
            await payment.port.authorize(request)

        assert again.value.code == "insufficient_funds"

    async def test_5xx_is_retryable_and_the_same_key_then_succeeds(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A 5xx raises ``RetryableError``; the same request afterwards is approved."""
        vendor.control.fail_next_5xx(OperationKind.AUTHORIZE)
        request = payment.authorization(1000)

        with pytest.raises(RetryableError):
            await payment.port.authorize(request)
        result = await payment.port.authorize(request)

        assert isinstance(result, Approved)

    async def test_timeout_after_apply_is_in_doubt_until_inquired(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A lost response is ``InDoubtError``; inquiry and replay both find the authorization."""
        vendor.control.timeout_after_apply_next(OperationKind.AUTHORIZE)
        request = payment.authorization(1000)

        with pytest.raises(InDoubtError):
            await payment.port.authorize(request)
        found = await payment.port.inquire(
            payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, None)
        )
        replayed = await payment.port.authorize(request)

        assert isinstance(found, Approved)
        assert isinstance(replayed, Approved)
        assert replayed.reference == found.reference

    async def test_capture_timeout_after_apply_is_found_by_inquiry(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A capture whose response was lost is found applied by an inquiry."""
        needs(vendor, "manual_capture")
        reference = await payment.authorized(1000)
        vendor.control.timeout_after_apply_next(OperationKind.CAPTURE)
        request = payment.capture(reference, 1000)

        with pytest.raises(InDoubtError):
            await payment.port.capture(request)
        found = await payment.port.inquire(
            payment.inquiry(OperationKind.CAPTURE, request.idempotency_key, reference)
        )

        assert isinstance(found, Approved)
        assert found.amount == payment.money(1000)

    async def test_timeout_before_apply_leaves_no_trace(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A request lost on the way is unknown to an inquiry, and its key still works."""
        vendor.control.timeout_before_apply_next(OperationKind.AUTHORIZE)
        request = payment.authorization(1000)

        with pytest.raises(InDoubtError):
            await payment.port.authorize(request)
        found = await payment.port.inquire(
            payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, None)
        )
        retried = await payment.port.authorize(request)

        assert isinstance(found, NotFound)
        assert isinstance(retried, Approved)

    async def test_action_required_is_approved_once_completed(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """An authorization waiting for the customer is approved, on inquiry, once they act."""
        vendor.control.require_action_next()
        request = payment.authorization(1000)

        waiting = await payment.port.authorize(request)
        assert isinstance(waiting, ActionRequired)
        inquiry = payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, None)
        assert isinstance(await payment.port.inquire(inquiry), ActionRequired)
        vendor.control.complete_action(waiting.reference)
        found = await payment.port.inquire(inquiry)

        assert isinstance(found, Approved)
        assert found.reference == waiting.reference

    async def test_inquiry_about_an_unknown_key_finds_nothing(self, payment: Payment) -> None:
        """An inquiry about a key that was never sent finds nothing."""
        found = await payment.port.inquire(
            payment.inquiry(OperationKind.AUTHORIZE, payment.key("authorize"), None)
        )

        assert isinstance(found, NotFound)
