"""``payment-worker``: the command consumer, saga timers, inbox appliers and outbox relay."""

import asyncio
from dataclasses import dataclass
from typing import Final

import structlog
from opentelemetry.metrics import Meter

from gateway.consumer import CommandConsumer, RejectionSink, Router, TenantCheck
from handlers.inbox import InboxApplier
from handlers.timers import TimerLoop
from outbox.relay import OutboxRelay, RelayConfig
from outbox.store import OutgoingEvent, append
from outbox.transport import Publisher, Subscriber
from schemas.clock import Clock
from schemas.envelope import SOURCE, Envelope
from schemas.events import CommandRejected
from schemas.topology import PAYMENT_EVENTS, WORKER_COMMANDS_SUBSCRIPTION, Topology
from tenancy.db import Database
from tenancy.registry import ServedTenants

_log = structlog.get_logger(__name__)
DEFAULT_MAX_IN_FLIGHT: Final = 200


def tenant_check(db: Database, clock: Clock) -> TenantCheck:
    """A check that a tenant is registered and served, for the consumer."""
    return ServedTenants(db, clock).refusal


def outbox_rejections(db: Database) -> RejectionSink:
    """Writes command-rejected events to the outbox, outside any tenant transaction."""

    async def reject(event: CommandRejected, envelope: Envelope) -> None:
        data = event.model_dump_json().encode()
        outgoing = OutgoingEvent(envelope, data, PAYMENT_EVENTS, envelope.subject or "")
        async with db.connection() as conn:
            await append(conn, [outgoing])

    return reject


@dataclass(slots=True)
class Worker:
    """Everything ``payment-worker`` runs."""

    db: Database
    publisher: Publisher
    subscriber: Subscriber
    topology: Topology
    router: Router
    clock: Clock
    relay_config: RelayConfig = RelayConfig()  # noqa: RUF009 (an immutable value object)
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    meter: Meter | None = None
    timers: TimerLoop | None = None
    inbox: InboxApplier | None = None

    def consumer(self) -> CommandConsumer:
        """The command consumer wired to this worker's parts."""
        return CommandConsumer(
            router=self.router,
            publisher=self.publisher,
            topology=self.topology,
            tenants=tenant_check(self.db, self.clock),
            reject=outbox_rejections(self.db),
            clock=self.clock,
            source=SOURCE,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume commands and relay events until ``stop``; then drain both."""
        relay = OutboxRelay(
            self.db.pool, self.publisher, self.topology, self.relay_config, meter=self.meter
        )
        consumer = self.consumer()
        subscription = self.topology.name(WORKER_COMMANDS_SUBSCRIPTION)
        _log.info("worker_started", subscription=subscription, relay_id=relay.relay_id)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(
                self.subscriber.run(
                    subscription, consumer.handle, stop=stop, max_in_flight=self.max_in_flight
                )
            )
            tasks.create_task(relay.run(stop))
            if self.timers is not None:
                tasks.create_task(self.timers.run(stop))
            if self.inbox is not None:
                tasks.create_task(self.inbox.run(stop))
        _log.info("worker_stopped")
