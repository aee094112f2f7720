"""verify-tenant (MIGRATION_PLAN 2.3) against the Stripe sandbox, webhooks over real HTTP."""

import json

import pytest

from handlers.verification import StepResult, TenantVerifier, VerifyConfig
from sandbox.stripe_api import FakeStripe
from tests.integration.conftest import Cli
from tests.integration.webhook_support import WebhookStack

pytestmark = pytest.mark.integration


def verifier(stack: WebhookStack, timeout_s: float) -> TenantVerifier:
    """The tenant's own handlers, waiting ``timeout_s`` for each webhook."""
    services = stack.payments.services
    return TenantVerifier(
        stack.payments.db,
        services.commands,
        services.inbox,
        services.ports,
        stack.payments.clock,
        config=VerifyConfig(webhook_timeout_s=timeout_s, poll_s=0.05),
    )


async def ready_flag_and_events(stack: WebhookStack) -> tuple[bool, list[dict[str, object]]]:
    """The registry flag, and the tenant.payments_ready events in the outbox."""
    async with stack.payments.db.connection() as conn:
        ready = await conn.fetchval(
            "SELECT payments_ready FROM payments_central.tenant_schema_registry"
            " WHERE tenant_id = $1",
            stack.tenant,
        )
        rows = await conn.fetch(
            "SELECT data FROM payments_central.outbox WHERE tenant_id = $1"
            " AND attributes->>'ce-type' LIKE '%tenant.payments_ready.v1'",
            stack.tenant,
        )
    return ready, [json.loads(row["data"]) for row in rows]


async def test_a_tenant_whose_processor_passes_every_step_is_marked_ready(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """Authorize 1.00, void it, see the webhook applied: then the flag and the event."""
    hook_sandbox.configure_webhooks(f"{stack.url}{stack.path()}")
    seen: list[StepResult] = []

    report = await verifier(stack, 10).verify(stack.tenant, seen.append)

    assert [(s.step, s.status) for s in seen] == [
        ("authorize", "passed"),
        ("void", "passed"),
        ("webhook", "passed"),
        ("payments_ready", "passed"),
    ]
    assert report.ready
    payment_id = seen[0].payment_id
    assert payment_id is not None
    assert await stack.payments.state(payment_id) == "voided"
    ready, events = await ready_flag_and_events(stack)
    assert ready is True
    assert [(e["tenant_id"], e["processors"]) for e in events] == [(stack.tenant, ["stripe"])]


async def test_without_the_vendors_webhook_the_tenant_is_not_ready(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """The endpoint is not registered at the vendor: the webhook step fails, no flag."""
    hook_sandbox.configure_webhooks(None)
    seen: list[StepResult] = []

    report = await verifier(stack, 0.5).verify(stack.tenant, seen.append)

    assert not report.ready
    webhook = next(s for s in seen if s.step == "webhook")
    assert webhook.status == "failed"
    assert "nothing arrived" in webhook.detail
    assert seen[-1].step == "payments_ready"
    assert seen[-1].status == "failed"
    assert await ready_flag_and_events(stack) == (False, [])


async def test_a_declined_test_authorization_fails_its_step(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """The vendor refuses the 1.00: the authorize step fails with the reason; no void tried."""
    hook_sandbox.decline_next()
    seen: list[StepResult] = []

    report = await verifier(stack, 0.5).verify(stack.tenant, seen.append)

    assert not report.ready
    assert [(s.step, s.status) for s in seen] == [
        ("authorize", "failed"),
        ("payments_ready", "failed"),
    ]
    assert "failed" in seen[0].detail


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("verify-tenant", "tnt_nobody_at_all"), "unknown tenant"),
        (("verify-tenant", "not a tenant"), "Invalid value"),
        (("verify-tenant", "tnt_x", "--webhook-timeout", "0"), "Invalid value"),
    ],
)
def test_verify_tenant_refuses_bad_input(cli: Cli, args: tuple[str, ...], message: str) -> None:
    """Unknown or malformed tenant, bad timeout: exit 2 with a reason, nothing done."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
