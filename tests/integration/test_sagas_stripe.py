"""Payment sagas against the Stripe sandbox over real HTTP: the adapter, not a fake."""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from handlers.ports import PortFactory
from processors.fake import FakeProcessor
from processors.port import PaymentPort
from processors.stripe import StripeAdapter
from sandbox.stripe_api import FakeStripe
from schemas.processors import Processor
from tenancy.db import Database
from tenancy.migration_files import Migration
from tenancy.vendors import VendorAttachment
from tests.integration.outbox_helpers import provisioned
from tests.integration.saga_helpers import (
    Payments,
    authorize,
    cancel,
    capture,
    make_payments,
    rebuild,
    refund,
)
from tests.integration.stripe_support import API_KEY, WEBHOOK_SECRET, credentials_for, utc_now
from tests.integration.test_sagas import Hangs, card_paypal

pytestmark = pytest.mark.integration
ACCOUNT = "acct_stripe"  # saga_helpers attaches Stripe with account_ref acct_<processor>


@pytest.fixture(scope="module")
def stripe_sandbox() -> Iterator[FakeStripe]:
    """One Stripe sandbox on loopback for the module."""
    with FakeStripe(api_keys=(API_KEY,), webhook_secret=WEBHOOK_SECRET) as sandbox:
        yield sandbox


def stripe_factory(
    sandbox: FakeStripe, made: list[StripeAdapter]
) -> Callable[[dict[Processor, FakeProcessor]], PortFactory]:
    """A port factory giving Stripe attachments the real adapter (and others the fakes)."""

    def factory(fakes: dict[Processor, FakeProcessor]) -> PortFactory:
        def build(attachment: VendorAttachment) -> PaymentPort:
            if attachment.processor is not Processor.STRIPE:
                return fakes[attachment.processor]
            adapter = StripeAdapter(
                credentials_for(attachment.account_ref),
                base_url=sandbox.url,
                clock=utc_now,
                timeout_s=1.5,
            )
            made.append(adapter)
            return adapter

        return build

    return factory


@pytest.fixture
async def payments(
    db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
    stripe_sandbox: FakeStripe,
) -> AsyncIterator[Payments]:
    """A tenant with Stripe (the sandbox) attached."""
    made: list[StripeAdapter] = []
    tenant = await provisioned(db, tenant_migrations, tenant_ids())
    yield await make_payments(
        db, tenant, (Processor.STRIPE,), factory=stripe_factory(stripe_sandbox, made)
    )
    for adapter in made:
        await adapter.aclose()
    stripe_sandbox.clear_faults()


async def intents_for(sandbox: FakeStripe, payment_id: str) -> list[dict[str, Any]]:
    """The sandbox's PaymentIntents whose metadata names ``payment_id``."""
    async with httpx.AsyncClient(base_url=sandbox.url, auth=(API_KEY, "")) as client:
        response = await client.get(
            "/v1/payment_intents", params={"limit": 100}, headers={"Stripe-Account": ACCOUNT}
        )
    response.raise_for_status()
    intents: list[dict[str, Any]] = response.json()["data"]
    return [i for i in intents if i["metadata"].get("payment_id") == payment_id]


async def all_intents(sandbox: FakeStripe) -> list[dict[str, Any]]:
    """Every PaymentIntent of the account at the sandbox, all pages."""
    found: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 100}
    async with httpx.AsyncClient(base_url=sandbox.url, auth=(API_KEY, "")) as client:
        while True:
            response = await client.get(
                "/v1/payment_intents", params=params, headers={"Stripe-Account": ACCOUNT}
            )
            response.raise_for_status()
            page = response.json()
            found.extend(page["data"])
            if not page["has_more"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]


async def test_authorize_capture_refund_at_the_stripe_sandbox(
    payments: Payments, stripe_sandbox: FakeStripe
) -> None:
    """A payment is authorized, captured in two parts and refunded at the sandbox."""
    await payments.send(authorize("sp1", 1000))
    await payments.send(capture("sp1", 400, final=False))
    await payments.send(capture("sp1", 600))
    await payments.send(refund("sp1", 250))
    row = await payments.row("sp1")
    assert (row["state"], row["captured_minor"], row["refunded_minor"]) == (
        "partially_refunded",
        1000,
        250,
    )
    [intent] = await intents_for(stripe_sandbox, "sp1")
    assert (intent["status"], intent["amount_received"]) == ("succeeded", 1000)


async def test_a_charge_whose_response_is_lost_is_found_by_inquiry(
    payments: Payments, stripe_sandbox: FakeStripe
) -> None:
    """The sandbox applies the authorization and the response is lost: one intent, authorized."""
    stripe_sandbox.timeout_next("payment_intents.create", applied=True)
    await payments.send(authorize("sp2"))
    assert await payments.state("sp2") == "in_doubt"
    payments.advance(timedelta(minutes=1))
    assert await payments.fire_timers() == 1
    assert await payments.state("sp2") == "authorized"
    assert len(await intents_for(stripe_sandbox, "sp2")) == 1


async def test_a_worker_killed_after_the_charge_does_not_charge_twice(
    payments: Payments, stripe_sandbox: FakeStripe
) -> None:
    """Killed after the sandbox charged: the redrive replays the same key, one intent."""
    reached = asyncio.Event()
    made: list[StripeAdapter] = []
    build = stripe_factory(stripe_sandbox, made)(payments.fakes)
    dying = rebuild(payments, lambda attachment: Hangs(build(attachment), reached))
    task = asyncio.create_task(dying.send(authorize("sp3")))
    await asyncio.wait_for(reached.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    restarted = rebuild(payments, build)
    restarted.advance(timedelta(seconds=90))
    assert await restarted.fire_timers() == 1
    assert await payments.state("sp3") == "authorized"
    assert len(await intents_for(stripe_sandbox, "sp3")) == 1
    for adapter in made:
        await adapter.aclose()


async def test_cancel_refunds_a_captured_payment_at_the_sandbox(
    payments: Payments, stripe_sandbox: FakeStripe
) -> None:
    """Cancelling a captured payment refunds it in full at the sandbox."""
    await payments.send(authorize("sp4", 700, capture="automatic"))
    await payments.send(cancel("sp4"))
    assert await payments.state("sp4") == "refunded"
    [intent] = await intents_for(stripe_sandbox, "sp4")
    assert intent["status"] == "succeeded"


async def test_a_stripe_5xx_storm_moves_new_payments_to_paypal(
    db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
    stripe_sandbox: FakeStripe,
) -> None:
    """The sandbox answers 503 to everything: the breaker opens, new payments go to PayPal."""
    made: list[StripeAdapter] = []
    tenant = await provisioned(db, tenant_migrations, tenant_ids())
    payments = await make_payments(
        db,
        tenant,
        (Processor.STRIPE, Processor.PAYPAL),
        factory=stripe_factory(stripe_sandbox, made),
    )
    card_paypal(payments)
    stripe_sandbox.fail_next("*", status=503, times=1000)
    try:
        for payment_id in ("st1", "st2", "st3", "st4"):
            await payments.send(authorize(payment_id))
    finally:
        stripe_sandbox.clear_faults()
        for adapter in made:
            await adapter.aclose()
    assert payments.services.breakers.is_open(payments.tenant, Processor.STRIPE)
    rows = [await payments.row(p) for p in ("st1", "st2", "st3", "st4")]
    moved = [row["payment_id"] for row in rows if row["processor"] == "paypal"]
    waiting = [row["payment_id"] for row in rows if row["state"] == "authorizing"]
    assert moved == ["st3", "st4"]
    assert waiting == ["st1", "st2"]  # their requests reached Stripe: same key, later
