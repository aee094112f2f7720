"""Dev mode's preparation: central migrations, the demo tenant and its processors."""

import asyncio
from pathlib import Path

import pytest

from gateway.bootstrap import bootstrap
from gateway.dev import DEMO_TENANT, prepare, serve_dev_stack
from gateway.payments import services_for
from gateway.sandboxes import running_sandboxes
from gateway.settings import ProcessorBackend
from handlers.commands import Received
from schemas.commands import AuthorizePayment
from schemas.processors import Processor
from schemas.topology import Topology
from tenancy.vendors import list_attachments
from tests.emulator import PROJECT
from tests.integration.conftest import local_settings

pytestmark = pytest.mark.integration


async def test_prepare_is_repeatable_and_attaches_every_processor(
    fresh_dsn: str, tmp_path: Path
) -> None:
    """Running dev preparation twice leaves one demo tenant with the three processors attached."""
    settings = local_settings(fresh_dsn, tmp_path)
    async with bootstrap(settings) as container:
        await prepare(container)
        await prepare(container)
        attachments = await list_attachments(container.db, DEMO_TENANT)
    assert sorted((a.processor, a.precedence) for a in attachments) == [
        (Processor.HESABPAY, 30),
        (Processor.PAYPAL, 20),
        (Processor.STRIPE, 10),
    ]
    assert not any("placeholder" in str(a) for a in attachments)


async def test_the_demo_tenant_pays_through_the_sandboxes(fresh_dsn: str, tmp_path: Path) -> None:
    """With make run's wiring, the demo tenant authorizes and captures at the Stripe sandbox."""
    with running_sandboxes() as sandboxes:
        settings = local_settings(
            fresh_dsn,
            tmp_path,
            processor_backend=ProcessorBackend.VENDORS,
            sandbox_urls=sandboxes.urls(),
        )
        async with bootstrap(settings) as container:
            await prepare(container)
            services = services_for(container)
            try:
                command = AuthorizePayment.model_validate(
                    {
                        "payment_id": "demo_1",
                        "idempotency_key": "demo-1",
                        "amount": {"minor": 4200, "currency": "USD"},
                        "payment_method": {"type": "card", "token": "pm_card_visa"},
                        "booking_reference": "BK-DEMO",
                        "capture": "automatic",
                    }
                )
                received = Received(DEMO_TENANT, "//booking.test", "m-1", command)
                await services.commands.handle(received)
                async with container.db.tenant_transaction(DEMO_TENANT) as tx:
                    row = await tx.conn.fetchrow(
                        "SELECT state, processor, captured_minor FROM payments"
                        " WHERE payment_id = 'demo_1'"
                    )
            finally:
                await services.aclose()
    assert row is not None
    assert (row["state"], row["processor"], row["captured_minor"]) == ("captured", "stripe", 4200)
    assert sandboxes.stripe.requests


@pytest.mark.usefixtures("pubsub_emulator_host")
async def test_make_run_plays_the_demo_through_every_part(
    fresh_dsn: str, tmp_path: Path, emulator_topology: Topology
) -> None:
    """The dev stack with --demo: commands on Pub/Sub, three vendors, webhooks, events out.

    The PayPal payment is authorized only after the sandbox's approval webhook reaches
    payment-api; the HesabPay payment is captured only by HesabPay's webhook.
    """
    lines: list[str] = []
    with running_sandboxes() as sandboxes:
        settings = local_settings(
            fresh_dsn,
            tmp_path,
            processor_backend=ProcessorBackend.VENDORS,
            sandbox_urls=sandboxes.urls(),
            pubsub_project=PROJECT,
            api_port=0,
        )
        async with bootstrap(settings) as container:
            await prepare(container)
            played = await serve_dev_stack(
                container,
                sandboxes,
                emulator_topology,
                asyncio.Event(),
                demo=True,
                stop_after_demo=True,
                say=lines.append,
            )
            async with container.db.connection() as conn:
                rows = await conn.fetch(
                    "SELECT processor, status FROM payments_central.webhook_inbox"
                    " WHERE tenant_id = $1",
                    DEMO_TENANT,
                )
    assert played is not None, "\n".join(lines)
    names = [name for name, _ in played.events]
    assert names.count("payment.authorized") == 3
    assert names.count("payment.captured") == 3
    assert names.count("payment.action_required") == 2
    assert names.count("payment.refunded") == 1
    assert {row["processor"] for row in rows} == {"stripe", "paypal", "hesabpay"}
    assert "parked" not in {row["status"] for row in rows}
    assert any("event  payment.refunded" in line for line in lines)
