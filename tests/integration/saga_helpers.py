"""A tenant with three fake processors attached, and the payment handlers, on real Postgres."""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.payments import (
    PaymentServices,
    PaymentTuning,
    build_payment_services,
    fake_processors,
    shared_factory,
)
from handlers.commands import Received
from handlers.executor import RetryPolicy
from handlers.ports import PortFactory
from handlers.timers import TimerConfig
from processors.breaker import BreakerPolicy
from processors.fake import FakeProcessor
from schemas.catalog import type_of
from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    Command,
    RefundPayment,
    VoidPayment,
)
from schemas.money import Money
from schemas.processors import Processor, VendorEnv
from tenancy.db import Database
from tests.integration.conftest import FakeClock

SOURCE = "//booking.melmastoon.ghasi.io"
FAST = PaymentTuning(
    retry=RetryPolicy(attempts=3, total_seconds=5, initial_seconds=0.001, max_seconds=0.01),
    timers=TimerConfig(poll_seconds=0.05),
    breaker=BreakerPolicy(),
)
PRECEDENCE = {Processor.STRIPE: 10, Processor.PAYPAL: 20, Processor.HESABPAY: 30}
_ATTACH = """
INSERT INTO payments_central.vendor_attachments
       (tenant_id, processor, env, account_ref, api_key_ref, webhook_secret_ref, precedence)
VALUES ($1, $2, 'sandbox', $3, $4, NULL, $5)
"""


async def attach_all(db: Database, tenant: str, processors: tuple[Processor, ...]) -> None:
    """Attach ``processors`` to ``tenant`` in the sandbox environment."""
    async with db.connection() as conn:
        for processor in processors:
            await conn.execute(
                _ATTACH,
                tenant,
                processor.value,
                f"acct_{processor.value}",
                f"projects/p/secrets/{tenant}__{processor.value}__api_key/versions/latest",
                PRECEDENCE[processor],
            )


def authorize(
    payment_id: str, minor: int = 1250, currency: str = "USD", **extra: str
) -> AuthorizePayment:
    """An authorize command for ``payment_id``; ``extra`` sets key=, method= or any field."""
    method = extra.pop("method", "card" if currency != "AFN" else "wallet")
    body: dict[str, object] = {
        "payment_id": payment_id,
        "idempotency_key": extra.pop("key", f"auth-{payment_id}"),
        "amount": {"minor": minor, "currency": currency},
        "payment_method": {"type": method, "token": "pm_card_visa"},
        "booking_reference": f"BK-{payment_id}",
    }
    return AuthorizePayment.model_validate(body | extra)


def capture(
    payment_id: str, minor: int | None = None, *, final: bool = True, key: str | None = None
) -> CapturePayment:
    """A capture command."""
    return CapturePayment(
        payment_id=payment_id,
        idempotency_key=key or f"cap-{payment_id}-{minor}-{final}",
        amount=None if minor is None else Money(minor=minor, currency="USD"),
        final=final,
    )


def refund(payment_id: str, minor: int | None = None, *, key: str | None = None) -> RefundPayment:
    """A refund command."""
    return RefundPayment(
        payment_id=payment_id,
        idempotency_key=key or f"ref-{payment_id}-{minor}",
        amount=None if minor is None else Money(minor=minor, currency="USD"),
    )


def void(payment_id: str) -> VoidPayment:
    """A void command."""
    return VoidPayment(
        payment_id=payment_id, idempotency_key=f"void-{payment_id}", reason="requested_by_customer"
    )


def cancel(payment_id: str) -> CancelPayment:
    """A cancel command."""
    return CancelPayment(
        payment_id=payment_id, idempotency_key=f"cancel-{payment_id}", reason="booking cancelled"
    )


@dataclass
class Payments:
    """The payment handlers for one tenant, with fake processors and a hand-moved clock."""

    db: Database
    tenant: str
    clock: FakeClock
    fakes: dict[Processor, FakeProcessor]
    services: PaymentServices
    sent: list[str] = field(default_factory=list)

    async def send(self, command: Command, *, message_id: str | None = None) -> str:
        """Deliver ``command`` as the consumer would; returns its ce-id."""
        ce_id = message_id or str(uuid.uuid4())
        await self.services.commands.handle(Received(self.tenant, SOURCE, ce_id, command))
        return ce_id

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        self.clock.now += delta

    async def fire_timers(self) -> int:
        """Fire this tenant's due timers; returns how many fired."""
        return await self.services.timers.run_once([self.tenant])

    async def state(self, payment_id: str) -> str:
        """The payment's stored state."""
        async with self.db.tenant_transaction(self.tenant) as tx:
            value: str = await tx.conn.fetchval(
                "SELECT state FROM payments WHERE payment_id = $1", payment_id
            )
        return value

    async def row(self, payment_id: str) -> dict[str, Any]:
        """The payment's stored row."""
        async with self.db.tenant_transaction(self.tenant) as tx:
            row = await tx.conn.fetchrow("SELECT * FROM payments WHERE payment_id = $1", payment_id)
        assert row is not None
        return dict(row)

    async def events(self, payment_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(type name, body) of the tenant's events in the outbox, oldest first."""
        async with self.db.connection() as conn:
            rows = await conn.fetch(
                "SELECT attributes->>'ce-type' AS type, data FROM payments_central.outbox"
                " WHERE tenant_id = $1 AND ($2::text IS NULL OR ordering_key = $2)"
                " ORDER BY outbox_id",
                self.tenant,
                payment_id,
            )
        return [(short(row["type"]), json.loads(row["data"])) for row in rows]

    async def event_names(self, payment_id: str | None = None) -> list[str]:
        """The type names of the tenant's events, oldest first."""
        return [name for name, _ in await self.events(payment_id)]


def short(ce_type: str) -> str:
    """``payment.authorized`` from the full CloudEvents type."""
    return ".".join(ce_type.rsplit(".", 3)[-3:-1])


def rebuild(payments: Payments, factory: PortFactory | None = None) -> Payments:
    """The same tenant and processors with new handlers, as after a worker restart."""
    services = build_payment_services(
        payments.db,
        factory or shared_factory(payments.fakes),
        payments.clock,
        env=VENDOR_ENV,
        tuning=FAST,
    )
    return Payments(payments.db, payments.tenant, payments.clock, payments.fakes, services)


async def make_payments(
    db: Database,
    tenant: str,
    processors: tuple[Processor, ...] = tuple(Processor),
    *,
    latency: float = 0,
    factory: Callable[[dict[Processor, FakeProcessor]], PortFactory] | None = None,
) -> Payments:
    """Handlers for ``tenant`` with ``processors`` attached."""
    await attach_all(db, tenant, processors)
    clock = FakeClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    fakes = fake_processors(clock, latency=latency)
    services = build_payment_services(
        db, (factory or shared_factory)(fakes), clock, env=VENDOR_ENV, tuning=FAST
    )
    return Payments(db, tenant, clock, fakes, services)


AUTHORIZE_TYPE = type_of(AuthorizePayment)
VENDOR_ENV = VendorEnv.SANDBOX
