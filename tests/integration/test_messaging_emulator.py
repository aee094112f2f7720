"""Commands in and events out through the real Pub/Sub emulator and real Postgres."""

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.relay import OutboxRelay
from outbox.store import append
from outbox.transport import Delivery, Outgoing
from schemas.topology import (
    DEAD_LETTER_SUBSCRIPTION,
    EVENTS_TAIL_SUBSCRIPTION,
    PAYMENT_COMMANDS,
    WORKER_COMMANDS_SUBSCRIPTION,
    Topology,
)
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.contracts.transport import Recorder, TransportUnderTest, consuming
from tests.integration.outbox_helpers import (
    FAST,
    append_in_tenant_tx,
    event,
    eventually,
    provisioned,
    running_relay,
    sequence,
)
from tests.integration.test_consumer import (
    AUTHORIZE,
    CAPTURE,
    Harness,
    authorize_body,
    command,
    rejections,
)
from tests.integration.test_outbox_relay import HangingPublisher

pytestmark = pytest.mark.integration


class EventsTail:
    """Collects what arrives on the events-tail subscription (ordered by payment id)."""

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.seen: list[tuple[str, str, int]] = []

    async def handle(self, delivery: Delivery) -> None:
        """Record (ce-id, key, seq) and ack."""
        self.seen.append(sequence(delivery.message))
        delivery.ack()

    def distinct(self) -> int:
        """How many different events arrived."""
        return len({ce_id for ce_id, _, _ in self.seen})


@asynccontextmanager
async def events_tail(
    topology: Topology, transport: tuple[PubSubPublisher, PubSubSubscriber]
) -> AsyncIterator[EventsTail]:
    """Collect the events tail subscription for the duration of the block."""
    _, subscriber = transport
    tail, stop = EventsTail(), asyncio.Event()
    subscribing = asyncio.create_task(
        subscriber.run(
            topology.name(EVENTS_TAIL_SUBSCRIPTION), tail.handle, stop=stop, max_in_flight=200
        )
    )
    try:
        yield tail
    finally:
        stop.set()
        await subscribing


@asynccontextmanager
async def worker_on_emulator(
    db: Database,
    topology: Topology,
    transport: tuple[PubSubPublisher, PubSubSubscriber],
    dead: Recorder,
) -> AsyncIterator[Harness]:
    """A consumer pulling the worker subscription, and ``dead`` collecting dead letters."""
    publisher, subscriber = transport
    h = Harness(db)
    h.worker.publisher, h.worker.subscriber, h.worker.topology = publisher, subscriber, topology
    stop = asyncio.Event()
    worker = asyncio.create_task(
        subscriber.run(
            topology.subscription(WORKER_COMMANDS_SUBSCRIPTION).name,
            h.worker.consumer().handle,
            stop=stop,
            max_in_flight=20,
        )
    )
    dead_letters = topology.name(DEAD_LETTER_SUBSCRIPTION)
    view = TransportUnderTest(publisher, subscriber, "", "", dead_letters, 5, "", "")
    try:
        async with consuming(view, dead_letters, dead):
            yield h
    finally:
        stop.set()
        await worker


async def test_poison_commands_are_dead_lettered_and_the_worker_keeps_consuming(
    fresh_db: Database,
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> None:
    """Every kind of poison lands on the dead-letter topic with its reason and a rejection."""
    publisher, _ = pubsub_transport
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    poison = {
        "malformed_json": command(AUTHORIZE, b"{nope", tenant),
        "unknown_type": command(AUTHORIZE.replace("authorize", "teleport"), {}, tenant),
        "schema_invalid": command(
            AUTHORIZE, authorize_body("pay_f", amount={"minor": 1.5, "currency": "USD"}), tenant
        ),
        "unknown_tenant": command(AUTHORIZE, authorize_body("pay_u"), "tnt_nobody"),
        "card_data": command(
            AUTHORIZE, authorize_body("pay_c", metadata={"n": "4000056655665556"}), tenant
        ),
    }
    valid = [command(AUTHORIZE, authorize_body(f"pay_{i}"), tenant) for i in range(3)]
    commands = emulator_topology.name(PAYMENT_COMMANDS)
    await publisher.publish_batch([Outgoing(commands, m) for m in [*poison.values(), *valid]])
    dead = Recorder()
    async with worker_on_emulator(fresh_db, emulator_topology, pubsub_transport, dead) as h:
        await eventually(lambda: len(dead.seen) == len(poison) and len(h.handled) == 3, within=30)
    reasons = sorted(attrs["dead-letter-reason"] for _, attrs, _, _ in dead.seen)
    assert reasons == sorted(poison)
    assert sorted(str(b["reason"]) for b in await rejections(fresh_db)) == sorted(poison)
    assert all(b"4000056655665556" not in data for data, _, _, _ in dead.seen)


async def test_a_failing_handler_ends_on_the_dead_letter_topic(
    fresh_db: Database,
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> None:
    """A command whose handler keeps failing is delivered 5 times, then dead-lettered."""
    publisher, _ = pubsub_transport
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    commands = emulator_topology.name(PAYMENT_COMMANDS)
    capture = command(CAPTURE, {"payment_id": "pay_x", "idempotency_key": "k"}, tenant)
    await publisher.publish_batch([Outgoing(commands, capture)])
    dead = Recorder()
    async with worker_on_emulator(fresh_db, emulator_topology, pubsub_transport, dead) as h:
        await eventually(lambda: len(dead.seen) == 1, within=60)
    assert h.capture_attempts == 5
    assert await rejections(fresh_db) == []


async def test_twenty_concurrent_transactions_reach_subscribers_once_and_in_key_order(
    fresh_db: Database,
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> None:
    """Outbox rows of 20 transactions committed in random order arrive once each, keys in order."""
    publisher, _ = pubsub_transport
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    order = list(range(20))
    random.shuffle(order)
    gates = [asyncio.Event() for _ in order]

    async def writer(i: int) -> None:
        async with fresh_db.tenant_transaction(tenant) as tx:
            await append(tx.conn, [event(tenant, f"pay_{i}", seq) for seq in range(5)])
            await gates[i].wait()

    async with (
        events_tail(emulator_topology, pubsub_transport) as tail,
        running_relay(fresh_db, publisher, emulator_topology),
    ):
        writers = [asyncio.create_task(writer(i)) for i in range(20)]
        for i in order:
            gates[i].set()
            await asyncio.sleep(0)
        await asyncio.gather(*writers)
        await eventually(lambda: tail.distinct() == 100, within=30)
    per_key: dict[str, list[int]] = defaultdict(list)
    for _, key, seq in tail.seen:
        per_key[key].append(seq)
    assert dict(per_key) == {f"pay_{i}": [0, 1, 2, 3, 4] for i in range(20)}


async def test_a_relay_killed_mid_batch_loses_nothing_on_the_emulator(
    fresh_db: Database,
    emulator_topology: Topology,
    pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> None:
    """Half a batch reaches Pub/Sub before the relay dies; a new relay sends everything."""
    publisher, _ = pubsub_transport
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    await append_in_tenant_tx(
        fresh_db, tenant, [event(tenant, f"pay_{s % 3}", s) for s in range(30)]
    )
    hanging = HangingPublisher(publisher)
    async with events_tail(emulator_topology, pubsub_transport) as tail:
        dying = OutboxRelay(fresh_db.pool, hanging, emulator_topology, FAST)
        task = asyncio.create_task(dying.run(asyncio.Event()))
        await asyncio.wait_for(hanging.entered.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        async with running_relay(fresh_db, publisher, emulator_topology):
            await eventually(lambda: tail.distinct() == 30, within=30)
    per_key: dict[str, list[int]] = defaultdict(list)
    for _, key, seq in tail.seen:
        if seq not in per_key[key]:
            per_key[key].append(seq)
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
