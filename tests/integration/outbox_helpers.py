"""Helpers for outbox tests: a fresh database, a tenant, events to append, a relay task."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from outbox.binding import WireMessage, decode
from outbox.memory import InMemoryBroker
from outbox.relay import OutboxRelay, RelayConfig
from outbox.store import OutgoingEvent, append
from outbox.transport import Publisher
from schemas.envelope import SOURCE, TYPE_PREFIX, Envelope
from schemas.topology import PAYMENT_EVENTS, TOPOLOGY, Topology
from tenancy.db import Database
from tenancy.migration_files import Migration
from tenancy.provisioning import ProvisionRequest, provision_tenant

TEST_TYPE = TYPE_PREFIX + "test.sequenced.v1"


def event(tenant: str, key: str, seq: int) -> OutgoingEvent:
    """An event on the events topic for ``key`` carrying its sequence number."""
    envelope = Envelope(
        id=str(uuid.uuid4()),
        source=SOURCE,
        type=TEST_TYPE,
        time=datetime.now(UTC),
        subject=key,
        tenant_id=tenant,
    )
    data = json.dumps({"key": key, "seq": seq}).encode()
    return OutgoingEvent(envelope, data, PAYMENT_EVENTS, ordering_key=key)


async def provisioned(db: Database, migrations: tuple[Migration, ...], tenant: str) -> str:
    """Provision ``tenant`` and return it."""
    await provision_tenant(db, migrations, ProvisionRequest(tenant, "saq_a", None))
    return tenant


async def append_in_tenant_tx(db: Database, tenant: str, events: list[OutgoingEvent]) -> None:
    """Append ``events`` inside one tenant transaction."""
    async with db.tenant_transaction(tenant) as tx:
        await append(tx.conn, events)


def sequence(message: WireMessage) -> tuple[str, str, int]:
    """(ce-id, key, seq) of a message built by ``event``."""
    cloud_event = decode(message.data, message.attributes)
    body = json.loads(message.data)
    return cloud_event.get_id(), body["key"], body["seq"]


def memory_broker(topology: Topology = TOPOLOGY) -> InMemoryBroker:
    """A broker with one subscription on the events topic, named 'events'."""
    broker = InMemoryBroker()
    broker.declare("events", topology.name(PAYMENT_EVENTS))
    return broker


FAST = RelayConfig(
    batch_size=50, poll_interval=0.2, heartbeat_interval=0.2, claim_ttl=timedelta(seconds=1)
)


@asynccontextmanager
async def running_relay(
    db: Database,
    publisher: Publisher,
    topology: Topology = TOPOLOGY,
    config: RelayConfig = FAST,
) -> AsyncIterator[OutboxRelay]:
    """A relay running in a task until the block ends."""
    relay = OutboxRelay(db.pool, publisher, topology, config)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def eventually(check: Callable[[], bool], *, within: float = 10.0) -> None:
    """Poll ``check`` until it holds, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)


async def eventually_async(check: Callable[[], Awaitable[bool]], *, within: float = 10.0) -> None:
    """Poll the coroutine ``check`` until it returns True, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.02)
