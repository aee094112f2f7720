"""Inbox appliers: stored webhooks reach their payments through the saga's guard, in any order.

Each test posts signed webhooks to payment-api over HTTP and lets the handlers' own applier
apply them, against a tenant with the Stripe sandbox attached. Responses the sandbox
"loses" (it applies the request, then the client times out) leave operations in doubt,
which only a webhook (or an inquiry) can settle.
"""

import asyncio
from datetime import timedelta

import pytest

from handlers.inbox import InboxPolicy
from sandbox.stripe_api import FakeStripe
from tests.integration.outbox_helpers import eventually_async
from tests.integration.saga_helpers import authorize, capture, refund
from tests.integration.test_sagas_stripe import intents_for
from tests.integration.webhook_support import (
    WebhookStack,
    intent,
    refunded_charge,
    stripe_event,
)

pytestmark = pytest.mark.integration
RETRY = timedelta(seconds=5)


def capturable(payment_id: str, intent_id: str, amount: int) -> tuple[dict[str, str], bytes]:
    """``payment_intent.amount_capturable_updated``: authorized ``amount``."""
    obj = intent(intent_id, payment_id, amount, capturable=amount)
    return stripe_event("payment_intent.amount_capturable_updated", obj)


def succeeded(
    payment_id: str, intent_id: str, amount: int, received: int
) -> tuple[dict[str, str], bytes]:
    """``payment_intent.succeeded``: ``received`` captured so far."""
    obj = intent(intent_id, payment_id, amount, received=received, status="succeeded")
    return stripe_event("payment_intent.succeeded", obj)


async def in_doubt_authorization(
    stack: WebhookStack, sandbox: FakeStripe, payment_id: str, amount: int = 1000, **extra: str
) -> str:
    """Authorize at the sandbox and lose the response; the intent's id."""
    sandbox.timeout_next("payment_intents.create", applied=True)
    await stack.payments.send(authorize(payment_id, amount, **extra))
    assert await stack.payments.state(payment_id) == "in_doubt"
    [pi] = await intents_for(sandbox, payment_id)
    return str(pi["id"])


async def test_a_webhook_settles_an_in_doubt_authorization(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """The sandbox's own event about the lost charge authorizes the payment; one event."""
    pi = await in_doubt_authorization(stack, hook_sandbox, "pi-doubt")
    assert (await stack.post(hook_sandbox.signed_event_about(pi))).status_code == 200

    await stack.apply()

    assert await stack.payments.state("pi-doubt") == "authorized"
    assert await stack.operation_reference("pi-doubt", 1) == pi
    assert await stack.payments.event_names("pi-doubt") == ["payment.authorized"]
    [row] = await stack.inbox()
    assert (row["status"], row["payment_id"], row["attempts"]) == ("applied", "pi-doubt", 1)


async def test_captured_before_authorized_ends_captured(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """Manual capture; captured arrives first (waits), then authorized; capture's answer lost."""
    pi = await in_doubt_authorization(stack, hook_sandbox, "pi-order")
    await stack.post(succeeded("pi-order", pi, 1000, received=1000))
    await stack.post(capturable("pi-order", pi, 1000))

    await stack.apply()
    assert await stack.payments.state("pi-order") == "authorized"
    statuses = [r["status"] for r in await stack.inbox()]
    assert statuses == ["pending", "applied"]  # captured waits: no capture was asked yet

    hook_sandbox.timeout_next("payment_intents.capture", applied=True)
    await stack.payments.send(capture("pi-order"))
    assert await stack.payments.state("pi-order") == "in_doubt"

    await stack.retry_later(RETRY)
    assert await stack.payments.state("pi-order") == "captured"
    assert [r["status"] for r in await stack.inbox()] == ["applied", "applied"]
    assert await stack.payments.event_names("pi-order") == [
        "payment.authorized",
        "payment.captured",
    ]
    assert await stack.transitions("pi-order", "captured") == 1


async def test_refunded_before_captured_ends_partially_refunded(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """A refund's event arrives before the capture's; both answers lost; both settle."""
    pi = await in_doubt_authorization(stack, hook_sandbox, "pi-refund")
    await stack.post(capturable("pi-refund", pi, 1000))
    await stack.apply()
    hook_sandbox.timeout_next("payment_intents.capture", applied=True)
    await stack.payments.send(capture("pi-refund"))

    refund_event = stripe_event(
        "charge.refunded", refunded_charge("ch_pi_refund", pi, "pi-refund", 300)
    )
    await stack.post(refund_event)
    await stack.post(succeeded("pi-refund", pi, 1000, received=1000))
    await stack.apply()
    assert await stack.payments.state("pi-refund") == "captured"
    assert [r["status"] for r in await stack.inbox()][-2:] == ["pending", "applied"]

    hook_sandbox.timeout_next("refunds.create", applied=True)
    await stack.payments.send(refund("pi-refund", 300))
    assert await stack.payments.state("pi-refund") == "in_doubt"
    await stack.retry_later(RETRY)

    row = await stack.payments.row("pi-refund")
    assert (row["state"], row["captured_minor"], row["refunded_minor"]) == (
        "partially_refunded",
        1000,
        300,
    )
    assert {r["status"] for r in await stack.inbox()} == {"applied"}


async def test_a_webhook_before_its_command_waits_then_applies(stack: WebhookStack) -> None:
    """The payment does not exist yet: the row waits (never dropped) and applies later."""
    await stack.post(capturable("pi-early", "pi_early_intent", 1000))
    await stack.apply()
    [row] = await stack.inbox()
    assert (row["status"], row["last_error"]) == (
        "pending",
        "no payment of this tenant matches it yet",
    )

    await stack.payments.send(authorize("pi-early", 1000))
    assert await stack.payments.state("pi-early") == "authorized"
    await stack.retry_later(RETRY)

    [row] = await stack.inbox()
    assert (row["status"], row["payment_id"]) == ("applied", "pi-early")
    assert await stack.transitions("pi-early", "authorized") == 1


async def test_a_notification_that_never_matches_is_parked_for_operators(
    stack: WebhookStack,
) -> None:
    """Retried with growing waits, then parked after a day; the reason is kept."""
    await stack.post(capturable("pi-never", "pi_never_intent", 1000))
    await stack.apply()
    for _ in range(3):
        await stack.retry_later(timedelta(minutes=15))
    assert [r["status"] for r in await stack.inbox()] == ["pending"]

    await stack.retry_later(timedelta(hours=24))
    [row] = await stack.inbox()
    assert row["status"] == "parked"
    assert row["last_error"].startswith("gave up waiting: no payment")
    assert row["attempts"] >= 4


async def test_an_amount_that_disagrees_is_parked_and_changes_nothing(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """Authorized 9,999 for a 1,000 payment: parked at once, the payment stays in doubt."""
    pi = await in_doubt_authorization(stack, hook_sandbox, "pi-amount")
    await stack.post(capturable("pi-amount", pi, 9999))
    await stack.apply()
    [row] = await stack.inbox()
    assert row["status"] == "parked"
    assert "matches no operation in flight" in row["last_error"]
    assert await stack.payments.state("pi-amount") == "in_doubt"
    assert await stack.payments.event_names("pi-amount") == []


async def test_the_running_applier_wakes_on_notify(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """With a one-minute poll, a stored webhook is applied within seconds: NOTIFY woke it.

    ``listening`` is set only after the applier's first claim found nothing, so the row
    posted afterwards can reach it only through NOTIFY (or a poll a minute later).
    """
    pi = await in_doubt_authorization(stack, hook_sandbox, "pi-notify")
    services = stack.payments.services
    slow = type(services.inbox)(
        stack.payments.db, services.executor, stack.payments.clock, InboxPolicy(poll_seconds=60)
    )
    stop = asyncio.Event()
    running = asyncio.create_task(slow.run(stop))
    try:
        await asyncio.wait_for(slow.listening.wait(), timeout=10)
        await stack.post(hook_sandbox.signed_event_about(pi))

        async def authorized() -> bool:
            return await stack.payments.state("pi-notify") == "authorized"

        await eventually_async(authorized, within=10)
    finally:
        stop.set()
        await running


async def test_the_sandbox_delivers_and_the_payment_moves(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """The sandbox POSTs its own signed events; they confirm what the responses told.

    Applying them changes nothing further, and nothing is parked.
    """
    hook_sandbox.configure_webhooks(f"{stack.url}{stack.path()}")
    await stack.payments.send(authorize("pi-live", 1000))
    await stack.payments.send(capture("pi-live"))

    async def delivered() -> bool:
        return len(await stack.inbox()) >= 2

    await eventually_async(delivered, within=10)
    await stack.apply()
    assert {r["status"] for r in await stack.inbox()} == {"applied"}
    assert await stack.payments.state("pi-live") == "captured"
    assert await stack.payments.event_names("pi-live") == ["payment.authorized", "payment.captured"]


async def test_an_applier_limited_to_one_tenant_leaves_the_others_rows(
    stack: WebhookStack,
) -> None:
    """verify-tenant applies only its tenant's rows: others stay unclaimed, untouched."""
    await stack.post(capturable("pi-scoped", "pi_scoped_intent", 1000))
    inbox = stack.payments.services.inbox
    assert await inbox.run_once("tnt_someone_else") == 0
    [row] = await stack.inbox()
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert await inbox.run_once(stack.tenant) == 1
    [row] = await stack.inbox()
    assert (row["status"], row["attempts"]) == ("pending", 1)  # no payment yet: it waits
