"""Fixtures of the webhook and inbox tests: payment-api in front of a Stripe tenant."""

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from sandbox.stripe_api import FakeStripe
from schemas.processors import Processor
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.integration.outbox_helpers import provisioned
from tests.integration.saga_helpers import Payments, make_payments
from tests.integration.stripe_support import API_KEY, WEBHOOK_SECRET
from tests.integration.test_sagas_stripe import stripe_factory
from tests.integration.webhook_support import WebhookStack, webhook_stack

if TYPE_CHECKING:
    from processors.stripe import StripeAdapter


@pytest.fixture(scope="module")
def hook_sandbox() -> Iterator[FakeStripe]:
    """One Stripe sandbox for the module; it delivers no webhooks unless a test asks."""
    with FakeStripe(api_keys=(API_KEY,), webhook_secret=WEBHOOK_SECRET) as sandbox:
        yield sandbox


@pytest.fixture
async def hook_payments(
    db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
    hook_sandbox: FakeStripe,
) -> AsyncIterator[Payments]:
    """A tenant with Stripe (the sandbox) attached, for the webhook tests."""
    made: list[StripeAdapter] = []
    tenant = await provisioned(db, tenant_migrations, tenant_ids())
    payments = await make_payments(
        db, tenant, (Processor.STRIPE,), factory=stripe_factory(hook_sandbox, made)
    )
    yield payments
    for adapter in made:
        await adapter.aclose()
    hook_sandbox.configure_webhooks(None)
    hook_sandbox.clear_faults()


@pytest.fixture
async def stack(hook_payments: Payments) -> AsyncIterator[WebhookStack]:
    """payment-api for the tenant."""
    async with webhook_stack(hook_payments) as served:
        yield served
