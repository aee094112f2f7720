"""``HesabPayAdapter`` against hesabpay-mock over real HTTP: the port contract, then HesabPay's own.

HesabPay charges at checkout, so a contract test that expects an authorization to be
approved on the spot is overridden here with what HesabPay does instead: the checkout is
opened (``ActionRequired``), the customer pays it, the webhook settles it. The contract's
``settled_reference`` is met the same way (``PaidAtCheckout``). Contract tests for
capabilities HesabPay lacks are overridden where HesabPay has a defined answer (partial
capture, void, refund) and otherwise skipped by the contract.
"""

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import pytest
import structlog
from pydantic import SecretStr

from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    RetryableError,
    TryNextError,
    WebhookRejected,
)
from processors.fake_ledger import default_capabilities
from processors.hesabpay import HESABPAY_CAPABILITIES, HesabPayAdapter
from processors.hesabpay_sessions import InMemoryCheckoutSessions, InMemoryReplayStore
from processors.hesabpay_webhooks import read
from processors.port import (
    ActionRequired,
    Approved,
    Failed,
    NotFound,
    OperationKind,
    VendorCredentials,
    WebhookRequest,
)
from sandbox.hesabpay_mock import HesabPayMock
from schemas.events import FailureCode
from schemas.money import Money
from schemas.processors import Processor
from tests.contracts.payment_port import Payment, PaymentPortContract, PortUnderTest
from tests.integration.hesabpay_support import (
    API_KEY,
    CREATE_PATH,
    MERCHANT,
    MOCK_SECRET,
    STATUS_CODES,
    VERIFY_PATH,
    HesabPayControl,
    WebhookEndpoint,
    credentials,
    utc_now,
)

AUTHORIZE, CAPTURE, VOID = OperationKind.AUTHORIZE, OperationKind.CAPTURE, OperationKind.VOID


@dataclass(frozen=True)
class Stores:
    """The adapter's own records, shared by the test's adapter and the webhook endpoint's."""

    sessions: InMemoryCheckoutSessions
    replays: InMemoryReplayStore


@pytest.fixture(scope="module")
def stores() -> Stores:
    """Empty stores for this module's tests (each test uses its own payment ids)."""
    return Stores(InMemoryCheckoutSessions(), InMemoryReplayStore())


@pytest.fixture(scope="module")
def mock() -> Iterator[HesabPayMock]:
    """hesabpay-mock on loopback, retrying webhook deliveries quickly."""
    with HesabPayMock(signing_secret=MOCK_SECRET, delivery_delays=(0.05, 0.1, 0.2)) as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(mock: HesabPayMock, stores: Stores) -> Iterator[WebhookEndpoint]:
    """The webhook endpoint the mock delivers to, registered as the merchant's."""
    port = HesabPayAdapter(
        credentials,
        base_url=mock.url,
        clock=utc_now,
        sessions=stores.sessions,
        replays=stores.replays,
    )
    with WebhookEndpoint(port) as server:
        account = {"merchant_id": MERCHANT, "api_key": API_KEY, "webhook_url": server.webhook_url}
        httpx.post(f"{mock.url}/_sandbox/accounts", json=account).raise_for_status()
        yield server


@pytest.fixture(scope="module")
def control(mock: HesabPayMock, endpoint: WebhookEndpoint) -> Iterator[HesabPayControl]:
    """The mock's controls."""
    with HesabPayControl(mock.url, endpoint) as controls:
        yield controls


@pytest.fixture(autouse=True)
def _disarmed(control: HesabPayControl) -> Iterator[None]:
    """No fault armed by a test outlives it."""
    yield
    control.clear()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The adapter's HTTP client, as the composition root would pass it."""
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def adapter(mock: HesabPayMock, stores: Stores, http: httpx.AsyncClient) -> HesabPayAdapter:
    """The adapter under test, with a short timeout so lost answers are quick to see."""
    return HesabPayAdapter(
        credentials,
        base_url=mock.url,
        clock=utc_now,
        sessions=stores.sessions,
        replays=stores.replays,
        http=http,
        timeout_s=1.0,
    )


@pytest.fixture
def vendor(adapter: HesabPayAdapter, control: HesabPayControl) -> PortUnderTest:
    """The adapter and the mock's controls, for the contract."""
    return PortUnderTest(adapter, control, account=MERCHANT, payment_method_token=None)


class PaidAtCheckout(Payment):
    """A contract payment whose authorizations are settled the HesabPay way: at checkout."""

    async def settled_reference(self, minor: int = 1000) -> str:
        """Open a checkout and pay it as the customer would; the checkout's reference."""
        return (await self.paid(minor)).reference

    async def captured(self, minor: int = 1000) -> str:
        """A paid checkout's reference (HesabPay refuses every refund anyway)."""
        return await self.settled_reference(minor)

    async def opened(self, minor: int = 1000) -> ActionRequired:
        """Open a checkout."""
        result = await self.port.authorize(self.authorization(minor, capture="automatic"))
        assert isinstance(result, ActionRequired)
        return result

    async def paid(self, minor: int = 1000) -> ActionRequired:
        """Open a checkout and pay it; the endpoint accepted the webhook."""
        opened = await self.opened(minor)
        handled = await self.control.pay(opened.redirect_url)
        assert handled.status == 200
        return opened

    @property
    def control(self) -> HesabPayControl:
        """The mock's controls."""
        control = self.vendor.control
        assert isinstance(control, HesabPayControl)
        return control


@pytest.fixture
def payment(vendor: PortUnderTest) -> PaidAtCheckout:
    """A payment of this test's own."""
    return PaidAtCheckout(vendor)


class TestHesabPayAdapter(PaymentPortContract):
    """The adapter keeps the port contract as far as HesabPay's hosted checkout allows."""

    @pytest.fixture
    def payment(self, vendor: PortUnderTest) -> Payment:
        """A payment settled at checkout."""
        return PaidAtCheckout(vendor)

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            (lambda body: {**body, "amount": "999.00"}, "mismatch"),
            (lambda body: {**body, "memo": "hp_x", "items": [{"id": "hp_x"}]}, "mismatch"),
            (lambda body: {**body, "signature": "0" * 64}, "bad_signature"),
            (lambda body: {**body, "timestamp": str(int(body["timestamp"]) - 1)}, "bad_signature"),
            (lambda body: {**body, "success": False}, "malformed"),
        ],
        ids=["amount", "checkout", "signature", "timestamp", "success-flag"],
    )
    async def test_a_tampered_body_is_rejected(  # type: ignore[override]  # parametrized: one more argument
        self, payment: Payment, change: Callable[[dict[str, str]], dict[str, object]], reason: str
    ) -> None:
        """Each field the adapter relies on is checked, though the signature covers only two.

        HesabPay signs the transaction id and the timestamp; the amount and the checkout
        are checked against our stored checkout instead. A changed transaction id is caught
        by the replay store (``test_a_signature_reused_for_another_transaction_is_refused``).
        """
        assert isinstance(payment, PaidAtCheckout)
        opened = await payment.paid()
        webhook = await payment.control.webhook(payment.control.latest(opened.reference))
        tampered = json.dumps(change(json.loads(webhook.body))).encode()

        with pytest.raises(WebhookRejected) as rejected:
            await payment.port.parse_webhook(replace(webhook, body=tampered))

        assert rejected.value.reason == reason

    async def test_authorization_reserves_the_amount(self, payment: Payment) -> None:
        """An authorization opens a checkout for the amount; once paid it is captured."""
        assert isinstance(payment, PaidAtCheckout)
        request = payment.authorization(1000)
        opened = await payment.port.authorize(request)
        assert isinstance(opened, ActionRequired)
        assert opened.action == "redirect"
        [row] = payment.control.sessions(opened.reference)
        assert (row["amount"], row["currency"]) == ("10.00", "AFN")

        await payment.control.pay(opened.redirect_url)
        found = await payment.port.inquire(
            payment.inquiry(AUTHORIZE, request.idempotency_key, None)
        )

        assert found == Approved(opened.reference, payment.money(1000), captured=True)

    @pytest.mark.parametrize("mode", ["manual", "automatic"])
    async def test_automatic_capture_captures_at_once(  # type: ignore[override]  # parametrized: one more argument
        self, payment: Payment, mode: str
    ) -> None:
        """Whatever the capture mode, the checkout takes the money; capture names the payment."""
        assert isinstance(payment, PaidAtCheckout)
        request = payment.authorization(1000, capture="manual" if mode == "manual" else "automatic")
        opened = await payment.port.authorize(request)
        assert isinstance(opened, ActionRequired)
        handled = await payment.control.pay(opened.redirect_url)

        captured = await payment.port.capture(payment.capture(opened.reference, 1000))

        assert handled.notification is not None
        assert handled.notification.kind == "captured"
        assert captured == Approved(handled.notification.event_id, payment.money(1000))

    async def test_partial_then_final_capture_takes_the_whole_amount(
        self,
        vendor: PortUnderTest,  # noqa: ARG002 (the contract's signature)
        payment: Payment,
    ) -> None:
        """A partial capture is refused as HesabPay cannot split; the whole amount is taken."""
        assert isinstance(payment, PaidAtCheckout)
        reference = await payment.settled_reference(1000)

        with pytest.raises(DeclinedError) as refused:
            await payment.port.capture(payment.capture(reference, 400, final=False))
        whole = await payment.port.capture(payment.capture(reference, 1000))

        assert (refused.value.code, refused.value.vendor_code) == (
            "invalid_request",
            "partial_capture_not_supported",
        )
        assert whole.amount == payment.money(1000)

    async def test_capture_beyond_the_authorization_is_declined(
        self,
        vendor: PortUnderTest,  # noqa: ARG002 (the contract's signature)
        payment: Payment,
    ) -> None:
        """Capturing more than the customer paid is refused as ``amount_too_large``."""
        reference = await payment.settled_reference(1000)

        with pytest.raises(DeclinedError) as refused:
            await payment.port.capture(payment.capture(reference, 1001))

        assert refused.value.code == "amount_too_large"

    async def test_void_releases_the_authorization(
        self,
        vendor: PortUnderTest,  # noqa: ARG002 (the contract's signature)
        payment: Payment,
    ) -> None:
        """Voiding an unpaid checkout abandons it for nothing; it can no longer be captured."""
        assert isinstance(payment, PaidAtCheckout)
        opened = await payment.opened(1000)
        request = payment.void(opened.reference)

        voided = await payment.port.void(request)
        found = await payment.port.inquire(
            payment.inquiry(VOID, request.idempotency_key, opened.reference)
        )

        assert voided == Approved(opened.reference, Money.zero("AFN"))
        assert found == voided
        with pytest.raises(DeclinedError) as refused:
            await payment.port.capture(payment.capture(opened.reference, 1000))
        assert refused.value.code == "already_settled"

    async def test_partial_refunds_add_up_to_the_captured_amount(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """Every refund is refused as not supported, without a call to HesabPay."""
        assert isinstance(vendor.control, HesabPayControl)
        reference = await payment.captured(1000)
        calls = vendor.control.api_requests()

        with pytest.raises(DeclinedError) as refused:
            await payment.port.refund(payment.refund(reference, 300))

        assert (refused.value.code, refused.value.vendor_code) == (
            "invalid_request",
            "refund_not_supported",
        )
        assert not isinstance(refused.value, TryNextError)
        assert vendor.control.api_requests() == calls

    async def test_replayed_capture_applies_once(
        self,
        vendor: PortUnderTest,  # noqa: ARG002 (the contract's signature)
        payment: Payment,
    ) -> None:
        """A capture sent twice names the same payment both times."""
        request = payment.capture(await payment.settled_reference(1000), 1000)

        first = await payment.port.capture(request)
        again = await payment.port.capture(request)

        assert again == first

    async def test_replayed_void_returns_the_first_result(
        self,
        vendor: PortUnderTest,  # noqa: ARG002 (the contract's signature)
        payment: Payment,
    ) -> None:
        """A void sent twice succeeds both times with the same reference."""
        assert isinstance(payment, PaidAtCheckout)
        request = payment.void((await payment.opened(1000)).reference)

        first = await payment.port.void(request)
        again = await payment.port.void(request)

        assert again == first

    @pytest.mark.parametrize("code", sorted(STATUS_CODES))
    async def test_decline_raises_declined_error_with_its_code(
        self, vendor: PortUnderTest, payment: Payment, code: FailureCode
    ) -> None:
        """A refused create-session raises a terminal ``DeclinedError`` with the mapped code."""
        vendor.control.decline_next(AUTHORIZE, code)

        with pytest.raises(DeclinedError) as refused:
            await payment.port.authorize(payment.authorization(1000))

        assert refused.value.code == code
        assert refused.value.vendor_code == f"status_code_{STATUS_CODES[code]}"
        assert not isinstance(refused.value, TryNextError)

    async def test_5xx_is_retryable_and_the_same_key_then_succeeds(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A 5xx raises ``RetryableError``; the same request then opens exactly one checkout."""
        assert isinstance(payment, PaidAtCheckout)
        vendor.control.fail_next_5xx(AUTHORIZE)
        request = payment.authorization(1000)

        with pytest.raises(RetryableError):
            await payment.port.authorize(request)
        result = await payment.port.authorize(request)

        assert isinstance(result, ActionRequired)
        assert len(payment.control.sessions(result.reference)) == 1

    async def test_timeout_after_apply_is_in_doubt_until_inquired(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A lost answer is in doubt; nobody got its URL, so a retry opens one a payment matches."""
        assert isinstance(payment, PaidAtCheckout)
        vendor.control.timeout_after_apply_next(AUTHORIZE)
        request = payment.authorization(1000)

        with pytest.raises(InDoubtError):
            await payment.port.authorize(request)
        inquiry = payment.inquiry(AUTHORIZE, request.idempotency_key, None)
        found = await payment.port.inquire(inquiry)
        retried = await payment.port.authorize(request)
        assert isinstance(retried, ActionRequired)
        await payment.control.pay(retried.redirect_url)

        assert isinstance(found, NotFound)
        assert len(payment.control.sessions(retried.reference)) == 2
        assert await payment.port.inquire(inquiry) == Approved(
            retried.reference, payment.money(1000), captured=True
        )

    async def test_timeout_before_apply_leaves_no_trace(
        self, vendor: PortUnderTest, payment: Payment
    ) -> None:
        """A request lost on the way is unknown to an inquiry, and its key still works."""
        assert isinstance(payment, PaidAtCheckout)
        vendor.control.timeout_before_apply_next(AUTHORIZE)
        request = payment.authorization(1000)

        with pytest.raises(InDoubtError):
            await payment.port.authorize(request)
        found = await payment.port.inquire(
            payment.inquiry(AUTHORIZE, request.idempotency_key, None)
        )
        retried = await payment.port.authorize(request)

        assert isinstance(found, NotFound)
        assert isinstance(retried, ActionRequired)
        assert len(payment.control.sessions(retried.reference)) == 1


def test_capabilities_are_those_of_the_hesabpay_fake() -> None:
    """The adapter claims what the fake HesabPay claims: an AFN wallet, charged at once."""
    assert default_capabilities(Processor.HESABPAY) == HESABPAY_CAPABILITIES


async def test_duplicate_authorizations_with_one_key_create_one_checkout(
    payment: PaidAtCheckout, mock: HesabPayMock
) -> None:
    """Three sends of one authorization reach HesabPay once and answer one checkout."""
    request = payment.authorization(1500)
    calls = mock.faults.request_count

    answers = [await payment.port.authorize(request) for _ in range(3)]

    assert answers[0] == answers[1] == answers[2]
    assert mock.faults.request_count == calls + 1
    [row] = payment.control.sessions(answers[0].reference)
    assert row["items"] == [
        {"id": answers[0].reference, "name": "Booking BK-CONTRACT", "price": "15.00"}
    ]


async def test_a_redelivered_webhook_parses_to_the_same_event(payment: PaidAtCheckout) -> None:
    """The same webhook again (HesabPay retrying after a 503) is the same event, not refused.

    The inbox stores one row per event id, so a redelivery is stored once; refusing it
    would lose a webhook whose first delivery could not be stored.
    """
    opened = await payment.paid()
    webhook = await payment.control.webhook(payment.control.latest(opened.reference))
    first = await payment.port.parse_webhook(webhook)

    again = await payment.port.parse_webhook(webhook)

    assert again == first


async def test_a_signature_reused_for_another_transaction_is_refused(
    payment: PaidAtCheckout,
) -> None:
    """A seen signature on a body naming another transaction is refused as ``replayed``."""
    opened = await payment.paid()
    webhook = await payment.control.webhook(payment.control.latest(opened.reference))
    await payment.port.parse_webhook(webhook)
    forged = {**json.loads(webhook.body), "transaction_id": "hp_txn_forged"}

    with pytest.raises(WebhookRejected) as rejected:
        await payment.port.parse_webhook(replace(webhook, body=json.dumps(forged).encode()))

    assert rejected.value.reason == "replayed"


async def test_another_secret_fails_hesabpays_verification(payment: PaidAtCheckout) -> None:
    """A webhook HesabPay did not sign is refused as ``bad_signature`` by the remote check."""
    opened = await payment.paid()
    session = payment.control.latest(opened.reference)
    webhook = await payment.control.webhook(session, secret="someone-else")

    with pytest.raises(WebhookRejected) as rejected:
        await payment.port.parse_webhook(webhook)

    assert rejected.value.reason == "bad_signature"


async def test_a_payment_for_a_checkout_we_did_not_open_is_a_mismatch(
    payment: PaidAtCheckout, mock: HesabPayMock
) -> None:
    """A genuine webhook about a checkout the gateway never opened is refused as ``mismatch``."""
    item = {"id": f"dashboard-{payment.payment_id}", "name": "Walk-in", "price": "10.00"}
    headers = {"Authorization": f"API-KEY {API_KEY}"}
    async with httpx.AsyncClient() as merchant:
        created = await merchant.post(
            mock.url + CREATE_PATH, json={"items": [item]}, headers=headers
        )
    handled = await payment.control.pay(created.json()["url"])
    webhook = await payment.control.webhook(created.json()["session_id"])

    with pytest.raises(WebhookRejected) as rejected:
        await payment.port.parse_webhook(webhook)

    assert (handled.status, handled.reason) == (400, "mismatch")
    assert rejected.value.reason == "mismatch"


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("5xx", {}),
        ("429", {"retry_after": 7}),
        ("html", {}),
        ("truncated_json", {}),
        ("timeout_before_apply", {}),
        ("refuse", {"status_code": 13, "http_status": 401}),
    ],
)
async def test_verification_without_a_verdict_is_retryable(
    payment: PaidAtCheckout, fault: str, params: dict[str, int]
) -> None:
    """When HesabPay cannot confirm a signature, the webhook is retryable and nothing is kept."""
    opened = await payment.paid()
    webhook = await payment.control.webhook(payment.control.latest(opened.reference))
    payment.control.arm(fault, VERIFY_PATH, **params)

    with pytest.raises(RetryableError) as unverified:
        await payment.port.parse_webhook(webhook)
    again = await payment.port.parse_webhook(webhook)

    assert again.kind == "captured"
    if fault == "429":
        assert unverified.value.retry_after == 7
    if fault == "refuse":
        assert unverified.value.code == "not_configured"


async def test_an_unreachable_hesabpay_is_retryable(
    payment: PaidAtCheckout, stores: Stores
) -> None:
    """Refused connections make authorization and verification retryable; nothing was sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    opened = await payment.paid()
    webhook = await payment.control.webhook(payment.control.latest(opened.reference))
    down = HesabPayAdapter(
        credentials,
        base_url=closed,
        clock=utc_now,
        sessions=stores.sessions,
        replays=stores.replays,
    )

    with pytest.raises(RetryableError) as unsent:
        await down.authorize(payment.authorization(1000))
    with pytest.raises(RetryableError) as unverified:
        await down.parse_webhook(webhook)

    assert (unsent.value.vendor_code, unsent.value.sent) == ("connect_error", False)
    assert unverified.value.vendor_code == "connect_error"


@pytest.mark.parametrize(
    ("status_code", "code"),
    [(11, "insufficient_funds"), (14, "authentication_failed"), (15, "card_declined")],
)
async def test_a_failed_checkout_is_reported_with_its_code(
    payment: PaidAtCheckout, status_code: int, code: FailureCode
) -> None:
    """A failure webhook fails the authorization; inquiry and replay give its failure code."""
    request = payment.authorization(1000)
    opened = await payment.port.authorize(request)
    assert isinstance(opened, ActionRequired)
    session = payment.control.latest(opened.reference)

    handled = await payment.control.complete(session, "fail", status_code)
    found = await payment.port.inquire(payment.inquiry(AUTHORIZE, request.idempotency_key, None))

    assert handled.notification is not None
    assert handled.notification.kind == "authorization_failed"
    assert handled.notification.payment_id == payment.payment_id
    assert found == Failed(code, f"status_code_{status_code}", "the checkout is failed")
    with pytest.raises(DeclinedError) as replayed:
        await payment.port.authorize(request)
    assert replayed.value.code == code


async def test_a_failure_after_a_success_does_not_downgrade(payment: PaidAtCheckout) -> None:
    """A failure webhook arriving after the payment is ignored; the payment stays captured."""
    request = payment.authorization(1000)
    opened = await payment.port.authorize(request)
    assert isinstance(opened, ActionRequired)
    session = payment.control.latest(opened.reference)
    failed = await payment.control.complete(session, "fail", 11)
    await payment.control.complete(session, "pay")
    late = await payment.control.webhook(session, transaction_id=failed.transaction_id)

    notification = await payment.port.parse_webhook(late)

    assert notification.kind == "ignored"
    found = await payment.port.inquire(payment.inquiry(AUTHORIZE, request.idempotency_key, None))
    assert found == Approved(opened.reference, payment.money(1000), captured=True)


async def test_a_payment_after_a_void_is_still_reported(payment: PaidAtCheckout) -> None:
    """HesabPay cannot cancel a checkout: paid after the void, it is reported as captured."""
    opened = await payment.opened(1000)
    await payment.port.void(payment.void(opened.reference))

    handled = await payment.control.pay(opened.redirect_url)

    assert handled.notification is not None
    assert handled.notification.kind == "captured"
    assert handled.notification.authorization_reference == opened.reference
    with pytest.raises(DeclinedError) as refused:
        await payment.port.void(payment.void(opened.reference))
    assert refused.value.code == "already_settled"


@pytest.mark.parametrize(
    ("fault", "params", "error", "vendor_code", "context"),
    [
        ("html", {}, InDoubtError, "malformed_response", "HTTP 200, text/html"),
        ("truncated_json", {}, InDoubtError, "malformed_response", "HTTP 200, application/json"),
        ("html", {"http_status": 502}, RetryableError, "http_5xx", "HTTP 502, text/html"),
        (
            "refuse",
            {"status_code": 99, "http_status": 200},
            DeclinedError,
            "status_code_99",
            "HTTP 200",
        ),
        ("429", {"retry_after": 3}, RetryableError, "http_429", "HTTP 429"),
    ],
)
async def test_an_unreadable_or_unknown_answer_is_a_processor_error_with_context(  # noqa: PLR0913, PLR0917 (a parameter per column of the table)
    payment: PaidAtCheckout,
    fault: str,
    params: dict[str, int],
    error: type[ProcessorError],
    vendor_code: str,
    context: str,
) -> None:
    """HTML, truncated JSON and unknown status codes become typed errors naming the answer."""
    payment.control.arm(fault, **params)

    with pytest.raises(error) as raised:
        await payment.port.authorize(payment.authorization(1000))

    assert type(raised.value) is error
    assert raised.value.vendor_code == vendor_code
    assert "create-session" in raised.value.message
    assert context in raised.value.message


async def test_a_wrong_api_key_is_not_configured(
    mock: HesabPayMock, stores: Stores, payment: PaidAtCheckout
) -> None:
    """HesabPay refusing the API key is a terminal ``not_configured`` that does not repeat it."""

    async def wrong() -> VendorCredentials:
        return VendorCredentials(SecretStr("hp_wrong_key_0"), None, MERCHANT)

    port = HesabPayAdapter(
        wrong, base_url=mock.url, clock=utc_now, sessions=stores.sessions, replays=stores.replays
    )

    with pytest.raises(DeclinedError) as refused:
        await port.authorize(payment.authorization(1000))

    assert (refused.value.code, refused.value.vendor_code) == ("not_configured", "status_code_13")
    assert "hp_wrong_key_0" not in str(refused.value)


async def test_an_unsupported_currency_is_refused_without_a_call(
    payment: PaidAtCheckout, mock: HesabPayMock
) -> None:
    """A payment in dollars may go to another processor; HesabPay is not asked."""
    calls = mock.faults.request_count
    request = replace(payment.authorization(1000), amount=Money(minor=1000, currency="USD"))

    with pytest.raises(TryNextError) as refused:
        await payment.port.authorize(request)

    assert refused.value.code == "currency_not_supported"
    assert mock.faults.request_count == calls


_FIELDS = {"status_code": 10, "success": True, "transaction_id": "t", "amount": "1.00"}
_SIGNED = {**_FIELDS, "signature": "ab", "timestamp": "1"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<html>not json</html>", "malformed"),
        (json.dumps({"status_code": 10}).encode(), "malformed"),
        (json.dumps({**_SIGNED, "timestamp": "soon"}).encode(), "malformed"),
        (json.dumps({**_SIGNED, "email": "4242424242424242"}).encode(), "malformed"),
        (json.dumps(_SIGNED).encode(), "stale"),
    ],
)
async def test_a_body_that_is_not_a_fresh_webhook_is_refused_without_a_call(
    adapter: HesabPayAdapter, mock: HesabPayMock, body: bytes, reason: str
) -> None:
    """Garbage, missing fields, a card number or an old timestamp are refused without a call."""
    calls = mock.faults.request_count

    with pytest.raises(WebhookRejected) as rejected:
        await adapter.parse_webhook(WebhookRequest({}, body, utc_now()))

    assert rejected.value.reason == reason
    assert mock.faults.request_count == calls


def test_hex_identifiers_are_not_mistaken_for_card_numbers() -> None:
    """A signature or transaction id whose digits pass the Luhn check is not card data."""
    pan_like = "4242424242424242"
    body = {**_SIGNED, "signature": pan_like + "a" * 48, "transaction_id": pan_like + "f"}

    webhook = read(json.dumps(body).encode())

    assert webhook.signature.startswith(pan_like)


async def test_the_days_transactions_are_the_verified_payments(payment: PaidAtCheckout) -> None:
    """Reconciliation lists each payment a verified webhook reported, on its day only."""
    opened = await payment.opened(2500)
    handled = await payment.control.pay(opened.redirect_url)
    assert handled.notification is not None
    today = handled.notification.occurred_at.date()

    listed = await payment.port.list_transactions(today)
    earlier = await payment.port.list_transactions(today - timedelta(days=1))

    mine = [line for line in listed if line.payment_id == payment.payment_id]
    assert [(line.reference, line.amount, line.kind) for line in mine] == [
        (handled.notification.event_id, payment.money(2500), "charge")
    ]
    assert all(line.payment_id != payment.payment_id for line in earlier)


async def test_the_mock_redelivers_a_webhook_the_endpoint_failed(
    payment: PaidAtCheckout, endpoint: WebhookEndpoint
) -> None:
    """A delivery the endpoint answered 503 is sent again, and then accepted."""
    opened = await payment.opened()
    endpoint.refuse_next(1)

    handled = await payment.control.complete(payment.control.latest(opened.reference), "pay")
    accepted = await asyncio.to_thread(endpoint.wait_for, str(handled.transaction_id), 200)

    assert handled.status == 503
    assert [h.status for h in endpoint.handled_about(str(handled.transaction_id))] == [503, 200]
    assert accepted.notification is not None
    assert accepted.notification.kind == "captured"


@pytest.mark.parametrize(
    ("headers", "body", "status", "status_code"),
    [
        ({}, {"items": [{"id": "a", "name": "Room", "price": "1.00"}]}, 401, 13),
        (
            {"Authorization": "API-KEY nope"},
            {"items": [{"id": "a", "name": "Room", "price": "1.00"}]},
            401,
            13,
        ),
        (None, {"items": []}, 400, 12),
        (None, {"items": [{"id": "a", "name": "Room", "price": 1.5}]}, 400, 12),
        (None, {"items": [{"id": "a", "name": "Room", "price": "1.005"}]}, 400, 12),
        (None, {"items": [{"id": "a", "name": "Room", "price": "0.00"}]}, 400, 12),
    ],
)
def test_the_mock_refuses_what_hesabpay_refuses(  # noqa: PLR0913, PLR0917 (fixtures and table columns)
    mock: HesabPayMock,
    endpoint: WebhookEndpoint,  # noqa: ARG001 (registers the merchant's API key)
    headers: dict[str, str] | None,
    body: dict[str, object],
    status: int,
    status_code: int,
) -> None:
    """Unknown API keys, empty checkouts and prices that are not AFN decimal strings are refused."""
    sent = {"Authorization": f"API-KEY {API_KEY}"} if headers is None else headers

    answer = httpx.post(mock.url + CREATE_PATH, json=body, headers=sent)

    assert answer.status_code == status
    assert answer.json()["status_code"] == status_code
    assert answer.json()["success"] is False


async def test_the_customer_pays_on_the_checkout_page(
    payment: PaidAtCheckout, endpoint: WebhookEndpoint
) -> None:
    """The checkout page shows the amount; paying redirects to the hotel and settles the payment."""
    request = payment.authorization(4200)
    opened = await payment.port.authorize(request)
    assert isinstance(opened, ActionRequired)

    async with httpx.AsyncClient() as browser:
        page = await browser.get(opened.redirect_url)
        paid = await browser.post(opened.redirect_url + "/pay")
    [tid] = payment.control.transaction_ids(opened.reference)
    await asyncio.to_thread(endpoint.wait_for, tid, 200)

    assert "42.00 AFN" in page.text
    assert (paid.status_code, paid.headers["location"]) == (303, "https://hotel.invalid/return")
    found = await payment.port.inquire(payment.inquiry(AUTHORIZE, request.idempotency_key, None))
    assert isinstance(found, Approved)


async def test_no_secret_reaches_logs_or_errors(payment: PaidAtCheckout) -> None:
    """Neither the API key nor the mock's signing secret appears in a log line or an error."""
    opened = await payment.paid()
    webhook = await payment.control.webhook(payment.control.latest(opened.reference))
    errors: list[Exception] = []
    with structlog.testing.capture_logs() as logs:
        for fault in ("5xx", "html", "refuse"):
            payment.control.arm(fault, status_code=13, http_status=401)
            try:
                await payment.port.authorize(payment.authorization(1000))
            except ProcessorError as exc:
                errors.append(exc)
        payment.control.arm("5xx", VERIFY_PATH)
        try:
            await payment.port.parse_webhook(webhook)
        except RetryableError as exc:
            errors.append(exc)
        await payment.port.parse_webhook(webhook)
        forged = {**json.loads(webhook.body), "transaction_id": "hp_txn_forged"}
        try:
            await payment.port.parse_webhook(replace(webhook, body=json.dumps(forged).encode()))
        except WebhookRejected as exc:
            errors.append(exc)

    assert len(errors) == 5
    assert logs
    text = repr(logs) + "".join(f"{exc!s}{exc!r}" for exc in errors)
    assert API_KEY not in text
    assert MOCK_SECRET not in text
