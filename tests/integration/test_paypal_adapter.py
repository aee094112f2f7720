"""``PayPalAdapter`` against the fake PayPal over real HTTP: the port contract, then PayPal's own.

The sandbox is shared by the module and approves orders when they are created (as with a
payer's saved wallet), so that the contract's authorizations are approved at once; tests
that need the payer's approval ask for it. Webhook checks with a certificate of the test's
own are served through ``httpx.MockTransport`` at PayPal's real certificate host.
"""

import asyncio
import base64
import json
import queue
import socket
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final

import httpx
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors import paypal_webhooks
from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    RetryableError,
    TryNextError,
    WebhookRejected,
)
from processors.paypal import PayPalAdapter
from processors.paypal_mapping import REQUEST_ID_MAX, request_id
from processors.port import (
    ActionRequired,
    Approved,
    CredentialSource,
    Failed,
    NotFound,
    OperationKind,
    VendorCredentials,
    WebhookRequest,
)
from sandbox.gcp_server import LoopbackServer
from sandbox.paypal_api import PayPalSandbox
from sandbox.paypal_faults import Malformed, Target
from schemas.events import FailureCode
from schemas.money import Money
from tests.contracts.payment_port import Payment, PaymentPortContract, PortUnderTest

CLIENT_ID: Final = "paypal-contract-client"
SECRET: Final = "paypal-contract-secret-3f9c2a"
WEBHOOK_ID: Final = "WH-CONTRACT-7Q2M4K"
TIMEOUT_S: Final = 1.0
"""The adapter's request timeout: a held request becomes a read timeout this fast."""

AUTHORIZE, CAPTURE, VOID, REFUND = (
    OperationKind.AUTHORIZE,
    OperationKind.CAPTURE,
    OperationKind.VOID,
    OperationKind.REFUND,
)
TARGETS: Final[dict[OperationKind, Target]] = {
    AUTHORIZE: "authorize_order",
    CAPTURE: "capture",
    VOID: "void",
    REFUND: "refund",
}


def utc_now() -> datetime:
    """The wall clock, as the sandbox uses it."""
    return datetime.now(UTC)


def credentials(
    client_id: str = CLIENT_ID, secret: str = SECRET, webhook_id: str | None = WEBHOOK_ID
) -> CredentialSource:
    """A credential source that always resolves to these values."""
    resolved = VendorCredentials(
        api_key=SecretStr(f"{client_id}:{secret}"),
        webhook_secret=SecretStr(webhook_id) if webhook_id is not None else None,
        account="paypal-merchant",
    )

    async def resolve() -> VendorCredentials:
        return resolved

    return resolve


@pytest.fixture(scope="module")
def paypal() -> Iterator[PayPalSandbox]:
    """The fake PayPal on loopback, shared by this module's tests."""
    with PayPalSandbox(clients={CLIENT_ID: SECRET}, auto_approve=True) as sandbox:
        yield sandbox


@pytest.fixture(autouse=True)
def _clean_sandbox(paypal: PayPalSandbox) -> Iterator[None]:
    """Each test starts with no fault armed and orders approved at creation."""
    yield
    paypal.clear_faults()
    paypal.set_auto_approve(on=True)
    with paypal.state.settings.lock:
        paypal.state.settings.max_page_size = 500
        paypal.state.settings.approval_required = 0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client the adapter uses, closed after the test."""
    async with httpx.AsyncClient() as client:
        yield client


def adapter_for(
    paypal: PayPalSandbox, http: httpx.AsyncClient, source: CredentialSource | None = None
) -> PayPalAdapter:
    """An adapter on the sandbox, in sandbox mode (its certificate origin allowed)."""
    return PayPalAdapter(
        source or credentials(),
        base_url=paypal.url,
        clock=utc_now,
        http=http,
        timeout_s=TIMEOUT_S,
        sandbox_cert_origin=paypal.url,
    )


class SandboxControl:
    """``VendorControl`` over the sandbox's in-process controls."""

    DECLINES: Final[dict[str, tuple[str | None, str | None]]] = {
        "card_declined": ("INSTRUMENT_DECLINED", None),
        "insufficient_funds": (None, "5120"),
        "expired_card": ("CARD_EXPIRED", None),
    }
    """Failure code -> (PayPal issue, card processor response code) that means it."""

    def __init__(self, paypal: PayPalSandbox) -> None:
        """Control ``paypal``."""
        self.paypal = paypal

    def decline_next(self, kind: OperationKind, code: FailureCode) -> None:
        """Decline the next request of ``kind`` as PayPal says ``code``."""
        issue, response_code = self.DECLINES.get(code, ("INSTRUMENT_DECLINED", None))
        self.paypal.decline_next(TARGETS[kind], issue=issue, response_code=response_code)

    def fail_next_5xx(self, kind: OperationKind) -> None:
        """Answer the next request of ``kind`` with a 500."""
        self.paypal.fail_next(500, target=TARGETS[kind])

    def timeout_after_apply_next(self, kind: OperationKind) -> None:
        """Apply the next request of ``kind`` and hold its answer."""
        self.paypal.timeout_after_apply_next(TARGETS[kind])

    def timeout_before_apply_next(self, kind: OperationKind) -> None:
        """Hold the next request of ``kind`` without applying it."""
        self.paypal.timeout_before_apply_next(TARGETS[kind])

    def require_action_next(self) -> None:
        """The next order waits for the payer's approval."""
        self.paypal.require_approval_next()

    def complete_action(self, reference: str) -> None:
        """The payer approves the order ``reference``."""
        self.paypal.approve(reference)

    async def webhook_about(
        self, reference: str, *, age: timedelta = timedelta(0), secret: str | None = None
    ) -> WebhookRequest:
        """The sandbox's signed webhook about ``reference``, for ``secret`` or our webhook id."""
        headers, body = self.paypal.signed_webhook(
            reference, webhook_id=secret or WEBHOOK_ID, age=age
        )
        return WebhookRequest(headers, body, utc_now())


class TestPayPalAdapter(PaymentPortContract):
    """The port contract, kept by the PayPal adapter against the sandbox."""

    @pytest.fixture
    def vendor(self, paypal: PayPalSandbox, http: httpx.AsyncClient) -> PortUnderTest:
        """The adapter on the shared sandbox."""
        return PortUnderTest(
            adapter_for(paypal, http),
            SandboxControl(paypal),
            account="paypal-merchant",
            payment_method_token=None,
        )

    async def test_action_required_is_approved_once_completed(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """An order waits for the payer; once approved, an inquiry authorizes that order.

        PayPal's version of the contract's test: the approval is on the order, the
        authorization then made has an id of its own, which belongs to the order.
        """
        vendor.control.require_action_next()
        request = payment.authorization(1000)

        waiting = await payment.port.authorize(request)
        assert isinstance(waiting, ActionRequired)
        inquiry = payment.inquiry(AUTHORIZE, request.idempotency_key, None)
        assert isinstance(await payment.port.inquire(inquiry), ActionRequired)
        vendor.control.complete_action(waiting.reference)
        found = await payment.port.inquire(inquiry)

        assert isinstance(found, Approved)
        assert isinstance(vendor.control, SandboxControl)
        assert vendor.control.paypal.order_of(found.reference) == waiting.reference


@pytest.fixture
def adapter(paypal: PayPalSandbox, http: httpx.AsyncClient) -> PayPalAdapter:
    """The adapter on the shared sandbox."""
    return adapter_for(paypal, http)


@pytest.fixture
def payment(adapter: PayPalAdapter, paypal: PayPalSandbox) -> Payment:
    """A payment of this test's own at the sandbox."""
    return Payment(
        PortUnderTest(adapter, SandboxControl(paypal), "paypal-merchant", payment_method_token=None)
    )


# Tokens and credentials.


async def test_a_cached_token_serves_several_calls(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """One token serves an authorization and its capture."""
    before = paypal.token_requests

    reference = await payment.authorized(1000)
    await adapter.capture(payment.capture(reference, 1000))

    assert paypal.token_requests - before <= 1


async def test_an_expired_token_is_refreshed_once(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A token PayPal no longer accepts is replaced once and the call goes through."""
    reference = await payment.authorized(1000)
    paypal.expire_tokens()
    before = paypal.token_requests

    captured = await adapter.capture(payment.capture(reference, 1000))

    assert captured.amount == payment.money(1000)
    assert paypal.token_requests == before + 1


async def test_a_token_refused_after_refresh_is_not_configured(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A 401 that a fresh token does not cure is a terminal ``not_configured``, sent nothing."""
    reference = await payment.authorized(1000)
    paypal.fail_next(401, times=2, target="capture")

    with pytest.raises(DeclinedError) as refused:
        await adapter.capture(payment.capture(reference, 1000))
    captured = await adapter.capture(payment.capture(reference, 1000))

    assert refused.value.code == "not_configured"
    assert not refused.value.sent
    assert captured.amount == payment.money(1000)


async def test_revoked_client_credentials_are_not_configured(
    paypal: PayPalSandbox, http: httpx.AsyncClient
) -> None:
    """Credentials PayPal stops accepting make the next call ``not_configured``."""
    paypal.add_client("paypal-revoked-client", "revoked-secret")
    adapter = adapter_for(paypal, http, credentials("paypal-revoked-client", "revoked-secret"))
    payment = Payment(PortUnderTest(adapter, SandboxControl(paypal), payment_method_token=None))
    reference = await payment.authorized(1000)
    paypal.revoke_client("paypal-revoked-client")

    with pytest.raises(DeclinedError) as refused:
        await adapter.capture(payment.capture(reference, 1000))

    assert refused.value.code == "not_configured"


async def test_credentials_without_a_secret_are_not_configured(
    paypal: PayPalSandbox, http: httpx.AsyncClient, payment: Payment
) -> None:
    """An API key that is not ``client_id:secret`` is refused before anything is sent."""
    adapter = adapter_for(paypal, http, credentials(client_id="no-colon", secret=""))

    with pytest.raises(DeclinedError) as refused:
        await adapter.authorize(payment.authorization(1000))

    assert refused.value.code == "not_configured"
    assert not refused.value.sent


# Transport and vendor failures.


async def test_a_refused_connection_is_retryable_and_sent_nothing(
    http: httpx.AsyncClient, payment: Payment
) -> None:
    """With nothing listening, the authorization is retryable and says nothing was sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    adapter = PayPalAdapter(
        credentials(), base_url=f"http://127.0.0.1:{port}", clock=utc_now, http=http
    )

    with pytest.raises(RetryableError) as failed:
        await adapter.authorize(payment.authorization(1000))

    assert not failed.value.sent
    assert failed.value.vendor_code == "connect_error"


async def test_rate_limit_is_retryable_and_honours_retry_after(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A 429 is retryable with PayPal's Retry-After; the same key then captures once."""
    reference = await payment.authorized(1000)
    paypal.fail_next(429, target="capture", retry_after=7)
    request = payment.capture(reference, 400, final=False)

    with pytest.raises(RetryableError) as limited:
        await adapter.capture(request)
    first = await adapter.capture(request)
    again = await adapter.capture(request)

    assert limited.value.retry_after == 7.0
    assert (limited.value.vendor_code, limited.value.code) == (
        "RATE_LIMIT_REACHED",
        "processor_unavailable",
    )
    assert again.reference == first.reference


async def test_503_is_retryable(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A 503 from PayPal is retryable and applies nothing."""
    reference = await payment.authorized(1000)
    paypal.fail_next(503, target="void")

    with pytest.raises(RetryableError):
        await adapter.void(payment.void(reference))
    voided = await adapter.void(payment.void(reference))

    assert voided.reference == reference


@pytest.mark.parametrize("how", ["html", "truncated", "missing_fields", "unknown_status"])
async def test_a_malformed_capture_answer_is_never_a_failure(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox, how: Malformed
) -> None:
    """A garbled answer to a capture is a plain ``ProcessorError``; the capture did happen."""
    reference = await payment.authorized(1000)
    paypal.malformed_next("capture", how)
    request = payment.capture(reference, 1000)

    with pytest.raises(ProcessorError) as garbled:
        await adapter.capture(request)
    found = await adapter.inquire(payment.inquiry(CAPTURE, request.idempotency_key, reference))

    assert not isinstance(garbled.value, DeclinedError | RetryableError | InDoubtError)
    assert "PayPal" in garbled.value.message
    assert isinstance(found, Approved)
    assert found.amount == payment.money(1000)


async def test_a_malformed_authorization_answer_is_never_a_failure(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """An order whose status after authorizing is unknown is a plain ``ProcessorError``."""
    paypal.malformed_next("authorize_order", "unknown_status")
    request = payment.authorization(1000)

    with pytest.raises(ProcessorError) as garbled:
        await adapter.authorize(request)
    found = await adapter.inquire(payment.inquiry(AUTHORIZE, request.idempotency_key, None))

    assert type(garbled.value) is ProcessorError
    assert "MYSTERIOUS_NEW_STATUS" in garbled.value.message
    assert isinstance(found, Approved)


async def test_an_unsupported_currency_is_try_next_without_a_call(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """An authorization in a currency PayPal lacks may go elsewhere; PayPal is not asked."""
    before = paypal.request_count("create_order")
    request = replace(payment.authorization(1000), amount=Money(minor=1000, currency="AFN"))

    with pytest.raises(TryNextError) as refused:
        await adapter.authorize(request)

    assert refused.value.code == "currency_not_supported"
    assert not refused.value.sent
    assert paypal.request_count("create_order") == before


async def test_a_capture_key_reused_for_another_amount_is_invalid(
    adapter: PayPalAdapter, payment: Payment
) -> None:
    """PayPal replays the first capture for its key; another amount is ``invalid_request``."""
    reference = await payment.authorized(1000)
    request = payment.capture(reference, 400, final=False)
    await adapter.capture(request)

    with pytest.raises(DeclinedError) as refused:
        await adapter.capture(replace(request, amount=payment.money(500)))

    assert (refused.value.code, refused.value.vendor_code) == (
        "invalid_request",
        "idempotency_mismatch",
    )


async def test_a_reference_that_is_not_a_paypal_id_is_refused(
    adapter: PayPalAdapter, payment: Payment
) -> None:
    """A reference that would change the request's path is refused before sending."""
    with pytest.raises(DeclinedError) as refused:
        await adapter.capture(payment.capture("../../v1/oauth2/token", 100))

    assert refused.value.code == "invalid_request"


# The payer's approval.


async def test_the_approve_link_approves_and_returns_the_payer(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox, http: httpx.AsyncClient
) -> None:
    """The redirect is PayPal's approve link; after it, resending the authorization approves."""
    paypal.set_auto_approve(on=False)
    request = payment.authorization(1000)

    waiting = await adapter.authorize(request)
    assert isinstance(waiting, ActionRequired)
    page = await http.get(waiting.redirect_url)
    approved = await adapter.authorize(request)

    assert waiting.action == "redirect"
    assert page.status_code == 303
    assert page.headers["location"].startswith("https://hotel.invalid/return")
    assert isinstance(approved, Approved)
    assert paypal.order_of(approved.reference) == waiting.reference


async def test_an_inquiry_by_order_id_authorizes_an_approved_order(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox, http: httpx.AsyncClient
) -> None:
    """The saga's inquiry names the order; once the payer approved it, it is authorized once."""
    paypal.set_auto_approve(on=False)
    request = payment.authorization(1000)
    waiting = await adapter.authorize(request)
    assert isinstance(waiting, ActionRequired)
    approve = await http.post(f"{paypal.url}/_sandbox/orders/{waiting.reference}/approve")
    fresh = adapter_for(paypal, http)  # another worker: it never saw the order
    inquiry = payment.inquiry(AUTHORIZE, request.idempotency_key, waiting.reference)

    found = await fresh.inquire(inquiry)
    again = await fresh.inquire(inquiry)

    assert approve.status_code == 200
    assert isinstance(found, Approved)
    assert again == found


async def test_an_authorization_denied_by_the_card_processor_is_found_failed(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A DENIED authorization is declined with its code, and an inquiry finds it failed."""
    paypal.decline_next("authorize_order", response_code="5400")
    request = payment.authorization(1000)

    with pytest.raises(DeclinedError) as refused:
        await adapter.authorize(request)
    found = await adapter.inquire(payment.inquiry(AUTHORIZE, request.idempotency_key, None))

    assert (refused.value.code, refused.value.vendor_code) == ("expired_card", "5400")
    assert isinstance(found, Failed)
    assert found.code == "expired_card"


async def test_a_capture_declined_by_the_card_processor_takes_nothing(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A DECLINED capture is a terminal decline with its code; the amount stays capturable."""
    reference = await payment.authorized(1000)
    paypal.decline_next("capture", response_code="5120")

    with pytest.raises(DeclinedError) as refused:
        await adapter.capture(payment.capture(reference, 1000))
    captured = await adapter.capture(payment.capture(reference, 1000))

    assert (refused.value.code, refused.value.vendor_code) == ("insufficient_funds", "5120")
    assert captured.amount == payment.money(1000)


# Refunds.


async def test_a_refund_spans_two_partial_captures(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A refund of the authorization takes from both captures, once, however often sent."""
    reference = await payment.authorized(1000)
    first = await adapter.capture(payment.capture(reference, 400, final=False))
    second = await adapter.capture(payment.capture(reference, 600))
    request = payment.refund(reference, 1000)

    refunded = await adapter.refund(request)
    again = await adapter.refund(request)
    found = await adapter.inquire(payment.inquiry(REFUND, request.idempotency_key, reference, 1000))
    with pytest.raises(DeclinedError) as exhausted:
        await adapter.refund(payment.refund(reference, 1))

    parts = paypal.refunds_of(first.reference) + paypal.refunds_of(second.reference)
    assert refunded.amount == payment.money(1000)
    assert again == refunded
    assert found == refunded
    assert [part["amount"] for part in parts] == [
        {"currency_code": "USD", "value": "4.00"},
        {"currency_code": "USD", "value": "6.00"},
    ]
    assert [part["custom_id"] for part in parts] == [
        f"{request.idempotency_key}:1",
        f"{request.idempotency_key}:2",
    ]
    assert exhausted.value.code == "already_settled"


async def test_a_partial_refund_leaves_the_rest_to_the_next_request(
    adapter: PayPalAdapter, payment: Payment
) -> None:
    """After a refund by another request, only the rest can be refunded."""
    reference = await payment.authorized(1000)
    await adapter.capture(payment.capture(reference, 400, final=False))
    await adapter.capture(payment.capture(reference, 600))
    await adapter.refund(payment.refund(reference, 500))

    with pytest.raises(DeclinedError) as refused:
        await adapter.refund(payment.refund(reference, 501))
    rest = await adapter.refund(payment.refund(reference, 500))

    assert refused.value.code == "amount_too_large"
    assert not refused.value.sent
    assert rest.amount == payment.money(500)


async def test_a_refund_whose_answer_was_lost_is_found_by_inquiry(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A refund that timed out after PayPal made it is in doubt, then found by its custom id."""
    reference = await payment.captured(1000)
    paypal.timeout_after_apply_next("refund")
    request = payment.refund(reference, 300)

    with pytest.raises(InDoubtError):
        await adapter.refund(request)
    found = await adapter.inquire(payment.inquiry(REFUND, request.idempotency_key, reference, 300))
    unknown = await adapter.inquire(payment.inquiry(REFUND, payment.key("refund"), reference, 300))

    assert isinstance(found, Approved)
    assert found.amount == payment.money(300)
    assert isinstance(unknown, NotFound)


async def test_a_void_whose_answer_was_lost_is_found_by_inquiry(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """A void that timed out after PayPal made it is found by reading the authorization."""
    reference = await payment.authorized(1000)
    before = await adapter.inquire(payment.inquiry(VOID, payment.key("void"), reference))
    paypal.timeout_after_apply_next("void")
    request = payment.void(reference)

    with pytest.raises(InDoubtError):
        await adapter.void(request)
    found = await adapter.inquire(payment.inquiry(VOID, request.idempotency_key, reference))

    assert isinstance(before, NotFound)
    assert isinstance(found, Approved)
    assert found.reference == reference


async def test_a_payment_captured_at_once_is_refunded_by_its_capture(
    adapter: PayPalAdapter, payment: Payment
) -> None:
    """Automatic capture yields the capture's id, and refunds are made against it."""
    result = await adapter.authorize(payment.authorization(1000, capture="automatic"))
    assert isinstance(result, Approved)

    refunded = await adapter.refund(payment.refund(result.reference, 1000))

    assert result.captured
    assert refunded.amount == payment.money(1000)


# Webhooks.


def test_crc32_is_the_unsigned_checksum_paypal_signs() -> None:
    """The checksum is zlib's CRC32 as an unsigned number (known value for b"hello")."""
    assert paypal_webhooks.crc32(b"hello") == 907060870
    assert paypal_webhooks.crc32(b"\xff" * 4) == 4294967295


class LocalCertificate:
    """A key and certificate of the test's own, served where PayPal serves its own."""

    URL: Final = "https://api.paypal.com/v1/notifications/certs/CERT-test-local"

    def __init__(
        self,
        common_name: str = "messageverificationcerts.paypal.com",
        valid: timedelta = timedelta(days=30),
    ) -> None:
        """Make the key and a self-signed certificate, valid for ``valid`` around now."""
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = utc_now()
        start = now - timedelta(days=1) if valid > timedelta(0) else now + valid * 2
        self.pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + valid)
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        self.fetches = 0

    def transport(self) -> httpx.MockTransport:
        """Serves the certificate at ``URL``; anything else is a 404."""

        def handle(request: httpx.Request) -> httpx.Response:
            if str(request.url) != self.URL:
                return httpx.Response(404)
            self.fetches += 1
            return httpx.Response(200, content=self.pem)

        return httpx.MockTransport(handle)

    def webhook(self, body: bytes, *, webhook_id: str = WEBHOOK_ID) -> WebhookRequest:
        """``body`` signed as PayPal signs, computed here independently of the adapter."""
        transmission_id, sent_at = "b2b5a1e0-local", utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{transmission_id}|{sent_at}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}"
        signature = self.key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        headers = {
            "paypal-auth-algo": "SHA256withRSA",
            "paypal-cert-url": self.URL,
            "paypal-transmission-id": transmission_id,
            "paypal-transmission-sig": base64.b64encode(signature).decode(),
            "paypal-transmission-time": sent_at,
        }
        return WebhookRequest(headers, body, utc_now())


CAPTURE_EVENT: Final = {
    "id": "WH-LOCAL-0001",
    "event_version": "1.0",
    "create_time": "2026-01-01T10:00:00Z",
    "resource_type": "capture",
    "event_type": "PAYMENT.CAPTURE.COMPLETED",
    "resource": {
        "id": "4K0C8F1T2X9B7M3QA",
        "status": "COMPLETED",
        "amount": {"currency_code": "JPY", "value": "1500"},
        "custom_id": "pay_local_1",
        "supplementary_data": {"related_ids": {"authorization_id": "9AU7X1Y2Z3W4V5T6S"}},
    },
}


async def test_a_webhook_signed_with_a_local_certificate_verifies_offline() -> None:
    """A body signed over its CRC32 with a certificate from PayPal's host verifies offline."""
    local = LocalCertificate()
    async with httpx.AsyncClient(transport=local.transport()) as http:
        adapter = PayPalAdapter(
            credentials(), base_url="https://api-m.paypal.com", clock=utc_now, http=http
        )
        body = json.dumps(CAPTURE_EVENT).encode()

        first = await adapter.parse_webhook(local.webhook(body))
        second = await adapter.parse_webhook(local.webhook(body))
        with pytest.raises(WebhookRejected) as tampered:
            await adapter.parse_webhook(
                replace(local.webhook(body), body=body.replace(b"1500", b"1600"))
            )

    assert first == second
    assert (first.kind, first.reference, first.authorization_reference) == (
        "captured",
        "4K0C8F1T2X9B7M3QA",
        "9AU7X1Y2Z3W4V5T6S",
    )
    assert (first.payment_id, first.amount) == ("pay_local_1", Money(minor=1500, currency="JPY"))
    assert tampered.value.reason == "bad_signature"
    assert local.fetches == 1


@pytest.mark.parametrize(
    ("common_name", "valid"),
    [("payments.example.com", timedelta(days=30)), ("api.paypal.com", -timedelta(days=1))],
    ids=["foreign-name", "expired"],
)
async def test_a_certificate_that_is_not_paypals_or_expired_is_rejected(
    common_name: str, valid: timedelta
) -> None:
    """A correct signature is refused if the certificate is not PayPal's, or not valid now."""
    local = LocalCertificate(common_name, valid)
    async with httpx.AsyncClient(transport=local.transport()) as http:
        adapter = PayPalAdapter(
            credentials(), base_url="https://api-m.paypal.com", clock=utc_now, http=http
        )

        with pytest.raises(WebhookRejected) as rejected:
            await adapter.parse_webhook(local.webhook(json.dumps(CAPTURE_EVENT).encode()))

    assert rejected.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://evil.example.com/v1/notifications/certs/CERT-1",
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
    ],
    ids=["foreign-host", "plain-http", "userinfo"],
)
async def test_a_certificate_url_off_the_allowlist_is_rejected_unfetched(cert_url: str) -> None:
    """A certificate URL that is not https on PayPal's hosts is refused without fetching it."""
    local = LocalCertificate()
    async with httpx.AsyncClient(transport=local.transport()) as http:
        adapter = PayPalAdapter(
            credentials(), base_url="https://api-m.paypal.com", clock=utc_now, http=http
        )
        webhook = local.webhook(json.dumps(CAPTURE_EVENT).encode())
        headers = {**webhook.headers, "paypal-cert-url": cert_url}

        with pytest.raises(WebhookRejected) as rejected:
            await adapter.parse_webhook(replace(webhook, headers=headers))

    assert rejected.value.reason == "bad_signature"
    assert local.fetches == 0


async def test_the_sandbox_certificate_host_is_refused_outside_sandbox_mode(
    paypal: PayPalSandbox, http: httpx.AsyncClient, payment: Payment
) -> None:
    """Without sandbox mode, the sandbox's own certificate URL is not trusted."""
    reference = await payment.authorized(1000)
    webhook = await SandboxControl(paypal).webhook_about(reference)
    strict = PayPalAdapter(credentials(), base_url=paypal.url, clock=utc_now, http=http)
    before = paypal.request_count("certs")

    with pytest.raises(WebhookRejected) as rejected:
        await strict.parse_webhook(webhook)

    assert rejected.value.reason == "bad_signature"
    assert paypal.request_count("certs") == before


async def test_the_certificate_is_fetched_once_per_url(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """Two webhooks signed with one certificate fetch it once."""
    control = SandboxControl(paypal)
    before = paypal.request_count("certs")

    for _ in range(2):
        await adapter.parse_webhook(await control.webhook_about(await payment.authorized(1000)))

    assert paypal.request_count("certs") - before == 1


async def test_paypal_is_asked_when_the_certificate_cannot_be_fetched(
    paypal: PayPalSandbox, http: httpx.AsyncClient, payment: Payment
) -> None:
    """With the certificate unavailable, PayPal's verify endpoint decides, both ways."""
    reference = await payment.authorized(1000)
    control = SandboxControl(paypal)
    paypal.rotate_certificate()  # a certificate URL no adapter has cached
    genuine = await control.webhook_about(reference)
    forged = await control.webhook_about(reference, secret="WH-SOMEONE-ELSE")
    paypal.fail_next(503, times=2, target="certs")
    before = paypal.request_count("verify_webhook")
    adapter = adapter_for(paypal, http)

    notification = await adapter.parse_webhook(genuine)
    with pytest.raises(WebhookRejected) as rejected:
        await adapter.parse_webhook(forged)

    assert notification.reference == reference
    assert rejected.value.reason == "bad_signature"
    assert paypal.request_count("verify_webhook") - before == 2


async def test_a_webhook_without_a_configured_webhook_id_is_rejected(
    paypal: PayPalSandbox, http: httpx.AsyncClient, payment: Payment
) -> None:
    """An account without a webhook id cannot verify anything: every webhook is refused."""
    webhook = await SandboxControl(paypal).webhook_about(await payment.authorized(1000))
    adapter = adapter_for(paypal, http, credentials(webhook_id=None))

    with pytest.raises(WebhookRejected) as rejected:
        await adapter.parse_webhook(webhook)

    assert rejected.value.reason == "bad_signature"


async def test_capture_and_refund_webhooks_name_the_payment(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """Capture and refund events map to their kinds, with our payment id and the amount."""
    reference = await payment.authorized(1000)
    capture = await adapter.capture(payment.capture(reference, 1000))
    refund = await adapter.refund(payment.refund(reference, 250))
    control = SandboxControl(paypal)

    captured = await adapter.parse_webhook(await control.webhook_about(capture.reference))
    refunded = await adapter.parse_webhook(await control.webhook_about(refund.reference))

    assert (captured.kind, captured.authorization_reference) == ("captured", reference)
    assert (refunded.kind, refunded.reference) == ("refunded", refund.reference)
    assert captured.payment_id == refunded.payment_id == payment.payment_id
    assert refunded.amount == payment.money(250)


async def test_an_order_approval_webhook_says_the_payer_approved(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox
) -> None:
    """CHECKOUT.ORDER.APPROVED verifies and is ``approved``, about the waiting order."""
    paypal.set_auto_approve(on=False)
    waiting = await adapter.authorize(payment.authorization(1000))
    assert isinstance(waiting, ActionRequired)

    notification = await adapter.parse_webhook(
        await SandboxControl(paypal).webhook_about(waiting.reference)
    )

    assert (notification.kind, notification.vendor_type) == ("approved", "CHECKOUT.ORDER.APPROVED")
    assert notification.reference == waiting.reference
    assert notification.payment_id == payment.payment_id


def _receiver(received: "queue.Queue[WebhookRequest]") -> Starlette:
    async def health(_: Request) -> Response:
        return Response("ok")

    async def hook(request: Request) -> Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        received.put(WebhookRequest(headers, await request.body(), utc_now()))
        return Response(status_code=200)

    return Starlette(
        routes=[Route("/_sandbox/health", health), Route("/hooks", hook, methods=["POST"])]
    )


async def test_delivered_webhooks_verify(http: httpx.AsyncClient) -> None:
    """Events the sandbox posts to a registered URL verify and name the authorization."""
    received: queue.Queue[WebhookRequest] = queue.Queue()
    with (
        PayPalSandbox(clients={CLIENT_ID: SECRET}, auto_approve=True) as own,
        LoopbackServer(_receiver(received), name="paypal-webhook-receiver") as receiver,
    ):
        own.register_webhook(f"{receiver.url}/hooks", WEBHOOK_ID)
        adapter = adapter_for(own, http)
        payment = Payment(PortUnderTest(adapter, SandboxControl(own), payment_method_token=None))
        reference = await payment.authorized(1000)

        delivered = await asyncio.to_thread(received.get, timeout=10)
        notification = await adapter.parse_webhook(delivered)

    assert (notification.kind, notification.reference) == ("authorized", reference)
    assert notification.payment_id == payment.payment_id


# Reconciliation, capabilities, hygiene.


async def test_transactions_of_the_day_are_listed_over_every_page(
    paypal: PayPalSandbox, http: httpx.AsyncClient
) -> None:
    """The day's authorization, capture and refund lines come back, page after page."""
    paypal.add_client("paypal-report-client", "report-secret")
    adapter = adapter_for(paypal, http, credentials("paypal-report-client", "report-secret"))
    payment = Payment(PortUnderTest(adapter, SandboxControl(paypal), payment_method_token=None))
    started = utc_now()
    reference = await payment.authorized(1000)
    capture = await adapter.capture(payment.capture(reference, 1000))
    refund = await adapter.refund(payment.refund(reference, 300))
    with paypal.state.settings.lock:
        paypal.state.settings.max_page_size = 2
    days = sorted({started.date(), utc_now().date()})  # the test may straddle midnight

    lines = [line for day in days for line in await adapter.list_transactions(day)]

    by_kind = {line.kind: line for line in lines}
    assert len(lines) == 3
    assert (by_kind["charge"].reference, by_kind["charge"].amount) == (
        reference,
        payment.money(1000),
    )
    assert (by_kind["capture"].reference, by_kind["capture"].fee) == (
        capture.reference,
        payment.money(29),
    )
    assert (by_kind["refund"].reference, by_kind["refund"].amount) == (
        refund.reference,
        payment.money(300),
    )
    assert {line.payment_id for line in lines} == {payment.payment_id}
    assert {line.status for line in lines} == {"succeeded"}


def test_capabilities_name_paypal_and_its_currencies(adapter: PayPalAdapter) -> None:
    """PayPal takes its wallet and cards in its currencies, with manual and partial capture."""
    caps = adapter.capabilities

    assert {"USD", "EUR", "GBP", "CAD", "AUD", "JPY"} <= caps.currencies
    assert not {"HUF", "AFN"} & caps.currencies
    assert caps.payment_method_types == {"paypal", "card"}
    assert caps.manual_capture
    assert caps.partial_capture
    assert caps.refunds
    assert caps.void


def test_long_keys_are_hashed_to_paypals_limit() -> None:
    """A derived request id longer than PayPal allows is replaced by a stable hash of it."""
    key = "tnt_" + "x" * 120

    assert request_id("tnt_a:pay_b:capture:1") == "tnt_a:pay_b:capture:1"
    assert request_id(key, "1") == request_id(key, "1")
    assert request_id(key, "1") != request_id(key, "2")
    assert len(request_id(key, "1")) <= REQUEST_ID_MAX


async def test_no_secret_token_or_webhook_id_is_logged_or_raised(
    paypal: PayPalSandbox, payment: Payment
) -> None:
    """Logs and errors of a refresh, a refusal and a rejected webhook hold no credential."""
    tokens: set[str] = set()

    async def note_token(request: httpx.Request) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme == "Bearer":
            tokens.add(value)

    errors: list[Exception] = []
    async with httpx.AsyncClient(event_hooks={"request": [note_token]}) as http:
        adapter = adapter_for(paypal, http)
        payment = replace(payment, vendor=replace(payment.vendor, port=adapter))
        with structlog.testing.capture_logs() as logs:
            reference = await payment.authorized(1000)
            paypal.expire_tokens()
            paypal.fail_next(401, times=2, target="capture")
            try:
                await adapter.capture(payment.capture(reference, 1000))
            except DeclinedError as exc:
                errors.append(exc)
            webhook = await SandboxControl(paypal).webhook_about(reference, secret="WH-OTHER")
            try:
                await adapter.parse_webhook(replace(webhook, body=webhook.body + b" "))
            except WebhookRejected as exc:
                errors.append(exc)

    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    text = repr(logs) + " ".join(f"{e!s} {e!r}" for e in errors)
    assert len(errors) == 2
    assert len(tokens) >= 2
    assert logs
    for secret in (SECRET, basic, WEBHOOK_ID, *tokens):
        assert secret not in text


async def test_faults_and_settings_can_be_set_over_http(
    adapter: PayPalAdapter, payment: Payment, paypal: PayPalSandbox, http: httpx.AsyncClient
) -> None:
    """A developer arms a 503 and turns auto-approval off through ``/_sandbox``."""
    reference = await payment.authorized(1000)
    armed = await http.post(
        f"{paypal.url}/_sandbox/faults", json={"kind": "status", "status": 503, "target": "capture"}
    )
    bad = await http.post(f"{paypal.url}/_sandbox/faults", json={"kind": "meteor"})
    with pytest.raises(RetryableError):
        await adapter.capture(payment.capture(reference, 1000))
    settings = await http.post(f"{paypal.url}/_sandbox/settings", json={"auto_approve": False})
    waiting = await adapter.authorize(payment.authorization(1000))

    assert (armed.status_code, bad.status_code, settings.status_code) == (204, 400, 204)
    assert bad.json()["details"][0]["issue"] == "INVALID_PARAMETER_VALUE"
    assert isinstance(waiting, ActionRequired)
