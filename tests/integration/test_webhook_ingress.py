"""payment-api's webhook endpoint over real HTTP: what it stores, what it refuses, and why."""

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest
import structlog

from gateway.api import ApiConfig
from handlers.webhooks import SWITCH_TTL, pause_ingestion, resume_ingestion
from sandbox.stripe_api import FakeStripe
from sandbox.stripe_wire import signature_header
from schemas.processors import Processor
from tenancy.db import Database
from tenancy.migration_files import Migration
from tenancy.registry import SERVED_TTL
from tests.integration.outbox_helpers import provisioned
from tests.integration.saga_helpers import Payments, attach_all, authorize
from tests.integration.stripe_support import WEBHOOK_SECRET
from tests.integration.test_sagas_stripe import intents_for
from tests.integration.webhook_support import (
    BODY_LIMIT,
    WebhookStack,
    concurrently,
    intent,
    stripe_event,
    webhook_stack,
)

pytestmark = pytest.mark.integration
PAUSE_SEEN = SWITCH_TTL + timedelta(seconds=1)
SERVED_FORGOTTEN = SERVED_TTL + timedelta(seconds=1)


def authorized_event(  # noqa: PLR0913 (the event's parts, by keyword)
    payment_id: str = "pw1",
    intent_id: str = "pi_w1",
    *,
    event_id: str | None = None,
    account: str | None = None,
    age_s: float = 0,
    secret: str = WEBHOOK_SECRET,
) -> tuple[dict[str, str], bytes]:
    """A signed ``payment_intent.amount_capturable_updated`` for 12.50 USD."""
    obj = intent(intent_id, payment_id, 1250, capturable=1250)
    return stripe_event(
        "payment_intent.amount_capturable_updated",
        obj,
        event_id=event_id,
        account=account,
        age_s=age_s,
        secret=secret,
    )


async def test_a_verified_webhook_is_stored_once_and_answered_200(stack: WebhookStack) -> None:
    """200 with the event id; one pending inbox row holding the normalized notification."""
    signed = authorized_event(event_id="evt_stored_1")
    response = await stack.post(signed)
    assert response.status_code == 200
    assert response.json() == {"status": "stored", "event_id": "evt_stored_1"}
    [row] = await stack.inbox()
    assert (row["processor"], row["vendor_event_id"], row["status"]) == (
        "stripe",
        "evt_stored_1",
        "pending",
    )
    assert row["payment_id"] == "pw1"
    assert '"kind": "authorized"' in row["payload"] or '"kind":"authorized"' in row["payload"]

    again = await stack.post(signed)
    assert again.json() == {"status": "duplicate", "event_id": "evt_stored_1"}
    assert len(await stack.inbox()) == 1


async def test_a_tampered_body_is_refused_and_nothing_is_stored(stack: WebhookStack) -> None:
    """One changed byte: 400 bad_signature, no row."""
    headers, body = authorized_event()
    response = await stack.post((headers, body.replace(b"1250", b"9250", 1)))
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_signature"
    assert await stack.inbox() == []


async def test_a_stale_signature_is_refused(stack: WebhookStack) -> None:
    """Signed ten minutes ago (the tolerance is five): 400 stale."""
    response = await stack.post(authorized_event(age_s=600))
    assert (response.status_code, response.json()["reason"]) == (400, "stale")
    assert await stack.inbox() == []


async def test_a_webhook_signed_with_another_secret_is_refused(stack: WebhookStack) -> None:
    """Signed with another endpoint's secret (another tenant's): 400, nothing stored."""
    response = await stack.post(authorized_event(secret="whsec_another_tenant"))
    assert (response.status_code, response.json()["reason"]) == (400, "bad_signature")
    assert await stack.inbox() == []


async def test_an_event_of_another_connected_account_is_refused(stack: WebhookStack) -> None:
    """The tenant's own secret, but another account's event: 400 mismatch."""
    response = await stack.post(authorized_event(account="acct_someone_else"))
    assert (response.status_code, response.json()["reason"]) == (400, "mismatch")
    assert await stack.inbox() == []


async def test_the_wrong_tenant_gets_404_or_400_never_a_row(
    stack: WebhookStack,
    db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> None:
    """Unknown, malformed, not attached to Stripe, unknown processor: refused, nothing stored."""
    other = await provisioned(db, tenant_migrations, tenant_ids())  # no processor attached
    signed = authorized_event()
    cases = {
        stack.path(tenant="tnt_nobody_here"): 404,
        stack.path(tenant="not-a-tenant"): 404,
        stack.path(tenant=other): 404,
        stack.path(processor="adyen"): 404,
    }
    for path, status in cases.items():
        response = await stack.post(signed, path)
        assert response.status_code == status, path
        assert "error" in response.json()
    async with db.connection() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM payments_central.webhook_inbox WHERE payment_id = 'pw1'"
            " AND tenant_id = ANY($1::text[])",
            [stack.tenant, other],
        )
    assert stored == 0


async def test_archived_tenants_get_404_and_soft_deleted_ones_are_still_served(
    stack: WebhookStack, db: Database
) -> None:
    """Soft-deleted: webhooks still accepted (refunds continue). Archived: 404."""
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'soft_deleted',"
            " soft_deleted_at = now() WHERE tenant_id = $1",
            stack.tenant,
        )
    assert (await stack.post(authorized_event(event_id="evt_soft"))).status_code == 200

    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'archived',"
            " archived_at = now(), archive_uri = 'file:///archive/x' WHERE tenant_id = $1",
            stack.tenant,
        )
    stack.payments.advance(SERVED_FORGOTTEN)
    response = await stack.post(authorized_event(event_id="evt_archived"))
    assert response.status_code == 404
    assert [r["vendor_event_id"] for r in await stack.inbox()] == ["evt_soft"]


async def test_oversize_bodies_get_413_declared_or_streamed(stack: WebhookStack) -> None:
    """Over the limit by Content-Length, or by a chunked stream: 413 before verification."""
    headers, _ = authorized_event()
    big = b"{" + b" " * (BODY_LIMIT + 10) + b"}"
    declared = await stack.client.post(stack.path(), content=big, headers=headers)
    assert declared.status_code == 413
    assert declared.json()["limit"] == str(BODY_LIMIT)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 1024

    streamed = await stack.client.post(stack.path(), content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert await stack.inbox() == []


async def test_wrong_content_types_get_415(stack: WebhookStack) -> None:
    """Form bodies, text, or no content type at all: 415."""
    headers, body = authorized_event()
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        sent = {k: v for k, v in headers.items() if k != "content-type"}
        if content_type is not None:
            sent["content-type"] = content_type
        response = await stack.client.post(stack.path(), content=body, headers=sent)
        assert response.status_code == 415, content_type
    assert await stack.inbox() == []


async def test_malformed_bodies_that_verify_are_refused(stack: WebhookStack) -> None:
    """Signed, but not an event we can read: 400 malformed, nothing stored."""
    for body in (b"[]", b'{"id": "evt_x"}', b"not json"):
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "stripe-signature": signature_header([WEBHOOK_SECRET], stamp, body),
        }
        response = await stack.client.post(stack.path(), content=body, headers=headers)
        assert (response.status_code, response.json()["reason"]) == (400, "malformed"), body
    assert await stack.inbox() == []


async def test_a_storm_of_one_event_stores_one_row_and_moves_the_payment_once(
    stack: WebhookStack, hook_sandbox: FakeStripe
) -> None:
    """The sandbox's own event about an in-doubt charge, 50 times at once: one row, one move."""
    hook_sandbox.timeout_next("payment_intents.create", applied=True)
    await stack.payments.send(authorize("pw-storm", 1250))
    assert await stack.payments.state("pw-storm") == "in_doubt"
    [pi] = await intents_for(hook_sandbox, "pw-storm")
    signed = hook_sandbox.signed_event_about(pi["id"])

    statuses = await concurrently(50, stack, signed)

    assert statuses == [200] * 50
    rows = await stack.inbox()
    assert len(rows) == 1
    await stack.apply()
    assert await stack.payments.state("pw-storm") == "authorized"
    assert await stack.transitions("pw-storm", "authorized") == 1
    assert [r["status"] for r in await stack.inbox()] == ["applied"]
    assert await stack.payments.event_names("pw-storm") == ["payment.authorized"]


async def test_paused_ingestion_answers_503_then_accepts_after_resume(
    stack: WebhookStack, db: Database
) -> None:
    """Paused: 503 with Retry-After and nothing stored; resumed: the retry is stored."""
    assert await pause_ingestion(db, "region failover drill", "sre@example.test")
    stack.payments.advance(PAUSE_SEEN)
    signed = authorized_event(event_id="evt_paused")
    paused = await stack.post(signed)
    assert paused.status_code == 503
    assert paused.headers["retry-after"] == "60"
    assert paused.json() == {
        "error": "ingestion_paused",
        "detail": "region failover drill",
    }
    assert await stack.inbox() == []

    assert await resume_ingestion(db, "sre@example.test")
    stack.payments.advance(PAUSE_SEEN)
    resumed = await stack.post(signed)
    assert resumed.status_code == 200
    assert [r["vendor_event_id"] for r in await stack.inbox()] == ["evt_paused"]


async def test_a_configured_pause_answers_503_without_the_database(hook_payments: Payments) -> None:
    """PAYMENTS_WEBHOOK_INGESTION_PAUSED: 503 before anything is read."""
    async with webhook_stack(
        hook_payments, ApiConfig(static_pause="restoring the database")
    ) as stack:
        response = await stack.post(authorized_event())
    assert (response.status_code, response.json()["error"]) == (503, "ingestion_paused")


async def test_an_allowlist_refuses_other_sources(hook_payments: Payments) -> None:
    """Stripe limited to a network loopback is not in: 403; PayPal (no list) unaffected."""
    networks = (ipaddress.ip_network("203.0.113.0/24"),)
    config = ApiConfig(max_body_bytes=BODY_LIMIT, allowlists={Processor.STRIPE: networks})
    async with webhook_stack(hook_payments, config) as stack:
        response = await stack.post(authorized_event())
        assert (response.status_code, response.json()["error"]) == (403, "source_not_allowed")
        other = await stack.post(authorized_event(), stack.path(processor="paypal"))
        assert other.status_code == 404  # reached the tenant check: PayPal is not attached
        assert await stack.inbox() == []
    allowed = ApiConfig(
        max_body_bytes=BODY_LIMIT,
        allowlists={Processor.STRIPE: (ipaddress.ip_network("127.0.0.0/8"),)},
    )
    async with webhook_stack(hook_payments, allowed) as stack:
        assert (await stack.post(authorized_event())).status_code == 200


async def test_connect_events_are_routed_by_account(stack: WebhookStack, db: Database) -> None:
    """The platform endpoint finds the tenant by ``account``; an unknown account is dropped."""
    account = "acct_" + stack.tenant.replace("_", "")
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments_central.vendor_attachments SET account_ref = $2 WHERE tenant_id = $1",
            stack.tenant,
            account,
        )
    routed = await stack.post(
        authorized_event(event_id=f"evt_connect_{stack.tenant}", account=account),
        "/webhooks/stripe/connect",
    )
    assert routed.json() == {"status": "stored", "event_id": f"evt_connect_{stack.tenant}"}
    unrouted = await stack.post(
        authorized_event(account="acct_notours"), "/webhooks/stripe/connect"
    )
    assert (unrouted.status_code, unrouted.json()) == (200, {"status": "unrouted"})
    no_account = await stack.post(authorized_event(), "/webhooks/stripe/connect")
    assert (no_account.status_code, no_account.json()["reason"]) == (400, "malformed")
    forged = await stack.post(
        authorized_event(account=account, secret="whsec_forged"), "/webhooks/stripe/connect"
    )
    assert (forged.status_code, forged.json()["reason"]) == (400, "bad_signature")
    assert [r["vendor_event_id"] for r in await stack.inbox()] == [f"evt_connect_{stack.tenant}"]


async def test_health_and_readiness(stack: WebhookStack) -> None:
    """/healthz answers; /readyz runs its checks."""
    health = await stack.client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = await stack.client.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "checks": ["database"]})


async def test_wrong_methods_are_refused(stack: WebhookStack) -> None:
    """GET on a webhook path: 405; an unknown path: 404."""
    assert (await stack.client.get(stack.path())).status_code == 405
    assert (await stack.client.post("/webhooks")).status_code == 404


async def test_ingress_answers_while_the_applier_is_busy(stack: WebhookStack) -> None:
    """Many distinct events at once are all stored (each its own row)."""
    signed = [authorized_event(f"pw-many-{n}", f"pi_many_{n}") for n in range(40)]
    responses = await asyncio.gather(*(stack.post(s) for s in signed))
    assert {r.status_code for r in responses} == {200}
    assert len(await stack.inbox()) == 40


async def test_a_row_the_inbox_refuses_gets_503_and_spares_its_batch(
    stack: WebhookStack, db: Database
) -> None:
    """Written in one statement with 20 others, a refused row alone gets 503 (retried)."""
    async with db.connection() as conn:
        await conn.execute(
            "ALTER TABLE payments_central.webhook_inbox ADD CONSTRAINT refuse_for_test"
            " CHECK (vendor_event_id NOT LIKE 'evt_refused_%') NOT VALID"
        )
    try:
        good = [authorized_event(event_id=f"evt_batch_{n}") for n in range(20)]
        bad = authorized_event(event_id="evt_refused_1")
        responses = await asyncio.gather(*(stack.post(s) for s in [*good[:10], bad, *good[10:]]))
    finally:
        async with db.connection() as conn:
            await conn.execute(
                "ALTER TABLE payments_central.webhook_inbox DROP CONSTRAINT refuse_for_test"
            )
    refused = responses[10]
    assert (refused.status_code, refused.json()["error"]) == (503, "unavailable")
    assert refused.headers["retry-after"] == "60"
    assert [r.status_code for r in responses[:10] + responses[11:]] == [200] * 20
    stored = {r["vendor_event_id"] for r in await stack.inbox()}
    assert stored == {f"evt_batch_{n}" for n in range(20)}
    assert (await stack.post(bad)).status_code == 200  # the vendor's retry, later


async def test_a_tenant_archived_while_remembered_as_served_stores_nothing(
    stack: WebhookStack, db: Database
) -> None:
    """The ingress still remembers the tenant as served; the inbox insert refuses: 404."""
    assert (await stack.post(authorized_event(event_id="evt_before_archive"))).status_code == 200
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE payments_central.tenant_schema_registry SET status = 'archived',"
            " soft_deleted_at = now(), archived_at = now(), archive_uri = 'file:///a/x'"
            " WHERE tenant_id = $1",
            stack.tenant,
        )
    late = await stack.post(authorized_event(event_id="evt_after_archive"))
    assert (late.status_code, late.json()["error"]) == (404, "unknown_tenant")
    assert [r["vendor_event_id"] for r in await stack.inbox()] == ["evt_before_archive"]


async def test_one_event_delivered_to_two_tenants_is_stored_for_each(
    stack: WebhookStack,
    db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> None:
    """The same vendor event at two tenants' endpoints: each keeps its row; redelivery none."""
    other = await provisioned(db, tenant_migrations, tenant_ids())
    await attach_all(db, other, (Processor.STRIPE,))
    signed = authorized_event(event_id="evt_two_tenants")
    first = await stack.post(signed)
    second = await stack.post(signed, stack.path(tenant=other))
    again = await stack.post(signed, stack.path(tenant=other))
    assert [r.json()["status"] for r in (first, second, again)] == [
        "stored",
        "stored",
        "duplicate",
    ]
    async with db.connection() as conn:
        tenants = await conn.fetch(
            "SELECT tenant_id FROM payments_central.webhook_inbox"
            " WHERE vendor_event_id = 'evt_two_tenants' ORDER BY inbox_id"
        )
    assert [row["tenant_id"] for row in tenants] == [stack.tenant, other]


async def test_a_card_number_in_a_verified_event_is_refused_and_never_stored(
    stack: WebhookStack,
) -> None:
    """Signed, but its metadata carries a card number: 400, no row, not in the logs."""
    pan = "4242424242424242"
    with structlog.testing.capture_logs() as logs:
        response = await stack.post(authorized_event(payment_id=pan, event_id="evt_pan"))
    assert (response.status_code, response.json()["reason"]) == (400, "malformed")
    assert pan not in response.text
    assert pan not in repr(logs)
    assert await stack.inbox() == []
