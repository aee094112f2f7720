"""Verifying a tenant's processors before it takes payments: MIGRATION_PLAN 2.3.

For each enabled processor: a 1.00 test authorization (manual capture where the processor
holds funds) through the tenant's own saga, then its void, then the vendor's webhook about
the test payment, received by payment-api and applied by an inbox applier. Only when every
step passed is the tenant marked payments-ready: the registry flag and a
``tenant.payments_ready`` event (through the outbox) for tenant-service.

Each step is reported as it finishes, with its reason. The test payments are ordinary
payments of the tenant (``verify-<processor>-<hex>``), visible with ``payments show``.

The webhook step waits for an inbox row naming the test payment. While it waits this
process applies due inbox rows itself (as a worker would; rows are claimed with SKIP
LOCKED, so running workers are not disturbed). A processor whose test authorization
stops at a customer step (a redirect, PayPal's approval, HesabPay's hosted checkout)
sends no webhook for it: the step is skipped with that reason, and does not block.
"""

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import structlog

from handlers.commands import PaymentCommands, Received
from handlers.inbox import InboxApplier
from handlers.ports import TenantPorts
from outbox.store import OutgoingEvent, append
from processors.port import PaymentMethodType
from schemas.catalog import type_of
from schemas.clock import Clock
from schemas.commands import AuthorizePayment, PaymentMethod, VoidPayment
from schemas.envelope import SOURCE, Envelope
from schemas.events import TenantPaymentsReady
from schemas.money import Money
from schemas.processors import Processor
from schemas.topology import PAYMENT_EVENTS
from tenancy.db import Database

_log = structlog.get_logger(__name__)

VERIFY_SOURCE: Final = "//payments-admin-cli/verify-tenant"
TEST_MINOR: Final = 100
CURRENCIES: Final = ("USD", "GBP", "EUR", "AFN")
METHODS: Final[tuple[PaymentMethodType, ...]] = ("card", "paypal", "wallet")
_TOKENS: Final[dict[PaymentMethodType, str | None]] = {
    "card": "pm_card_visa",
    "paypal": None,
    "wallet": None,
}
_STATE: Final = "SELECT state, attention FROM payments WHERE payment_id = $1"
_LAST_ERROR: Final = """
SELECT coalesce(failure_code, '') || ' ' || coalesce(last_error, '') FROM payment_operations
 WHERE payment_id = $1 ORDER BY seq DESC LIMIT 1
"""
_WEBHOOK: Final = """
SELECT status, last_error, event_type FROM payments_central.webhook_inbox
 WHERE tenant_id = $1 AND processor = $2 AND payment_id = $3
 ORDER BY (status = 'applied') DESC, inbox_id
 LIMIT 1
"""
_READY: Final = """
UPDATE payments_central.tenant_schema_registry SET payments_ready = true
 WHERE tenant_id = $1
"""

StepName = Literal["authorize", "void", "webhook", "payments_ready"]
StepStatus = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of the verification."""

    processor: Processor | None
    step: StepName
    status: StepStatus
    detail: str
    payment_id: str | None = None


@dataclass(slots=True)
class VerificationReport:
    """Every step, in order; ``ready`` when the tenant was marked payments-ready."""

    tenant_id: str
    steps: list[StepResult] = field(default_factory=list)
    ready: bool = False

    @property
    def failed(self) -> list[StepResult]:
        """The steps that failed."""
        return [s for s in self.steps if s.status == "failed"]


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    """How long to wait for each vendor's webhook, and how often to look."""

    webhook_timeout_s: float = 60.0
    poll_s: float = 0.5


class TenantVerifier:
    """Runs MIGRATION_PLAN 2.3 for one tenant."""

    def __init__(  # noqa: PLR0913 (the handlers it drives, named at the call site)
        self,
        db: Database,
        commands: PaymentCommands,
        inbox: InboxApplier,
        ports: TenantPorts,
        clock: Clock,
        *,
        config: VerifyConfig = VerifyConfig(),
    ) -> None:
        """Drive the tenant's own saga handlers."""
        self._db = db
        self._commands = commands
        self._inbox = inbox
        self._ports = ports
        self._clock = clock
        self._config = config

    async def verify(
        self, tenant_id: str, report: Callable[[StepResult], None] = lambda _: None
    ) -> VerificationReport:
        """Verify every enabled processor; mark the tenant ready if all passed."""
        result = VerificationReport(tenant_id)

        def record(step: StepResult) -> None:
            result.steps.append(step)
            _log.info(
                "verify_step",
                tenant_id=tenant_id,
                processor=step.processor,
                step=step.step,
                status=step.status,
            )
            report(step)

        options = sorted(await self._ports.options(tenant_id), key=lambda o: o.precedence)
        if not options:
            record(StepResult(None, "authorize", "failed", "no processor is attached and enabled"))
        for option in options:
            await self._verify_processor(tenant_id, option.processor, record)
        if result.failed:
            record(
                StepResult(None, "payments_ready", "failed", f"{len(result.failed)} step(s) failed")
            )
            return result
        await self._mark_ready(tenant_id, [o.processor for o in options])
        result.ready = True
        record(
            StepResult(
                None,
                "payments_ready",
                "passed",
                "payments_ready = true; tenant.payments_ready announced",
            )
        )
        return result

    async def _verify_processor(
        self, tenant_id: str, processor: Processor, record: Callable[[StepResult], None]
    ) -> None:
        bound = await self._ports.bound(tenant_id, processor)
        capabilities = bound.port.capabilities
        currency = next((c for c in CURRENCIES if c in capabilities.currencies), None)
        method = next((m for m in METHODS if m in capabilities.payment_method_types), None)
        if currency is None or method is None:
            record(StepResult(processor, "authorize", "failed", "no test currency or method"))
            return
        payment_id = f"verify-{processor}-{uuid.uuid4().hex[:12]}"
        command = AuthorizePayment(
            payment_id=payment_id,
            idempotency_key=f"{payment_id}-authorize",
            amount=Money(minor=TEST_MINOR, currency=currency),
            payment_method=PaymentMethod(type=method, token=_TOKENS[method]),
            capture="manual" if capabilities.manual_capture else "automatic",
            processor=processor,
            booking_reference=f"VERIFY-{tenant_id}"[:64],
            description="Gateway verification: authorized, then voided at once",
            return_url="https://payments.invalid/verify-tenant",
        )
        await self._send(tenant_id, command)
        state, detail = await self._state(tenant_id, payment_id)
        amount = f"{currency} 1.00"
        if state == "authorized":
            record(StepResult(processor, "authorize", "passed", f"{amount} authorized", payment_id))
        elif state == "action_required":
            record(
                StepResult(
                    processor,
                    "authorize",
                    "passed",
                    f"{amount} accepted; the processor waits for a customer step",
                    payment_id,
                )
            )
        else:
            record(StepResult(processor, "authorize", "failed", f"{state}: {detail}", payment_id))
            return
        await self._send(
            tenant_id,
            VoidPayment(
                payment_id=payment_id, idempotency_key=f"{payment_id}-void", reason="abandoned"
            ),
        )
        after, detail = await self._state(tenant_id, payment_id)
        if after in {"voided", "expired", "cancelled"}:
            record(StepResult(processor, "void", "passed", f"released ({after})", payment_id))
        else:
            record(StepResult(processor, "void", "failed", f"{after}: {detail}", payment_id))
        if state == "action_required":
            record(
                StepResult(
                    processor,
                    "webhook",
                    "skipped",
                    "no webhook without the customer step; check the endpoint with a real payment",
                    payment_id,
                )
            )
            return
        record(await self._webhook(tenant_id, processor, payment_id))

    async def _send(self, tenant_id: str, command: AuthorizePayment | VoidPayment) -> None:
        ce_id = str(uuid.uuid4())
        await self._commands.handle(Received(tenant_id, VERIFY_SOURCE, ce_id, command))

    async def _state(self, tenant_id: str, payment_id: str) -> tuple[str, str]:
        async with self._db.tenant_transaction(tenant_id) as tx:
            row = await tx.conn.fetchrow(_STATE, payment_id)
            error = await tx.conn.fetchval(_LAST_ERROR, payment_id)
        if row is None:
            return "missing", "the command was refused"
        detail = " ".join(filter(None, (str(error or "").strip(), row["attention"])))
        return row["state"], detail or "no detail"

    async def _webhook(self, tenant_id: str, processor: Processor, payment_id: str) -> StepResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.webhook_timeout_s
        seen: str | None = None
        while True:
            await self._inbox.run_once(tenant_id)
            async with self._db.connection() as conn:
                row = await conn.fetchrow(_WEBHOOK, tenant_id, processor.value, payment_id)
            if row is not None:
                seen = f"{row['event_type']} is {row['status']}"
                if row["status"] == "applied":
                    return StepResult(
                        processor, "webhook", "passed", f"{row['event_type']} applied", payment_id
                    )
                if row["status"] == "parked":
                    reason = row["last_error"] or "parked"
                    return StepResult(processor, "webhook", "failed", reason, payment_id)
            if loop.time() >= deadline:
                waited = f"{self._config.webhook_timeout_s:g}s"
                what = seen or "nothing arrived: is payment-api's endpoint registered there?"
                return StepResult(
                    processor, "webhook", "failed", f"after {waited}: {what}", payment_id
                )
            await asyncio.sleep(self._config.poll_s)

    async def _mark_ready(self, tenant_id: str, processors: list[Processor]) -> None:
        now = self._clock()
        event = TenantPaymentsReady(tenant_id=tenant_id, processors=processors, verified_at=now)
        envelope = Envelope(
            id=str(uuid.uuid4()),
            source=SOURCE,
            type=type_of(TenantPaymentsReady),
            time=now,
            subject=tenant_id,
            tenant_id=tenant_id,
        )
        outgoing = OutgoingEvent(
            envelope, event.model_dump_json().encode(), PAYMENT_EVENTS, tenant_id
        )
        async with self._db.connection() as conn, conn.transaction():
            await conn.execute(_READY, tenant_id)
            await append(conn, [outgoing])
