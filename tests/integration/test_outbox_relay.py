"""The outbox and its relay on real Postgres, publishing to the in-memory broker."""

import asyncio
import json
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from outbox.memory import InMemoryBroker
from outbox.relay import OutboxRelay
from outbox.replay import outbox_status, replay
from outbox.store import append
from outbox.transport import Outgoing, Publisher, PublishError
from schemas.topology import TOPOLOGY
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.integration.outbox_helpers import (
    FAST,
    append_in_tenant_tx,
    event,
    eventually,
    eventually_async,
    memory_broker,
    provisioned,
    running_relay,
    sequence,
)

pytestmark = pytest.mark.integration


def received(broker: InMemoryBroker) -> list[tuple[str, str, int]]:
    """(ce-id, key, seq) of everything the broker accepted, in publish order."""
    return [sequence(item.message) for item in broker.published]


async def _none_unsent(db: Database) -> bool:
    return await unsent(db) == 0


async def unsent(db: Database) -> int:
    """Outbox rows not yet published."""
    async with db.connection() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM payments_central.outbox WHERE published_at IS NULL"
        )
    return count


async def test_twenty_concurrent_transactions_committing_in_random_order(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Rows from 20 transactions committed in random order: all published once, keys in order."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    order = list(range(20))
    random.shuffle(order)
    gates = [asyncio.Event() for _ in order]

    async def writer(i: int) -> None:
        async with fresh_db.tenant_transaction(tenant) as tx:
            await append(tx.conn, [event(tenant, f"pay_{i}", seq) for seq in range(5)])
            await gates[i].wait()

    async with running_relay(fresh_db, broker):
        writers = [asyncio.create_task(writer(i)) for i in range(20)]
        for i in order:
            gates[i].set()
            await asyncio.sleep(0)
        await asyncio.gather(*writers)
        await eventually(lambda: len(broker.published) >= 100)

    got = received(broker)
    assert len({ce_id for ce_id, _, _ in got}) == 100
    assert len(got) == 100
    per_key: dict[str, list[int]] = defaultdict(list)
    for _, key, seq in got:
        per_key[key].append(seq)
    assert per_key == {f"pay_{i}": [0, 1, 2, 3, 4] for i in range(20)}


async def test_a_row_committed_after_a_later_row_is_not_skipped(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """A lower id committing after a higher id was published is still published."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    release = asyncio.Event()

    appended = asyncio.Event()

    async def slow() -> None:
        async with fresh_db.tenant_transaction(tenant) as tx:
            await append(tx.conn, [event(tenant, "pay_slow", 0)])
            appended.set()
            await release.wait()

    async with running_relay(fresh_db, broker):
        slow_task = asyncio.create_task(slow())
        await asyncio.wait_for(appended.wait(), 10)  # the slow transaction holds the lower id
        await append_in_tenant_tx(fresh_db, tenant, [event(tenant, "pay_fast", 0)])
        await eventually(lambda: len(broker.published) == 1)
        release.set()
        await slow_task
        await eventually(lambda: len(broker.published) == 2)
    assert [key for _, key, _ in received(broker)] == ["pay_fast", "pay_slow"]


class FlakyPublisher:
    """Fails every message of the first ``failures`` batches, then delegates."""

    def __init__(self, inner: InMemoryBroker, failures: int) -> None:
        """Wrap ``inner``."""
        self.inner = inner
        self.failures = failures
        self.resumed: list[tuple[str, str]] = []

    async def publish_batch(self, batch: Sequence[Outgoing]) -> list[str | PublishError]:
        """Fail while failures remain, else publish."""
        if self.failures > 0:
            self.failures -= 1
            return [PublishError("injected outage") for _ in batch]
        return await self.inner.publish_batch(batch)

    def resume(self, topic: str, ordering_key: str) -> None:
        """Record the resume."""
        self.resumed.append((topic, ordering_key))


async def test_publish_failures_keep_rows_until_the_broker_is_back(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """During an outage rows wait with their attempts counted; afterwards all drain in order."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    flaky = FlakyPublisher(broker, failures=3)
    await append_in_tenant_tx(fresh_db, tenant, [event(tenant, "pay_o", s) for s in range(10)])
    async with running_relay(fresh_db, flaky):
        await eventually(lambda: len(broker.published) == 10)
    assert [seq for _, _, seq in received(broker)] == list(range(10))
    assert ("payment-events", "pay_o") in flaky.resumed
    async with fresh_db.connection() as conn:
        attempts = await conn.fetchval("SELECT max(publish_attempts) FROM payments_central.outbox")
    assert attempts == 3
    assert await unsent(fresh_db) == 0


class HangingPublisher:
    """Publishes half of the first batch, then never returns: a relay dying mid-batch."""

    def __init__(self, inner: Publisher) -> None:
        """Wrap ``inner``."""
        self.inner = inner
        self.entered = asyncio.Event()

    async def publish_batch(self, batch: Sequence[Outgoing]) -> list[str | PublishError]:
        """Publish half, then hang forever."""
        await self.inner.publish_batch(batch[: len(batch) // 2])
        self.entered.set()
        await asyncio.Event().wait()
        return []

    def resume(self, topic: str, ordering_key: str) -> None:
        """Nothing to resume."""


async def test_a_relay_killed_mid_batch_loses_nothing(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Killed while publishing: its claim rolls back and a new relay publishes everything."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    await append_in_tenant_tx(
        fresh_db, tenant, [event(tenant, f"pay_{s % 3}", s) for s in range(30)]
    )
    hanging = HangingPublisher(broker)
    dying = OutboxRelay(fresh_db.pool, hanging, TOPOLOGY, FAST)
    task = asyncio.create_task(dying.run(asyncio.Event()))
    await asyncio.wait_for(hanging.entered.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await unsent(fresh_db) == 30

    async with running_relay(fresh_db, broker):
        await eventually(lambda: len(broker.published) >= 45)
    distinct = {ce_id for ce_id, _, _ in received(broker)}
    assert len(distinct) == 30
    assert await unsent(fresh_db) == 0


async def test_replicas_split_the_buckets_and_keep_key_order(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Three relays share the 64 buckets without overlap; per-key order holds across them."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    async with (
        running_relay(fresh_db, broker) as a,
        running_relay(fresh_db, broker) as b,
        running_relay(fresh_db, broker) as c,
    ):
        relays = (a, b, c)
        await eventually(
            lambda: (
                sum(len(r.owned_buckets) for r in relays) == 64
                and all(len(r.owned_buckets) >= 20 for r in relays)
            )
        )
        owned = [r.owned_buckets for r in relays]
        assert sum(len(o) for o in owned) == len(owned[0] | owned[1] | owned[2])
        for round_ in range(4):
            await append_in_tenant_tx(
                fresh_db,
                tenant,
                [event(tenant, f"pay_{k}", round_) for k in range(50)],
            )
        await eventually(lambda: len(broker.published) >= 200)
    per_key: dict[str, list[int]] = defaultdict(list)
    for _, key, seq in received(broker):
        per_key[key].append(seq)
    assert all(seqs == [0, 1, 2, 3] for seqs in per_key.values())
    assert len(per_key) == 50


async def test_tenant_roles_write_only_their_own_outbox_rows(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """A tenant cannot append another tenant's rows, read event data, or see others' ids."""
    a = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    b = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        await append_in_tenant_tx(fresh_db, a, [event(b, "pay_x", 0)])
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with fresh_db.tenant_transaction(a) as tx:
            await tx.conn.fetch("SELECT data FROM payments_central.outbox")
    same = event(a, "pay_y", 0)
    await append_in_tenant_tx(fresh_db, a, [same])
    await append_in_tenant_tx(fresh_db, a, [same])
    await append_in_tenant_tx(fresh_db, b, [event(b, "pay_z", 0)])
    assert await unsent(fresh_db) == 2
    async with fresh_db.tenant_transaction(a) as tx:
        visible = [
            r["event_id"]
            for r in await tx.conn.fetch("SELECT event_id FROM payments_central.outbox")
        ]
    assert visible == [same.envelope.id]


async def test_outbox_status_reports_the_backlog_age(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """With nothing unsent the backlog age is None; with a row waiting it is that row's age."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    assert (await outbox_status(fresh_db.pool)).oldest_unsent_age is None
    await append_in_tenant_tx(fresh_db, tenant, [event(tenant, "pay_age", 0)])
    status = await outbox_status(fresh_db.pool)
    assert status.unsent == 1
    assert status.oldest_unsent_age is not None
    assert status.oldest_unsent_age.total_seconds() >= 0


async def test_replay_republishes_with_the_original_ids(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """After replay the relay publishes the tenant's events again with the same ce-ids."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    other = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    await append_in_tenant_tx(fresh_db, tenant, [event(tenant, "pay_r", s) for s in range(3)])
    await append_in_tenant_tx(fresh_db, other, [event(other, "pay_o", 0)])
    async with running_relay(fresh_db, broker):
        await eventually_async(lambda: _none_unsent(fresh_db))
        since = datetime.now(UTC) - timedelta(hours=1)
        report = await replay(fresh_db.pool, tenant, since, datetime.now(UTC))
        assert report.rows == 3
        await eventually(lambda: len(broker.published) == 7)
    first, again = received(broker)[:4], received(broker)[4:]
    assert [r for r in first if r[1] == "pay_r"] == again
    status = await outbox_status(fresh_db.pool)
    assert status.unsent == 0
    assert status.kept == 4


async def test_backlog_age_is_exported_as_a_metric(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """While publishing fails the oldest-unsent-age gauge grows; after recovery it is 0."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    broker = memory_broker()
    flaky = FlakyPublisher(broker, failures=10_000)
    relay = OutboxRelay(fresh_db.pool, flaky, TOPOLOGY, FAST, meter=meter)
    await append_in_tenant_tx(fresh_db, tenant, [event(tenant, "pay_m", 0)])
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await eventually(lambda: relay.oldest_unsent_seconds > 0.3)
    assert gauge(reader, "payments.outbox.oldest_unsent_age") > 0.3
    flaky.failures = 0
    await eventually(lambda: len(broker.published) == 1)
    await eventually(lambda: relay.oldest_unsent_seconds == 0.0)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert gauge(reader, "payments.outbox.oldest_unsent_age") == 0.0
    assert gauge(reader, "payments.outbox.published") == 1


def gauge(reader: InMemoryMetricReader, name: str) -> float:
    """The latest value of metric ``name``."""
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    return float(metric.data.data_points[-1].value)  # type: ignore[union-attr]
    raise AssertionError(f"no metric {name}")


async def test_a_relay_that_lost_its_lease_is_not_overtaken(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """A relay whose lease died mid-publish keeps its bucket until its claim expires."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    await append_in_tenant_tx(fresh_db, tenant, [event(tenant, "pay_l", s) for s in range(100)])
    hanging = HangingPublisher(broker)
    first = OutboxRelay(fresh_db.pool, hanging, TOPOLOGY, FAST)
    first_task = asyncio.create_task(first.run(asyncio.Event()))
    await asyncio.wait_for(hanging.entered.wait(), 10)
    assert first._lease is not None
    async with fresh_db.connection() as conn:
        await conn.execute("SELECT pg_terminate_backend($1)", first._lease.conn.get_server_pid())
    async with running_relay(fresh_db, broker):
        await eventually(lambda: len({ce for ce, _, _ in received(broker)}) == 100, within=20)
    first_task.cancel()
    await asyncio.gather(first_task, return_exceptions=True)
    first_seen: list[int] = []
    for _, _, seq in received(broker):
        if seq not in first_seen:
            first_seen.append(seq)
    assert first_seen == list(range(100))


async def test_tenant_roles_cannot_forge_outbox_rows(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """A tenant cannot queue commands, speak for another tenant, or insert published rows."""
    a = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    b = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    insert = (
        "INSERT INTO payments_central.outbox"
        " (event_id, tenant_id, topic, attributes, data, published_at)"
        " VALUES ($1, $2, $3, $4::jsonb, '', $5)"
    )
    forged = [
        ("x1", a, "payment-commands", json.dumps({"ce-tenantid": a}), None),
        ("x2", a, "payment-events", json.dumps({"ce-tenantid": b}), None),
        ("x3", a, "payment-events", json.dumps({"ce-tenantid": a}), datetime.now(UTC)),
    ]
    for values in forged:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with fresh_db.tenant_transaction(a) as tx:
                await tx.conn.execute(insert, *values)
    with pytest.raises(asyncpg.CheckViolationError):
        async with fresh_db.connection() as conn:
            await conn.execute(
                "INSERT INTO payments_central.outbox (event_id, topic, attributes, data)"
                " VALUES ('x4', 'payment-events', '[]', '')"
            )
    assert await unsent(fresh_db) == 0


async def test_two_tenants_may_use_the_same_event_id(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """Event ids are unique per tenant: one tenant's id never swallows another's event."""
    a = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    b = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    first, second = event(a, "pay_1", 0), event(b, "pay_1", 0)
    same_id = replace(second, envelope=replace(second.envelope, id=first.envelope.id))
    await append_in_tenant_tx(fresh_db, a, [first])
    await append_in_tenant_tx(fresh_db, b, [same_id])
    assert await unsent(fresh_db) == 2


async def test_a_failed_batch_goes_out_again_before_the_rows_behind_it(
    fresh_db: Database, tenant_ids: Callable[[], str], tenant_migrations: tuple[Migration, ...]
) -> None:
    """With a backlog of small batches, failed batches are retried first; order is intact."""
    tenant = await provisioned(fresh_db, tenant_migrations, tenant_ids())
    broker = memory_broker()
    flaky = FlakyPublisher(broker, failures=2)
    await append_in_tenant_tx(fresh_db, tenant, [event(tenant, "pay_p", s) for s in range(20)])
    async with running_relay(fresh_db, flaky, config=replace(FAST, batch_size=5)):
        await eventually_async(lambda: _none_unsent(fresh_db))
    assert [seq for _, _, seq in received(broker)] == list(range(20))
