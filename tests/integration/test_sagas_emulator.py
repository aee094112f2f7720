"""Payment sagas end to end: commands on the Pub/Sub emulator, real Postgres, events out."""

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from gateway.payments import payment_router
from gateway.worker import Worker
from outbox.binding import WireMessage, decode, encode, to_cloudevent
from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.transport import Delivery, Outgoing
from processors.fake import TimeoutAfterApply
from sagas.model import OperationKind
from sandbox.stripe_api import FakeStripe
from schemas.catalog import type_of
from schemas.commands import Command
from schemas.envelope import Envelope
from schemas.processors import Processor
from schemas.topology import EVENTS_TAIL_SUBSCRIPTION, PAYMENT_COMMANDS, Topology
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.integration.outbox_helpers import FAST, eventually, eventually_async, provisioned
from tests.integration.saga_helpers import (
    SOURCE,
    Payments,
    authorize,
    capture,
    make_payments,
    short,
)
from tests.integration.stripe_support import API_KEY, WEBHOOK_SECRET
from tests.integration.test_sagas_stripe import all_intents, stripe_factory
from tests.integration.webhook_support import webhook_stack

if TYPE_CHECKING:
    from processors.stripe import StripeAdapter

pytestmark = pytest.mark.integration
PAYMENTS = 1_000


@dataclass
class Tail:
    """What arrives on the events tail: (ce-id, type name, payment id)."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)

    async def handle(self, delivery: Delivery) -> None:
        """Record and ack."""
        event = decode(delivery.message.data, delivery.message.attributes)
        body = json.loads(delivery.message.data)
        self.seen.append((event.get_id(), short(event.get_type()), body.get("payment_id")))
        delivery.ack()

    def count(self, name: str) -> int:
        """How many distinct events of type ``name`` arrived."""
        return len({ce_id for ce_id, kind, _ in self.seen if kind == name})


def wire(tenant: str, command: Command, ce_id: str) -> WireMessage:
    """The command as the booking service publishes it."""
    envelope = Envelope(
        id=ce_id,
        source=SOURCE,
        type=type_of(type(command)),
        time=datetime.now(UTC),
        subject=command.payment_id,
        tenant_id=tenant,
    )
    data = command.model_dump_json().encode()
    return encode(to_cloudevent(envelope, data), command.payment_id)


@asynccontextmanager
async def running(
    payments: Payments,
    topology: Topology,
    transport: tuple[PubSubPublisher, PubSubSubscriber],
) -> AsyncIterator[Tail]:
    """A worker (consumer, relay, timers, inbox) and an events-tail collector, until the end."""
    publisher, subscriber = transport
    worker = Worker(
        db=payments.db,
        publisher=publisher,
        subscriber=subscriber,
        topology=topology,
        router=payment_router(payments.services),
        clock=payments.clock,
        relay_config=FAST,
        max_in_flight=100,
        timers=payments.services.timers,
        inbox=payments.services.inbox,
    )
    tail, stop = Tail(), asyncio.Event()
    tasks = [
        asyncio.create_task(worker.run(stop)),
        asyncio.create_task(
            subscriber.run(
                topology.name(EVENTS_TAIL_SUBSCRIPTION), tail.handle, stop=stop, max_in_flight=500
            )
        ),
    ]
    try:
        yield tail
    finally:
        stop.set()
        await asyncio.gather(*tasks)


@pytest.fixture
async def payments(
    fresh_db: Database, tenant_migrations: tuple[Migration, ...], tenant_ids: Callable[[], str]
) -> Payments:
    """A tenant with the three fake processors attached, on a database of its own."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    return await make_payments(fresh_db, tenant)


async def a_thousand_authorizations(
    payments: Payments,
    topology: Topology,
    transport: tuple[PubSubPublisher, PubSubSubscriber],
) -> tuple[list[str], set[str], Tail]:
    """Publish 1,000 authorizations, 10% redelivered and 5% re-sent, and wait for the events.

    Returns the payment ids, the re-sent ones and what arrived.
    """
    rng = random.Random(4)  # noqa: S311 (a reproducible sample, not a secret)
    ids = [f"pay_{i:04d}" for i in range(PAYMENTS)]
    redelivered = set(rng.sample(ids, PAYMENTS // 10))
    repeated = set(rng.sample(ids, PAYMENTS // 20))
    messages = []
    for payment_id in ids:
        command, ce_id = authorize(payment_id), str(uuid.uuid4())
        messages.append(wire(payments.tenant, command, ce_id))
        if payment_id in redelivered:
            messages.append(wire(payments.tenant, command, ce_id))
        if payment_id in repeated:
            messages.append(wire(payments.tenant, command, str(uuid.uuid4())))
    rng.shuffle(messages)
    publisher, _ = transport
    commands = topology.name(PAYMENT_COMMANDS)
    async with running(payments, topology, transport) as tail:
        for start in range(0, len(messages), 200):
            batch = messages[start : start + 200]
            await publisher.publish_batch([Outgoing(commands, m) for m in batch])
        expected = PAYMENTS + len(repeated)
        await eventually(lambda: tail.count("payment.authorized") >= expected, within=240)
    return ids, repeated, tail


async def check_one_event_per_transition(
    payments: Payments, repeated: set[str], tail: Tail
) -> None:
    """One authorized transition per payment, announced once (plus once per re-sent key)."""
    per_payment = Counter(p for _, kind, p in set(tail.seen) if kind == "payment.authorized")
    assert {p: n for p, n in per_payment.items() if n != 1 + (p in repeated)} == {}
    async with payments.db.tenant_transaction(payments.tenant) as tx:
        transitions = await tx.conn.fetch(
            "SELECT payment_id, count(*) AS n FROM payment_transitions"
            " WHERE to_state = 'authorized' GROUP BY payment_id"
        )
        announced = await tx.conn.fetchval(
            "SELECT count(*) FROM payment_events WHERE type LIKE '%payment.authorized.v1'"
        )
    assert len(transitions) == PAYMENTS
    assert {row["n"] for row in transitions} == {1}
    assert announced == PAYMENTS + len(repeated)


async def test_a_thousand_authorizations_with_redeliveries_and_repeats(
    payments: Payments,
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
) -> None:
    """1,000 authorizations, 10% redelivered and 5% re-sent with their key: one charge each."""
    ids, repeated, tail = await a_thousand_authorizations(
        payments, emulator_topology, pubsub_transport
    )
    stripe = payments.fakes[Processor.STRIPE]
    assert stripe.applied(OperationKind.AUTHORIZE) == PAYMENTS
    assert {stripe.authorizations_for(p) for p in ids} == {1}
    await check_one_event_per_transition(payments, repeated, tail)


async def test_a_thousand_authorizations_at_the_stripe_sandbox(
    fresh_db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
) -> None:
    """The same 1,000 authorizations through the Stripe adapter: one PaymentIntent each."""
    made: list[StripeAdapter] = []
    with FakeStripe(api_keys=(API_KEY,), webhook_secret=WEBHOOK_SECRET) as sandbox:
        tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
        payments = await make_payments(
            fresh_db, tenant, (Processor.STRIPE,), factory=stripe_factory(sandbox, made)
        )
        try:
            ids, repeated, tail = await a_thousand_authorizations(
                payments, emulator_topology, pubsub_transport
            )
            intents = Counter(i["metadata"]["payment_id"] for i in await all_intents(sandbox))
        finally:
            for adapter in made:
                await adapter.aclose()
    assert {intents[p] for p in ids} == {1}
    assert sum(intents.values()) == PAYMENTS
    await check_one_event_per_transition(payments, repeated, tail)


async def test_in_doubt_charge_resolved_through_the_worker(
    payments: Payments,
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
) -> None:
    """A charge applied then timed out is resolved by the worker's inquiry timer, charged once."""
    stripe = payments.fakes[Processor.STRIPE]
    stripe.script(OperationKind.AUTHORIZE, TimeoutAfterApply())
    publisher, _ = pubsub_transport
    commands = emulator_topology.name(PAYMENT_COMMANDS)
    async with running(payments, emulator_topology, pubsub_transport) as tail:
        message = wire(payments.tenant, authorize("pay_doubt"), str(uuid.uuid4()))
        await publisher.publish_batch([Outgoing(commands, message)])
        await eventually_state(payments, "pay_doubt", "in_doubt")
        payments.advance(timedelta(minutes=1))
        await eventually(lambda: tail.count("payment.authorized") == 1, within=30)
    assert stripe.applied(OperationKind.AUTHORIZE) == 1
    assert await payments.state("pay_doubt") == "authorized"


async def eventually_state(payments: Payments, payment_id: str, state: str) -> None:
    """Wait until the payment is stored in ``state``."""

    async def reached() -> bool:
        return await payments.state(payment_id) == state

    await eventually_async(reached, within=30)


async def test_the_vertical_slice_command_to_webhook_to_events(
    fresh_db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
) -> None:
    """Command -> saga -> Stripe sandbox -> webhook -> inbox -> saga -> events, all real.

    The command arrives on Pub/Sub, the webhook through payment-api, the events leave on
    Pub/Sub. The sandbox charges and the response is lost, and the clock does not move (no inquiry
    fires): only the sandbox's webhook can authorize the payment.
    """
    made: list[StripeAdapter] = []
    publisher, _ = pubsub_transport
    commands = emulator_topology.name(PAYMENT_COMMANDS)
    with FakeStripe(api_keys=(API_KEY,), webhook_secret=WEBHOOK_SECRET) as sandbox:
        tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
        payments = await make_payments(
            fresh_db, tenant, (Processor.STRIPE,), factory=stripe_factory(sandbox, made)
        )
        try:
            async with (
                webhook_stack(payments) as api,
                running(payments, emulator_topology, pubsub_transport) as tail,
            ):
                sandbox.configure_webhooks(f"{api.url}{api.path()}", WEBHOOK_SECRET)
                sandbox.timeout_next("payment_intents.create", applied=True)
                first = wire(tenant, authorize("pay_slice"), str(uuid.uuid4()))
                await publisher.publish_batch([Outgoing(commands, first)])
                await eventually(lambda: tail.count("payment.authorized") == 1, within=60)
                second = wire(tenant, capture("pay_slice"), str(uuid.uuid4()))
                await publisher.publish_batch([Outgoing(commands, second)])
                await eventually(lambda: tail.count("payment.captured") == 1, within=60)

                async def both_applied() -> bool:
                    rows = await api.inbox()
                    return len(rows) >= 2 and {r["status"] for r in rows} == {"applied"}

                await eventually_async(both_applied, within=30)
                inbox = await api.inbox()
        finally:
            for adapter in made:
                await adapter.aclose()
    async with payments.db.tenant_transaction(tenant) as tx:
        cause = await tx.conn.fetchval(
            "SELECT message_id FROM payment_transitions WHERE payment_id = 'pay_slice'"
            " AND to_state = 'authorized'"
        )
    assert cause.startswith("webhook:stripe:evt_")
    assert {row["status"] for row in inbox} == {"applied"}
    assert len(inbox) >= 2  # the authorization's event and the capture's
    assert await payments.state("pay_slice") == "captured"
