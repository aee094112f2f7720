"""payment-api over real HTTP in front of a tenant with Stripe (the sandbox) attached.

``WebhookStack`` serves the real Starlette app with uvicorn on a free port; its ingress
verifies through the same ``TenantPorts`` (real Stripe adapter) the saga handlers use, and
its inbox applier is the handlers' own. Events are either the sandbox's (signed by it) or
written here and signed with the sandbox's signing code, to script orders the sandbox
would not produce by itself.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import httpx

from gateway.api import ApiConfig, Probes, WebhookEndpoint, create_app, serving
from handlers.webhooks import WebhookIngress
from sandbox.stripe_wire import signature_header
from schemas.processors import VendorEnv
from tests.integration.saga_helpers import Payments
from tests.integration.stripe_support import WEBHOOK_SECRET

BODY_LIMIT: Final = 8 * 1024
STRIPE_ACCOUNT: Final = "acct_stripe"


def stripe_event(  # noqa: PLR0913 (an event's parts, by keyword)
    event_type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    account: str | None = None,
    age_s: float = 0,
    secret: str = WEBHOOK_SECRET,
) -> tuple[dict[str, str], bytes]:
    """A Stripe event about ``obj``, signed as Stripe signs it ``age_s`` seconds ago."""
    event: dict[str, Any] = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time() - age_s),
        "livemode": False,
        "data": {"object": obj},
    }
    if account is not None:
        event["account"] = account
    body = json.dumps(event, separators=(",", ":")).encode()
    stamp = int(time.time() - age_s)
    headers = {
        "content-type": "application/json; charset=utf-8",
        "stripe-signature": signature_header([secret], stamp, body),
    }
    return headers, body


def intent(  # noqa: PLR0913 (an intent's fields, by keyword)
    intent_id: str,
    payment_id: str,
    amount: int,
    *,
    capturable: int = 0,
    received: int = 0,
    status: str = "requires_capture",
) -> dict[str, Any]:
    """A PaymentIntent object as events carry it."""
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": capturable,
        "amount_received": received,
        "currency": "usd",
        "status": status,
        "metadata": {"payment_id": payment_id},
    }


def refunded_charge(
    charge_id: str, intent_id: str, payment_id: str, refunded: int
) -> dict[str, Any]:
    """A Charge object as ``charge.refunded`` carries it (``amount_refunded``: the total)."""
    return {
        "id": charge_id,
        "object": "charge",
        "payment_intent": intent_id,
        "amount": 100_000,
        "amount_refunded": refunded,
        "currency": "usd",
        "metadata": {"payment_id": payment_id},
    }


@dataclass
class WebhookStack:
    """payment-api serving one tenant's webhooks, and the handlers behind it."""

    payments: Payments
    ingress: WebhookIngress
    url: str
    client: httpx.AsyncClient

    @property
    def tenant(self) -> str:
        """The tenant."""
        return self.payments.tenant

    def path(self, processor: str = "stripe", tenant: str | None = None) -> str:
        """The tenant's webhook path for ``processor``."""
        return f"/webhooks/{processor}/{tenant or self.tenant}"

    async def post(
        self, signed: tuple[dict[str, str], bytes], path: str | None = None
    ) -> httpx.Response:
        """POST a signed webhook to the tenant's Stripe endpoint (or ``path``)."""
        headers, body = signed
        return await self.client.post(path or self.path(), content=body, headers=headers)

    async def inbox(self) -> list[dict[str, Any]]:
        """Every inbox row of the tenant, oldest first."""
        async with self.payments.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT inbox_id, processor, vendor_event_id, status, attempts, last_error,"
                " payment_id, payload FROM payments_central.webhook_inbox"
                " WHERE tenant_id = $1 ORDER BY inbox_id",
                self.tenant,
            )
        return [dict(row) for row in rows]

    async def apply(self) -> int:
        """Apply the inbox rows due now (other tests' too: they share the database)."""
        return await self.payments.services.inbox.run_once()

    async def retry_later(self, delta: timedelta = timedelta(seconds=5)) -> int:
        """Move the clock by ``delta`` and apply what became due."""
        self.payments.advance(delta)
        return await self.apply()

    async def transitions(self, payment_id: str, to_state: str) -> int:
        """How many times the payment entered ``to_state``."""
        async with self.payments.db.tenant_transaction(self.tenant) as tx:
            count: int = await tx.conn.fetchval(
                "SELECT count(*) FROM payment_transitions WHERE payment_id = $1 AND to_state = $2",
                payment_id,
                to_state,
            )
        return count

    async def operation_reference(self, payment_id: str, seq: int) -> str:
        """The vendor reference recorded on an operation."""
        async with self.payments.db.tenant_transaction(self.tenant) as tx:
            value: str = await tx.conn.fetchval(
                "SELECT vendor_reference FROM payment_operations WHERE payment_id = $1"
                " AND seq = $2",
                payment_id,
                seq,
            )
        return value


@asynccontextmanager
async def webhook_stack(
    payments: Payments, config: ApiConfig | None = None
) -> AsyncIterator[WebhookStack]:
    """Serve payment-api for ``payments``' tenant on a free loopback port."""
    ingress = WebhookIngress(
        payments.db, payments.services.ports, payments.clock, VendorEnv.SANDBOX
    )
    endpoint = WebhookEndpoint(
        ingress, config or ApiConfig(max_body_bytes=BODY_LIMIT), payments.clock
    )

    async def database() -> str | None:
        async with payments.db.connection() as conn:
            await conn.fetchval("SELECT 1")
        return None

    app = create_app(endpoint, Probes({"database": database}))
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield WebhookStack(payments, ingress, url, client)


async def concurrently(
    count: int, stack: WebhookStack, signed: tuple[dict[str, str], bytes]
) -> list[int]:
    """POST the same webhook ``count`` times at once; the status codes."""
    responses = await asyncio.gather(*(stack.post(signed) for _ in range(count)))
    return [r.status_code for r in responses]
