"""Dev mode's preparation: central migrations, the demo tenant and its processors."""

from pathlib import Path

import pytest

from gateway.bootstrap import bootstrap
from gateway.dev import DEMO_TENANT, prepare
from gateway.payments import services_for
from gateway.sandboxes import running_sandboxes
from gateway.settings import ProcessorBackend, Settings
from handlers.commands import Received
from schemas.commands import AuthorizePayment
from schemas.processors import Processor
from tenancy.vendors import list_attachments

pytestmark = pytest.mark.integration


async def test_prepare_is_repeatable_and_attaches_every_processor(
    fresh_dsn: str, tmp_path: Path
) -> None:
    """Running dev preparation twice leaves one demo tenant with the three processors attached."""
    settings = Settings(
        database_url=fresh_dsn,
        local_dir=tmp_path,
        secret_file_dir=tmp_path / "secrets",
        archive_dir=tmp_path / "archive",
    )
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
        settings = Settings(
            database_url=fresh_dsn,
            local_dir=tmp_path,
            secret_file_dir=tmp_path / "secrets",
            archive_dir=tmp_path / "archive",
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
