"""Pub/Sub goes away while events are being written, then comes back: nothing is lost."""

import asyncio
from collections.abc import Callable, Sequence

import pytest

from gateway.pubsub_emulator import PubSubEmulator
from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.pubsub_admin import ensure_topology
from outbox.transport import Outgoing, PublishError
from schemas.topology import EVENTS_TAIL_SUBSCRIPTION, TOPOLOGY
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.emulator import PROJECT
from tests.integration.outbox_helpers import (
    append_in_tenant_tx,
    event,
    eventually,
    eventually_async,
    provisioned,
    running_relay,
)
from tests.integration.test_messaging_emulator import EventsTail
from tests.pg import new_token

pytestmark = pytest.mark.integration


class GatedPublisher:
    """Passes batches to the real publisher while open; fails them, untouched, while shut."""

    def __init__(self, inner: PubSubPublisher) -> None:
        """Open, wrapping ``inner``."""
        self.inner = inner
        self.open = True

    async def publish_batch(self, batch: Sequence[Outgoing]) -> list[str | PublishError]:
        """Publish through, or refuse while shut."""
        if not self.open:
            return [PublishError("gate shut") for _ in batch]
        return await self.inner.publish_batch(batch)

    def resume(self, topic: str, ordering_key: str) -> None:
        """Resume on the real publisher."""
        self.inner.resume(topic, ordering_key)


async def publish_attempts(db: Database) -> int:
    """The most publish attempts any outbox row has had."""
    async with db.connection() as conn:
        attempts: int = await conn.fetchval(
            "SELECT coalesce(max(publish_attempts), 0) FROM payments_central.outbox"
        )
    return attempts


async def unsent(db: Database) -> int:
    """Rows not yet published."""
    async with db.connection() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM payments_central.outbox WHERE published_at IS NULL"
        )
    return count


async def tail_until(tail: EventsTail, count: int, stop: asyncio.Event) -> asyncio.Task[None]:
    """Start collecting the events tail of the test topology."""
    subscriber = PubSubSubscriber(PROJECT)
    return asyncio.create_task(
        subscriber.run(
            TOPOLOGY_UNDER_TEST.name(EVENTS_TAIL_SUBSCRIPTION),
            tail.handle,
            stop=stop,
            max_in_flight=count * 2,
        )
    )


TOPOLOGY_UNDER_TEST = TOPOLOGY.with_prefix(f"outage{new_token()}-")


async def test_events_written_during_an_outage_drain_when_pubsub_returns(
    fresh_db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publishes fail while the emulator is down; after a restart every event arrives."""
    emulator = await asyncio.to_thread(PubSubEmulator().start)
    port = int(emulator.host.rsplit(":", 1)[1])
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
    try:
        tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
        await ensure_topology(TOPOLOGY_UNDER_TEST, project=PROJECT)
        gate = GatedPublisher(PubSubPublisher(PROJECT))
        async with running_relay(fresh_db, gate, TOPOLOGY_UNDER_TEST):
            before, stop_before = EventsTail(), asyncio.Event()
            tailing = await tail_until(before, 10, stop_before)
            await append_in_tenant_tx(
                fresh_db, tenant, [event(tenant, "pay_a", s) for s in range(10)]
            )
            await eventually(lambda: before.distinct() == 10, within=30)
            stop_before.set()
            await tailing

            await asyncio.to_thread(emulator.stop)
            await append_in_tenant_tx(
                fresh_db, tenant, [event(tenant, "pay_b", s) for s in range(20)]
            )
            await eventually_async(lambda: _attempted(fresh_db), within=60)
            assert await unsent(fresh_db) == 20

            gate.open = False  # keep the relay out until the topology exists again
            emulator = await asyncio.to_thread(PubSubEmulator(port=port).start)
            await ensure_topology(TOPOLOGY_UNDER_TEST, project=PROJECT)
            after, stop_after = EventsTail(), asyncio.Event()
            tailing = await tail_until(after, 20, stop_after)
            gate.open = True
            await eventually(lambda: after.distinct() == 20, within=60)
            await eventually_async(lambda: _all_sent(fresh_db), within=30)
            stop_after.set()
            await tailing
        first_seen: list[int] = []
        for _, _, seq in after.seen:
            if seq not in first_seen:
                first_seen.append(seq)
        assert first_seen == list(range(20))
    finally:
        await asyncio.to_thread(emulator.stop)


async def _all_sent(db: Database) -> bool:
    return await unsent(db) == 0


async def _attempted(db: Database) -> bool:
    return await publish_attempts(db) > 0
