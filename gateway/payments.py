"""Builds the payment handlers: sagas, executor, timers, routing inputs and breakers."""

from dataclasses import dataclass, replace

from opentelemetry.metrics import Meter

from gateway.bootstrap import Container
from gateway.consumer import MessageContext, Router
from gateway.settings import ProcessorBackend
from gateway.vendor_mode import MODE_OF, vendor_env
from gateway.vendors import VendorAdapters
from handlers.commands import PaymentCommands, Received
from handlers.executor import OperationExecutor, RetryPolicy
from handlers.inbox import InboxApplier, InboxPolicy
from handlers.ports import PortFactory, TenantPorts
from handlers.timers import TimerConfig, TimerLoop
from processors.breaker import BreakerPolicy, Breakers
from processors.fake import FakeProcessor
from schemas.clock import Clock
from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    Command,
    RefundPayment,
    VoidPayment,
)
from schemas.processors import Processor, VendorEnv
from tenancy.db import Database
from tenancy.vendors import VendorAttachment

COMMAND_MODELS: tuple[type[Command], ...] = (
    AuthorizePayment,
    CapturePayment,
    VoidPayment,
    RefundPayment,
    CancelPayment,
)


@dataclass(frozen=True, slots=True)
class PaymentServices:
    """The parts of ``payment-worker`` that run payments."""

    commands: PaymentCommands
    executor: OperationExecutor
    timers: TimerLoop
    ports: TenantPorts
    breakers: Breakers
    inbox: InboxApplier
    vendors: VendorAdapters | None = None
    """The real adapters' shared parts, when the backend is the vendors."""

    async def aclose(self) -> None:
        """Close the adapters' connections."""
        if self.vendors is not None:
            await self.vendors.aclose()


@dataclass(frozen=True, slots=True)
class PaymentTuning:
    """Retry, timer and breaker settings (defaults for production; tests shorten them)."""

    retry: RetryPolicy = RetryPolicy()  # noqa: RUF009 (an immutable value object)
    timers: TimerConfig = TimerConfig()  # noqa: RUF009 (an immutable value object)
    breaker: BreakerPolicy = BreakerPolicy()  # noqa: RUF009 (an immutable value object)
    inbox: InboxPolicy = InboxPolicy()  # noqa: RUF009 (an immutable value object)


def build_payment_services(  # noqa: PLR0913 (the composition root names every part)
    db: Database,
    factory: PortFactory,
    clock: Clock,
    *,
    env: VendorEnv,
    tuning: PaymentTuning | None = None,
    meter: Meter | None = None,
) -> PaymentServices:
    """Wire the payment handlers together."""
    tuning = tuning or PaymentTuning()
    breakers = Breakers(clock, tuning.breaker, meter=meter)
    ports = TenantPorts(db, factory, env, clock)
    executor = OperationExecutor(db, ports, breakers, clock, tuning.retry)
    commands = PaymentCommands(db, executor, ports, breakers, clock)
    timers = TimerLoop(db, executor, clock, tuning.timers)
    inbox = InboxApplier(db, executor, clock, tuning.inbox)
    return PaymentServices(commands, executor, timers, ports, breakers, inbox)


def port_factory(container: Container) -> tuple[PortFactory, VendorAdapters | None]:
    """The processor adapters of the configured backend (and the vendors' shared parts)."""
    settings = container.settings
    if settings.processor_backend is ProcessorBackend.FAKE:
        return shared_factory(fake_processors(container.clock)), None
    adapters = VendorAdapters(
        MODE_OF[settings.environment],
        container.secrets,
        container.clock,
        local_urls=settings.sandbox_urls,
        db=container.db,
    )
    return adapters.factory(), adapters


def services_for(container: Container, *, meter: Meter | None = None) -> PaymentServices:
    """The payment services on the configured processor backend (payment-worker and CLI)."""
    factory, vendors = port_factory(container)
    mode = MODE_OF[container.settings.environment]
    services = build_payment_services(
        container.db, factory, container.clock, env=vendor_env(mode), meter=meter
    )
    return replace(services, vendors=vendors)


def fake_processors(clock: Clock, *, latency: float = 0) -> dict[Processor, FakeProcessor]:
    """One in-memory processor of each kind, shared by every tenant (dev and tests)."""
    return {p: FakeProcessor(p, clock=clock, latency=latency) for p in Processor}


def shared_factory(ports: dict[Processor, FakeProcessor]) -> PortFactory:
    """A factory handing every attachment the shared adapter of its processor."""

    def factory(attachment: VendorAttachment) -> FakeProcessor:
        return ports[attachment.processor]

    return factory


def payment_router(services: PaymentServices) -> Router:
    """A router sending each payment command to its saga handler."""
    router = Router()

    async def handle(context: MessageContext, command: Command) -> None:
        await services.commands.handle(
            Received(context.tenant_id, context.envelope.source, context.envelope.id, command)
        )

    for model in COMMAND_MODELS:
        router.register(model, handle)
    return router
