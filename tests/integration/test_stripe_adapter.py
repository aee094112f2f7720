"""``StripeAdapter`` against the fake Stripe over real HTTP, through the official SDK.

The port contract first, then what is Stripe's own: Connect, idempotency, the vendor's
failures and malformed answers, webhooks (the VENDORS.md test vector, deliveries), the
daily ledger, and that no secret reaches a log line or an exception.
"""

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
import structlog

from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    RetryableError,
    TryNextError,
    WebhookRejected,
)
from processors.port import (
    ActionRequired,
    Approved,
    Failed,
    OperationKind,
    OperationResult,
    StillPending,
    WebhookRequest,
)
from processors.stripe import StripeAdapter
from sandbox.stripe_api import FakeStripe
from schemas.money import Money
from tests.contracts.payment_port import Payment, PaymentPortContract, PortUnderTest
from tests.integration.stripe_support import (
    ACCOUNT,
    API_KEY,
    WEBHOOK_SECRET,
    SandboxControl,
    WebhookReceiver,
    adapter_for,
    credentials_for,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    """One fake Stripe on loopback for this module, signing with the tenant's secret."""
    with FakeStripe(api_keys=(API_KEY,), webhook_secret=WEBHOOK_SECRET) as sandbox:
        yield sandbox


@pytest.fixture
async def adapter(fake: FakeStripe) -> AsyncIterator[StripeAdapter]:
    """An adapter for the contract's Connect account; faults are cleared afterwards."""
    port = adapter_for(fake)
    yield port
    await port.aclose()
    fake.clear_faults()
    fake.configure_webhooks(None)


@pytest.fixture
def payment(adapter: StripeAdapter, fake: FakeStripe) -> Payment:
    """A payment of this test's own at the fake Stripe."""
    return Payment(PortUnderTest(adapter, SandboxControl(fake), ACCOUNT, "pm_card_visa"))


class TestStripeAdapter(PaymentPortContract):
    """The Stripe adapter keeps the port contract against the sandbox."""

    @pytest.fixture
    def vendor(self, adapter: StripeAdapter, fake: FakeStripe) -> PortUnderTest:
        """The adapter, with the sandbox's controls and its test card."""
        return PortUnderTest(adapter, SandboxControl(fake), ACCOUNT, "pm_card_visa")


def _requests_with_key(fake: FakeStripe, key: str) -> list[tuple[str | None, str | None]]:
    return [(r.account, r.idempotency_key) for r in fake.requests if r.idempotency_key == key]


async def test_posts_carry_our_key_and_the_connect_account(
    fake: FakeStripe, payment: Payment
) -> None:
    """Every POST carries the request's own idempotency key and the tenant's Stripe-Account."""
    request = payment.authorization(1000)

    reference = await payment.port.authorize(request)

    assert isinstance(reference, Approved)
    assert _requests_with_key(fake, request.idempotency_key) == [(ACCOUNT, request.idempotency_key)]


async def test_objects_stay_in_their_connected_account(fake: FakeStripe, payment: Payment) -> None:
    """Another connected account cannot see the tenant's PaymentIntent."""
    reference = await payment.authorized(1000)
    other = adapter_for(fake, f"acct_other{uuid.uuid4().hex[:8]}")

    with pytest.raises(DeclinedError) as refused:
        await other.capture(replace(payment.capture(reference, 1000), account="acct_other"))
    await other.aclose()

    assert (refused.value.code, refused.value.vendor_code) == (
        "invalid_request",
        "resource_missing",
    )


async def test_a_direct_account_sends_no_stripe_account_header(fake: FakeStripe) -> None:
    """A tenant whose account is not a Connect id talks to Stripe without Stripe-Account."""
    direct = adapter_for(fake, "hotel_direct")
    payment = Payment(PortUnderTest(direct, SandboxControl(fake), "hotel_direct", "pm_card_visa"))
    request = payment.authorization(1000)

    await direct.authorize(request)
    await direct.aclose()

    assert _requests_with_key(fake, request.idempotency_key) == [(None, request.idempotency_key)]


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("pm_card_chargeDeclined", "card_declined"),
        ("pm_card_insufficientFunds", "insufficient_funds"),
    ],
)
async def test_test_cards_decline_and_an_inquiry_finds_the_decline(
    payment: Payment, token: str, code: str
) -> None:
    """Stripe's declining test cards raise their decline, and an inquiry reports it failed."""
    request = replace(payment.authorization(1000), payment_method_token=token)

    with pytest.raises(DeclinedError) as refused:
        await payment.port.authorize(request)
    found = await payment.port.inquire(
        payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, None)
    )

    assert refused.value.code == code
    assert isinstance(found, Failed)
    assert found.code == code


async def test_three_d_secure_card_waits_and_a_failed_challenge_is_found(
    fake: FakeStripe, payment: Payment
) -> None:
    """The 3-D Secure test card waits for the customer; a failed challenge reads as failed."""
    request = replace(
        payment.authorization(1000), payment_method_token="pm_card_authenticationRequired"
    )

    waiting = await payment.port.authorize(request)
    assert isinstance(waiting, ActionRequired)
    fake.fail_3ds(waiting.reference)
    found = await payment.port.inquire(
        payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, waiting.reference)
    )

    assert waiting.action == "three_ds"
    assert waiting.redirect_url.startswith(fake.url)
    assert isinstance(found, Failed)
    assert found.code == "authentication_failed"


async def test_three_d_secure_without_a_return_url_is_refused(payment: Payment) -> None:
    """A challenge the customer cannot be redirected to is a terminal invalid request."""
    request = replace(
        payment.authorization(1000),
        payment_method_token="pm_card_authenticationRequired",
        return_url=None,
    )

    with pytest.raises(DeclinedError) as refused:
        await payment.port.authorize(request)

    assert (refused.value.code, refused.value.vendor_code) == (
        "invalid_request",
        "redirect_unavailable",
    )


async def test_idempotency_mismatch_is_our_bug_not_a_retry(payment: Payment) -> None:
    """A key reused with another amount is a terminal invalid request named idempotency_error."""
    request = payment.authorization(1000)
    await payment.port.authorize(request)

    with pytest.raises(DeclinedError) as refused:
        await payment.port.authorize(replace(request, amount=payment.money(1500)))

    assert not isinstance(refused.value, TryNextError)
    assert (refused.value.code, refused.value.vendor_code) == (
        "invalid_request",
        "idempotency_error",
    )


async def test_concurrent_sends_of_one_key_apply_once(fake: FakeStripe, payment: Payment) -> None:
    """Of two concurrent sends of one key, one is approved and the other gets a retryable 409."""
    fake.set_latency(0.3)
    request = payment.authorization(1000)

    results = await asyncio.gather(
        payment.port.authorize(request), payment.port.authorize(request), return_exceptions=True
    )

    approved = [r for r in results if isinstance(r, Approved)]
    conflicts = [r for r in results if isinstance(r, RetryableError)]
    assert len(approved) == 1
    assert len(conflicts) == 1
    assert conflicts[0].vendor_code == "idempotency_key_in_use"


async def test_rate_limit_is_retryable_after_its_retry_after(
    fake: FakeStripe, payment: Payment
) -> None:
    """A 429 is retryable and carries the vendor's Retry-After."""
    fake.rate_limit_next("payment_intents.create", retry_after=2)

    with pytest.raises(RetryableError) as limited:
        await payment.port.authorize(payment.authorization(1000))

    assert (limited.value.vendor_code, limited.value.retry_after) == ("rate_limit", 2.0)


async def test_a_stored_500_is_in_doubt_and_replayed(fake: FakeStripe, payment: Payment) -> None:
    """A 500 sent with Stripe-Should-Retry: false is in doubt, and the same key replays it."""
    fake.fail_next("payment_intents.create", status=500, stored=True)
    request = payment.authorization(1000)

    for _ in range(2):
        with pytest.raises(InDoubtError) as doubt:
            await payment.port.authorize(request)
        assert doubt.value.vendor_code == "stored_5xx"


async def test_refused_connection_is_retryable_and_was_not_sent(fake: FakeStripe) -> None:
    """Nothing listening on the port is a retryable error that says nothing was sent."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    port = adapter_for(fake, base_url=closed)

    with pytest.raises(RetryableError) as refused:
        await port.authorize(Payment(PortUnderTest(port, SandboxControl(fake))).authorization())
    await port.aclose()

    assert (refused.value.vendor_code, refused.value.sent) == ("connect_error", False)


async def test_dropped_connection_after_applying_is_in_doubt(
    fake: FakeStripe, payment: Payment
) -> None:
    """A response cut off mid-body is in doubt, and the replay shows it was applied."""
    fake.timeout_next("payment_intents.create", applied=True, drop=True)
    request = payment.authorization(1000)

    with pytest.raises(InDoubtError) as doubt:
        await payment.port.authorize(request)
    replayed = await payment.port.authorize(request)

    assert doubt.value.vendor_code == "connection_lost"
    assert isinstance(replayed, Approved)


async def test_html_502_page_is_retryable(fake: FakeStripe, payment: Payment) -> None:
    """A proxy's HTML 502 page is a retryable 5xx with its status in the message."""
    fake.garble_next("payment_intents.create", "html_502")

    with pytest.raises(RetryableError) as failed:
        await payment.port.authorize(payment.authorization(1000))

    assert failed.value.vendor_code == "http_5xx"
    assert "HTTP 502" in failed.value.message


@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("truncated_json", "not JSON"),
        ("missing_field", "payment_intent.status is missing"),
        ("unknown_status", "payment_intent.status is not a PaymentIntent status"),
    ],
)
async def test_malformed_answer_to_a_write_is_in_doubt(
    fake: FakeStripe, payment: Payment, kind: str, detail: str
) -> None:
    """An unreadable 200 to a create is in doubt (never failed), naming what was wrong."""
    fake.garble_next("payment_intents.create", kind)  # type: ignore[arg-type]
    request = payment.authorization(1000)

    with pytest.raises(InDoubtError) as doubt:
        await payment.port.authorize(request)
    replayed = await payment.port.authorize(request)

    assert doubt.value.vendor_code == "malformed_response"
    assert detail in doubt.value.message
    assert "payment_intents.create" in doubt.value.message
    assert isinstance(replayed, Approved)


async def test_malformed_answer_to_a_read_is_retryable(fake: FakeStripe, payment: Payment) -> None:
    """An unreadable answer to an inquiry changed nothing: it is retryable, not in doubt."""
    reference = await payment.authorized(1000)
    fake.garble_next("payment_intents.retrieve", "unknown_status")

    with pytest.raises(RetryableError) as failed:
        await payment.port.inquire(
            payment.inquiry(OperationKind.CAPTURE, payment.key("capture"), reference)
        )

    assert failed.value.vendor_code == "malformed_response"


async def test_capture_inquiry_before_any_capture_finds_nothing(payment: Payment) -> None:
    """An authorization not yet captured answers a capture inquiry with nothing found."""
    reference = await payment.authorized(1000)

    found = await payment.port.inquire(
        payment.inquiry(OperationKind.CAPTURE, payment.key("capture"), reference)
    )

    assert type(found).__name__ == "NotFound"


async def test_refund_and_void_inquiries_find_what_was_done(payment: Payment) -> None:
    """A refund is found by its key among the intent's refunds; a void by the intent's state."""
    captured = await payment.captured(1000)
    refund = payment.refund(captured, 400)
    done = await payment.port.refund(refund)
    authorized = await payment.authorized(500)
    void = payment.void(authorized)
    await payment.port.void(void)

    found_refund = await payment.port.inquire(
        payment.inquiry(OperationKind.REFUND, refund.idempotency_key, captured, 400)
    )
    found_void = await payment.port.inquire(
        payment.inquiry(OperationKind.VOID, void.idempotency_key, authorized, 500)
    )

    assert found_refund == done
    assert found_void == Approved(authorized, payment.money(500))


async def test_three_decimal_amount_stripe_cannot_take_is_not_sent(
    fake: FakeStripe, payment: Payment
) -> None:
    """A KWD amount not ending in 0 is refused before sending; another processor may take it."""
    request = replace(payment.authorization(), amount=Money(minor=1235, currency="KWD"))

    with pytest.raises(TryNextError) as refused:
        await payment.port.authorize(request)

    assert (refused.value.code, refused.value.sent) == ("currency_not_supported", False)
    assert _requests_with_key(fake, request.idempotency_key) == []


async def test_unknown_api_key_is_not_configured_and_never_shown(fake: FakeStripe) -> None:
    """A key Stripe refuses is a configuration error; neither logs nor the error show the key."""
    wrong = "sk_test_not_registered_" + uuid.uuid4().hex
    port = adapter_for(fake, api_key=wrong)
    payment = Payment(PortUnderTest(port, SandboxControl(fake), ACCOUNT, "pm_card_visa"))

    with structlog.testing.capture_logs() as logs, pytest.raises(DeclinedError) as refused:
        await port.authorize(payment.authorization(1000))
    await port.aclose()

    assert refused.value.code == "not_configured"
    shown = [str(refused.value), repr(refused.value), refused.value.message, repr(logs)]
    assert not any(wrong in text or wrong[-12:] in text for text in shown)
    assert logs
    assert logs[0]["event"] == "stripe_call_failed"


async def test_declines_and_webhooks_never_show_secrets(fake: FakeStripe, payment: Payment) -> None:
    """Logs and errors of a decline and of a bad webhook hold neither key nor secret."""
    reference = await payment.authorized(1000)
    webhook = await SandboxControl(fake).webhook_about(reference, secret="whsec_someone_else")
    fake.decline_next(code="card_declined", decline_code="insufficient_funds")

    with structlog.testing.capture_logs() as logs:
        with pytest.raises(DeclinedError) as declined:
            await payment.port.authorize(payment.authorization(1000))
        with pytest.raises(WebhookRejected) as rejected:
            await payment.port.parse_webhook(webhook)

    shown = [str(declined.value), str(rejected.value), repr(logs)]
    assert not any(API_KEY in text or WEBHOOK_SECRET in text for text in shown)
    assert "pm_card_visa" not in repr(logs)


async def test_vendors_md_vector_verifies_through_the_adapter() -> None:
    """The VENDORS.md vector's signature and time pass; its event has no object to map."""
    port = StripeAdapter(
        credentials_for(ACCOUNT, webhook_secret="whsec_test_secret"),
        base_url=None,
        clock=lambda: datetime.fromtimestamp(1_700_000_100, tz=UTC),
    )
    body = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}'
    header = "t=1700000000,v1=67da5088c63e080c71bd2bb0cb5c03d85a8fc6a21ce3aaf484df809654745b92"

    with pytest.raises(WebhookRejected) as rejected:
        await port.parse_webhook(
            WebhookRequest({"stripe-signature": header}, body, datetime.now(UTC))
        )

    assert rejected.value.reason == "malformed"


async def test_an_event_of_another_connected_account_is_a_mismatch(fake: FakeStripe) -> None:
    """A correctly signed event about another connected account is refused as a mismatch."""
    other = f"acct_other{uuid.uuid4().hex[:8]}"
    port = adapter_for(fake, other)
    payment = Payment(PortUnderTest(port, SandboxControl(fake), other, "pm_card_visa"))
    webhook = await SandboxControl(fake).webhook_about(await payment.authorized())
    await port.aclose()
    tenant = adapter_for(fake)

    with pytest.raises(WebhookRejected) as rejected:
        await tenant.parse_webhook(webhook)

    assert rejected.value.reason == "mismatch"


async def test_delivered_webhooks_follow_the_payment(fake: FakeStripe, payment: Payment) -> None:
    """The sandbox delivers signed events for each step; each parses into its notification."""
    with WebhookReceiver() as receiver:
        receiver.refuse = 1  # the first delivery fails and is retried
        fake.configure_webhooks(receiver.webhook_url)
        reference = await payment.authorized(1000)
        await payment.port.capture(payment.capture(reference, 1000))
        await payment.port.refund(payment.refund(reference, 250))
        received = [
            await payment.port.parse_webhook(await asyncio.to_thread(receiver.next_delivery))
            for _ in range(3)
        ]

    by_kind = {n.kind: n for n in received}  # the retried first delivery arrives last
    assert sorted(by_kind) == ["authorized", "captured", "refunded"]
    assert {n.payment_id for n in received} == {payment.payment_id}
    assert by_kind["authorized"].amount == by_kind["captured"].amount == payment.money(1000)
    assert by_kind["refunded"].amount == payment.money(250)
    assert by_kind["refunded"].authorization_reference == reference
    assert {n.account for n in received} == {ACCOUNT}
    assert any(d.attempts == 2 and d.status == 200 for d in fake.deliveries)


async def test_completing_three_d_secure_emits_the_authorization(
    fake: FakeStripe, payment: Payment
) -> None:
    """The admin's 3-D Secure completion moves the intent on and announces it by webhook."""
    with WebhookReceiver() as receiver:
        fake.configure_webhooks(receiver.webhook_url)
        fake.require_action_next()
        waiting = await payment.port.authorize(payment.authorization(1000))
        assert isinstance(waiting, ActionRequired)
        first = await payment.port.parse_webhook(await asyncio.to_thread(receiver.next_delivery))
        fake.complete_3ds(waiting.reference)
        second = await payment.port.parse_webhook(await asyncio.to_thread(receiver.next_delivery))

    assert (first.kind, second.kind) == ("action_required", "authorized")
    assert second.reference == waiting.reference


async def test_inquiry_about_a_processing_or_waiting_intent_is_pending(payment: Payment) -> None:
    """An authorization still waiting, without a redirect we could give, is still pending."""
    request = replace(
        payment.authorization(1000),
        payment_method_token="pm_card_authenticationRequired",
        return_url=None,
    )
    with pytest.raises(DeclinedError):
        await payment.port.authorize(request)

    found = await payment.port.inquire(
        payment.inquiry(OperationKind.AUTHORIZE, request.idempotency_key, None)
    )

    assert isinstance(found, StillPending)


FIXED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def test_daily_ledger_lists_every_page_of_the_day() -> None:
    """The day's balance transactions come back across pages, mapped to our references."""
    with FakeStripe(api_keys=(API_KEY,), clock=FIXED.timestamp) as ledger_fake:
        port = adapter_for(ledger_fake, clock=lambda: FIXED)
        payment = Payment(PortUnderTest(port, SandboxControl(ledger_fake), ACCOUNT, "pm_card_visa"))
        charges: list[OperationResult] = []
        for batch in range(0, 120, 20):  # more than a page (100), a few connections at a time
            requests = [
                payment.authorization(100 + n, capture="automatic")
                for n in range(batch, batch + 20)
            ]
            charges.extend(await asyncio.gather(*(port.authorize(r) for r in requests)))
        refunded = await port.refund(payment.refund(charges[0].reference, 40))
        lines = await port.list_transactions(FIXED.date())
        other_day = await port.list_transactions(date(2026, 10, 31))
        await port.aclose()

    by_reference = {(line.kind, line.reference): line for line in lines}
    first = by_reference["charge", charges[0].reference]
    assert len(lines) == 121
    assert other_day == []
    assert (first.amount, first.fee) == (payment.money(100), payment.money(32))
    assert first.payment_id == payment.payment_id
    assert by_reference["refund", refunded.reference].amount == payment.money(40)


async def test_retries_after_a_5xx_are_ours_not_the_sdks(
    fake: FakeStripe, payment: Payment
) -> None:
    """The SDK does not retry on its own: a 503 reaches us after exactly one request."""
    fake.fail_next("payment_intents.create", status=503)
    request = payment.authorization(1000)

    with pytest.raises(ProcessorError):
        await payment.port.authorize(request)

    assert len(_requests_with_key(fake, request.idempotency_key)) == 1


async def test_capabilities_are_stripes_currencies_we_know(adapter: StripeAdapter) -> None:
    """The adapter offers cards with manual and partial capture in Stripe's known currencies."""
    caps = adapter.capabilities

    assert caps.supports("USD", "card", manual_capture=True)
    assert "AFN" in caps.currencies
    assert "IRR" not in caps.currencies
    assert "ISK" not in caps.currencies
    assert (caps.partial_capture, caps.refunds, caps.void) == (True, True, True)
