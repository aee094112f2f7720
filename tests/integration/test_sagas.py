"""Payment sagas on real Postgres with the fake processors: the paths money takes."""

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta
from typing import TypeVar

import asyncpg
import pytest
import structlog

from processors.breaker import BreakerPolicy
from processors.fake import (
    Decline,
    FakeProcessor,
    RequireAction,
    TimeoutAfterApply,
    TryNext,
)
from processors.fake_ledger import default_capabilities
from processors.port import (
    Approved,
    AuthorizeRequest,
    Capabilities,
    CaptureRequest,
    InquiryRequest,
    InquiryResult,
    OperationResult,
    PaymentPort,
    RefundRequest,
    VoidRequest,
    WebhookRequest,
)
from sagas.messages import OperatorResolved
from sagas.model import OperationKind
from schemas.commands import RefundPayment
from schemas.money import Money
from schemas.notifications import Notification, VendorTransaction
from schemas.processors import Processor
from tenancy.db import Database
from tenancy.migration_files import Migration
from tenancy.offboarding import request_deletion
from tests.integration.outbox_helpers import provisioned
from tests.integration.saga_helpers import (
    Payments,
    authorize,
    cancel,
    capture,
    make_payments,
    rebuild,
    refund,
    void,
)

pytestmark = pytest.mark.integration
T = TypeVar("T")
AUTHORIZE = OperationKind.AUTHORIZE


@pytest.fixture
async def payments(
    db: Database, tenant_migrations: tuple[Migration, ...], tenant_ids: Callable[[], str]
) -> Payments:
    """A provisioned tenant with Stripe, PayPal and HesabPay attached."""
    tenant = await provisioned(db, tenant_migrations, tenant_ids())
    return await make_payments(db, tenant)


async def test_authorize_capture_refund(payments: Payments) -> None:
    """Authorize, capture in two parts and refund twice: each step one event, amounts add up."""
    await payments.send(authorize("p1", 1000))
    assert await payments.state("p1") == "authorized"
    await payments.send(capture("p1", 400, final=False))
    assert await payments.state("p1") == "partially_captured"
    await payments.send(capture("p1", 600))
    await payments.send(refund("p1", 300))
    await payments.send(refund("p1", 700))
    row = await payments.row("p1")
    assert (row["state"], row["captured_minor"], row["refunded_minor"]) == ("refunded", 1000, 1000)
    assert await payments.event_names("p1") == [
        "payment.authorized",
        "payment.captured",
        "payment.captured",
        "payment.refunded",
        "payment.refunded",
    ]
    assert payments.fakes[Processor.STRIPE].applied(AUTHORIZE) == 1


async def test_redelivery_and_repeated_key(payments: Payments) -> None:
    """Redelivery does nothing; a repeated key re-emits the outcome; a changed body conflicts."""
    message_id = await payments.send(authorize("p2"))
    await payments.send(authorize("p2"), message_id=message_id)
    assert await payments.event_names("p2") == ["payment.authorized"]
    await payments.send(authorize("p2"))
    events = await payments.events("p2")
    assert [name for name, _ in events] == ["payment.authorized", "payment.authorized"]
    assert events[0][1] == events[1][1]
    await payments.send(authorize("p2", 999))
    names = await payments.event_names("p2")
    assert names[-1] == "command.rejected"
    rejected = (await payments.events("p2"))[-1][1]
    assert rejected["reason"] == "idempotency_conflict"
    assert payments.fakes[Processor.STRIPE].applied(AUTHORIZE) == 1


async def test_each_repeat_of_a_key_re_emits_the_answer_once(payments: Payments) -> None:
    """Three repeats of one key: three more copies of the answer, not a doubling each time."""
    await payments.send(authorize("p2r"))
    for _ in range(3):
        await payments.send(authorize("p2r"))
    assert await payments.event_names("p2r") == ["payment.authorized"] * 4
    async with payments.db.tenant_transaction(payments.tenant) as tx:
        originals = await tx.conn.fetchval(
            "SELECT count(*) FROM payment_events WHERE payment_id = 'p2r' AND replay_of IS NULL"
        )
    assert originals == 1
    assert payments.fakes[Processor.STRIPE].applied(AUTHORIZE) == 1


async def test_in_doubt_is_resolved_by_inquiry(payments: Payments) -> None:
    """The vendor charges then times out: in doubt, the inquiry finds it, no second charge."""
    stripe = payments.fakes[Processor.STRIPE]
    stripe.script(AUTHORIZE, TimeoutAfterApply())
    await payments.send(authorize("p3"))
    assert await payments.state("p3") == "in_doubt"
    assert await payments.fire_timers() == 0
    payments.advance(timedelta(minutes=1))
    assert await payments.fire_timers() == 1
    assert await payments.state("p3") == "authorized"
    assert stripe.applied(AUTHORIZE) == 1
    assert stripe.authorizations_for("p3") == 1
    assert await payments.event_names("p3") == ["payment.authorized"]


async def test_in_doubt_never_fails_over(payments: Payments) -> None:
    """A timed-out authorization is not sent to the next processor."""
    payments.fakes[Processor.STRIPE].script(AUTHORIZE, TimeoutAfterApply())
    await payments.send(authorize("p4"))
    assert await payments.state("p4") == "in_doubt"
    assert payments.fakes[Processor.PAYPAL].calls == ()


async def test_try_next_fails_over_by_precedence(payments: Payments) -> None:
    """A refusal in the try-next set moves the authorization to the next processor."""
    card_paypal(payments)
    payments.fakes[Processor.STRIPE].script(AUTHORIZE, TryNext("currency_not_supported"))
    await payments.send(authorize("p5", method="card"))
    row = await payments.row("p5")
    assert (row["state"], row["processor"]) == ("authorized", "paypal")
    assert await payments.event_names("p5") == ["payment.authorized"]


async def test_decline_fails_the_payment(payments: Payments) -> None:
    """A card decline fails the authorization with a safe customer message."""
    payments.fakes[Processor.STRIPE].script(AUTHORIZE, Decline("card_declined"))
    await payments.send(authorize("p6"))
    assert await payments.state("p6") == "failed"
    [(name, body)] = await payments.events("p6")
    assert name == "payment.authorization_failed"
    assert body["reason_code"] == "card_declined"
    assert "declined" in body["customer_message"]


async def test_void_and_cancel(payments: Payments) -> None:
    """A void releases the hold; cancelling a captured payment refunds it."""
    await payments.send(authorize("p7"))
    await payments.send(void("p7"))
    assert await payments.state("p7") == "voided"
    await payments.send(authorize("p8", 500))
    await payments.send(capture("p8"))
    await payments.send(cancel("p8"))
    assert await payments.state("p8") == "refunded"
    names = await payments.event_names("p8")
    assert names[-2:] == ["payment.refunded", "payment.cancelled"]


async def test_action_required_then_timeout(payments: Payments) -> None:
    """A 3-D Secure redirect goes out in an event; nobody finishes it, so it expires."""
    payments.fakes[Processor.STRIPE].script(AUTHORIZE, RequireAction("https://3ds.example/x"))
    await payments.send(authorize("p9"))
    assert await payments.state("p9") == "requires_action"
    [(name, body)] = await payments.events("p9")
    assert (name, body["redirect_url"]) == ("payment.action_required", "https://3ds.example/x")
    payments.advance(timedelta(hours=1))
    assert await payments.fire_timers() == 1
    assert await payments.state("p9") == "expired"


async def test_authorization_auto_voids_before_expiry(payments: Payments) -> None:
    """An uncaptured Stripe authorization is voided an hour before its 7 days run out."""
    await payments.send(authorize("p10"))
    payments.advance(timedelta(days=7) - timedelta(minutes=59))
    assert await payments.fire_timers() == 1
    assert await payments.state("p10") == "voided"
    assert (await payments.events("p10"))[-1][1]["reason"] == "expired"


class Hangs:
    """A processor whose calls reach the vendor and then never come back to us."""

    def __init__(self, inner: PaymentPort, reached: asyncio.Event) -> None:
        """Wrap ``inner``; set ``reached`` once the vendor has applied a call."""
        self._inner = inner
        self._reached = reached

    @property
    def processor(self) -> Processor:
        """The wrapped processor."""
        return self._inner.processor

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped processor's capabilities."""
        return self._inner.capabilities

    async def _after(self, result: T) -> T:
        self._reached.set()
        await asyncio.Event().wait()  # the process is gone before the outcome is stored
        return result

    async def authorize(self, request: AuthorizeRequest) -> OperationResult:
        """Authorize at the vendor, then hang."""
        return await self._after(await self._inner.authorize(request))

    async def capture(self, request: CaptureRequest) -> Approved:
        """Capture at the vendor, then hang."""
        return await self._after(await self._inner.capture(request))

    async def void(self, request: VoidRequest) -> Approved:
        """Void at the vendor, then hang."""
        return await self._after(await self._inner.void(request))

    async def refund(self, request: RefundRequest) -> Approved:
        """Refund at the vendor, then hang."""
        return await self._after(await self._inner.refund(request))

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """Inquire without hanging."""
        return await self._inner.inquire(request)

    async def parse_webhook(self, webhook: WebhookRequest) -> Notification:
        """Parse as the wrapped processor does."""
        return await self._inner.parse_webhook(webhook)

    async def list_transactions(self, day: date) -> list[VendorTransaction]:
        """List as the wrapped processor does."""
        return await self._inner.list_transactions(day)


async def test_worker_killed_after_the_vendor_call(payments: Payments) -> None:
    """Killed between charge and outcome: after restart a redrive completes it, no second charge."""
    reached = asyncio.Event()
    stripe = payments.fakes[Processor.STRIPE]
    dying = rebuild(
        payments, lambda attachment: Hangs(payments.fakes[attachment.processor], reached)
    )
    task = asyncio.create_task(dying.send(authorize("p11")))
    await asyncio.wait_for(reached.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stripe.applied(AUTHORIZE) == 1
    assert await payments.state("p11") == "authorizing"
    restarted = rebuild(payments)
    assert await restarted.fire_timers() == 0
    restarted.advance(timedelta(seconds=90))
    assert await restarted.fire_timers() == 1
    assert await payments.state("p11") == "authorized"
    assert stripe.applied(AUTHORIZE) == 1
    assert stripe.authorizations_for("p11") == 1
    assert await payments.event_names("p11") == ["payment.authorized"]


async def test_a_redrive_after_a_killed_worker_never_fails_over(payments: Payments) -> None:
    """Killed mid-call, then the redrive finds Stripe's breaker open (nothing sent): it waits.

    The first call may have charged, so moving the payment to PayPal could charge twice;
    the operation stays with Stripe and completes once the breaker lets calls through.
    """
    reached = asyncio.Event()
    stripe, paypal = payments.fakes[Processor.STRIPE], payments.fakes[Processor.PAYPAL]
    dying = rebuild(
        payments, lambda attachment: Hangs(payments.fakes[attachment.processor], reached)
    )
    task = asyncio.create_task(dying.send(authorize("p11b")))
    await asyncio.wait_for(reached.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    restarted = rebuild(payments)
    restarted.advance(timedelta(seconds=90))
    breaker = restarted.services.breakers.get(payments.tenant, Processor.STRIPE)
    for _ in range(BreakerPolicy().consecutive_failures):
        breaker.record_failure()
    assert breaker.is_open()
    assert await restarted.fire_timers() == 1
    assert await payments.state("p11b") == "authorizing"
    assert paypal.applied(AUTHORIZE) == 0
    restarted.advance(timedelta(minutes=2))
    await restarted.fire_timers()
    assert await payments.state("p11b") == "authorized"
    assert (stripe.authorizations_for("p11b"), paypal.applied(AUTHORIZE)) == (1, 0)


async def test_soft_deleted_tenant_refuses_new_money_but_refunds(payments: Payments) -> None:
    """A soft-deleted tenant's authorize and capture are rejected; a refund still goes through."""
    await payments.send(authorize("p12", 800, capture="automatic"))
    assert await payments.state("p12") == "captured"
    outcome = await request_deletion(payments.db, payments.tenant, clock=payments.clock)
    assert outcome.status == "soft_deleted"
    await payments.send(authorize("p13"))
    await payments.send(refund("p12", 300))
    names = await payments.event_names()
    assert names.count("command.rejected") == 1
    rejected = [body for name, body in await payments.events("p13") if name == "command.rejected"]
    assert rejected[0]["reason"] == "tenant_not_serving"
    assert (await payments.row("p12"))["refunded_minor"] == 300


async def test_database_refuses_leaving_a_terminal_state(payments: Payments) -> None:
    """Even a direct update cannot move a voided payment or lower its amounts."""
    await payments.send(authorize("p14"))
    await payments.send(void("p14"))
    async with payments.db.tenant_transaction(payments.tenant) as tx:
        with pytest.raises(asyncpg.CheckViolationError, match="terminal state"):
            await tx.conn.execute(
                "UPDATE payments SET state = 'authorized', version = version + 1"
                " WHERE payment_id = 'p14'"
            )


def card_paypal(payments: Payments) -> None:
    """Let the fake PayPal take cards too, so that it can stand in for Stripe."""
    paypal = default_capabilities(Processor.PAYPAL)
    payments.fakes[Processor.PAYPAL] = FakeProcessor(
        Processor.PAYPAL,
        clock=payments.clock,
        capabilities=replace(paypal, payment_method_types=frozenset({"card", "paypal"})),
    )


async def test_a_5xx_storm_opens_the_breaker_and_routing_moves_on(payments: Payments) -> None:
    """Under a Stripe 5xx storm the breaker opens and new payments go to PayPal by precedence.

    Payments whose requests may have reached Stripe stay with Stripe (pending, same key).
    """
    card_paypal(payments)
    stripe = payments.fakes[Processor.STRIPE]
    stripe.storm(100)
    with structlog.testing.capture_logs() as logs:
        for payment_id in ("s1", "s2", "s3", "s4"):
            await payments.send(authorize(payment_id))
    assert payments.services.breakers.is_open(payments.tenant, Processor.STRIPE)
    opened = [
        log
        for log in logs
        if log["event"] == "circuit_breaker_state_changed" and log["to_state"] == "open"
    ]
    assert [(log["processor"], log["tenant_id"]) for log in opened] == [("stripe", payments.tenant)]
    for payment_id in ("s1", "s2"):
        row = await payments.row(payment_id)
        assert (row["state"], row["processor"]) == ("authorizing", None)
    for payment_id in ("s3", "s4"):
        row = await payments.row(payment_id)
        assert (row["state"], row["processor"]) == ("authorized", "paypal")
    assert stripe.applied(AUTHORIZE) == 0


async def test_refused_connections_fail_over_at_once(payments: Payments) -> None:
    """When Stripe refuses connections nothing was sent, so the authorization moves to PayPal."""
    card_paypal(payments)
    payments.fakes[Processor.STRIPE].storm(3, connect_error=True)
    await payments.send(authorize("c1"))
    row = await payments.row("c1")
    assert (row["state"], row["processor"]) == ("authorized", "paypal")


async def test_a_sent_request_never_fails_over(payments: Payments) -> None:
    """A 5xx, then refused connections: the 5xx may have applied, so PayPal is never tried."""
    card_paypal(payments)
    stripe = payments.fakes[Processor.STRIPE]
    stripe.storm(3)
    await payments.send(authorize("c2"))
    stripe.storm(3, connect_error=True)
    payments.advance(timedelta(seconds=90))
    assert await payments.fire_timers() == 1
    assert await payments.state("c2") == "authorizing"
    assert payments.fakes[Processor.PAYPAL].calls == ()


async def test_a_tenant_not_served_does_not_stall_other_tenants_timers(
    payments: Payments, tenant_migrations: tuple[Migration, ...], tenant_ids: Callable[[], str]
) -> None:
    """A tenant gone offboarding with timers due is skipped; other tenants' timers still fire."""
    other = await make_payments(
        payments.db, await provisioned(payments.db, tenant_migrations, tenant_ids())
    )
    payments.fakes[Processor.STRIPE].script(AUTHORIZE, TimeoutAfterApply())
    other.fakes[Processor.STRIPE].script(AUTHORIZE, TimeoutAfterApply())
    await payments.send(authorize("t1"))
    await other.send(authorize("t2"))
    async with payments.db.connection() as conn:
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'offboarding',"
            " soft_deleted_at = now() WHERE tenant_id = $1",
            payments.tenant,
        )
    other.advance(timedelta(minutes=1))
    fired = await other.services.timers.run_once([payments.tenant, other.tenant])
    assert fired == 1
    assert await other.state("t2") == "authorized"
    async with payments.db.connection() as conn:
        left = await conn.fetch(
            f'SELECT kind FROM "{payments.tenant.lower()}".saga_timers'  # noqa: S608 (a test's own tenant)
            " WHERE payment_id = 't1'"
        )
    assert [row["kind"] for row in left] == ["inquiry"]  # the skipped tenant's timer waits


async def test_two_copies_of_a_capture_at_once_capture_once_and_refuse_nothing(
    payments: Payments,
) -> None:
    """The same capture delivered twice concurrently (new ce-ids): one capture, no rejection."""
    await payments.send(authorize("p15"))
    command = capture("p15")
    await asyncio.gather(payments.send(command), payments.send(command))
    names = await payments.event_names("p15")
    assert "command.rejected" not in names
    assert names[:2] == ["payment.authorized", "payment.captured"]
    assert payments.fakes[Processor.STRIPE].applied(OperationKind.CAPTURE) == 1


async def test_a_timer_fires_once_across_two_workers(payments: Payments) -> None:
    """Two workers' timer loops racing over the same due inquiry make one inquiry between them."""
    stripe = payments.fakes[Processor.STRIPE]
    stripe.script(AUTHORIZE, TimeoutAfterApply())
    await payments.send(authorize("p16"))
    other = rebuild(payments)
    payments.advance(timedelta(minutes=1))
    fired = await asyncio.gather(payments.fire_timers(), other.fire_timers())
    assert sorted(fired) == [0, 1]
    inquiries = [call for call in stripe.calls if isinstance(call, InquiryRequest)]
    assert len(inquiries) == 1
    assert await payments.state("p16") == "authorized"


async def test_a_hesabpay_refund_is_a_task_for_operators(payments: Payments) -> None:
    """HesabPay has no refund API: the refund waits for an operator, who closes it by hand."""
    hesabpay = payments.fakes[Processor.HESABPAY]
    await payments.send(authorize("h1", 50000, "AFN", method="wallet", capture="automatic"))
    assert await payments.state("h1") == "captured"
    await payments.send(
        RefundPayment(
            payment_id="h1",
            idempotency_key="ref-h1",
            amount=Money(minor=20000, currency="AFN"),
        )
    )
    row = await payments.row("h1")
    assert (row["state"], row["refunded_minor"]) == ("refunding", 0)
    assert "by hand" in row["attention"]
    assert hesabpay.applied(OperationKind.REFUND) == 0
    resolution = OperatorResolved(seq=2, succeeded=True, reference="TRF-778", note="paid back")
    await payments.services.executor.apply(payments.tenant, "h1", resolution)
    row = await payments.row("h1")
    assert (row["state"], row["refunded_minor"], row["attention"]) == (
        "partially_refunded",
        20000,
        None,
    )
    assert (await payments.event_names("h1"))[-1] == "payment.refunded"
