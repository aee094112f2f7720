"""Benchmark: events through the outbox relay into the Pub/Sub emulator.

Throughput: N events (default 20,000) are written to the outbox, then one relay drains
them; events/s, next to the same messages published straight through the publisher
(the baseline: what Pub/Sub and the client allow without the outbox) in the same run.
Latency: events are written at a steady rate (default 1,000/s) in tenant transactions
of 10 while the relay runs; commit-to-publish (published_at - created_at) and
commit-to-receive (subscriber receipt - ce-time) are reported as p50/p99.

    make bench-relay   (or: PYTHONPATH=. .venv/bin/python bench/relay.py [--events N] [--rate R])

Uses DATABASE_URL and PUBSUB_EMULATOR_HOST when set, else embedded Postgres and an
emulator of its own. Writes bench/results/relay.json.
"""

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from gateway.embedded import start_embedded_postgres
from gateway.logging import configure_logging
from gateway.pubsub_emulator import PubSubEmulator
from gateway.settings import REPO_ROOT
from outbox.binding import WireMessage
from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.pubsub_admin import ensure_topology
from outbox.relay import OutboxRelay, RelayConfig
from outbox.store import OutgoingEvent, append
from outbox.transport import Delivery, Outgoing
from schemas.envelope import SOURCE, TYPE_PREFIX, Envelope
from schemas.topology import EVENTS_TAIL_SUBSCRIPTION, PAYMENT_EVENTS, TOPOLOGY, Topology
from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.migration_files import load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tests.pg import create_database, drop_databases_and_roles

PROJECT = "payments-bench"
RESULTS = REPO_ROOT / "bench" / "results"
TYPE = TYPE_PREFIX + "bench.event.v1"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def make_event(tenant: str, key: str, seq: int) -> OutgoingEvent:
    """A small event on the events topic."""
    envelope = Envelope(
        id=str(uuid.uuid4()),
        source=SOURCE,
        type=TYPE,
        time=datetime.now(UTC),
        subject=key,
        tenant_id=tenant,
    )
    data = json.dumps({"payment_id": key, "seq": seq}).encode()
    return OutgoingEvent(envelope, data, PAYMENT_EVENTS, ordering_key=key)


async def fill(db: Database, tenant: str, count: int) -> None:
    """Write ``count`` events in tenant transactions of 500."""
    for start in range(0, count, 500):
        async with db.tenant_transaction(tenant) as tx:
            await append(
                tx.conn,
                [
                    make_event(tenant, f"pay_{i % 2000}", i)
                    for i in range(start, min(count, start + 500))
                ],
            )


async def drain(db: Database, topology: Topology, count: int) -> float:
    """Start a relay on a full outbox; seconds until every row is published."""
    publisher = PubSubPublisher(PROJECT)
    relay = OutboxRelay(db.pool, publisher, topology, RelayConfig(batch_size=1000))
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    while True:
        async with db.connection() as conn:
            left = await conn.fetchval(
                "SELECT count(*) FROM payments_central.outbox WHERE published_at IS NULL"
            )
        if left == 0:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    publisher.close()
    return count / elapsed


async def direct(topology: Topology, count: int) -> float:
    """Publish ``count`` messages straight through the publisher; messages per second."""
    publisher = PubSubPublisher(PROJECT)
    topic = topology.name(PAYMENT_EVENTS)
    batch = [
        Outgoing(topic, WireMessage(b'{"seq":%d}' % i, {"ce-id": str(i)}, f"pay_{i % 2000}"))
        for i in range(count)
    ]
    started = time.perf_counter()
    for start in range(0, count, 1000):
        await publisher.publish_batch(batch[start : start + 1000])
    elapsed = time.perf_counter() - started
    publisher.close()
    return count / elapsed


async def steady(
    db: Database, tenant: str, topology: Topology, rate: int, seconds: float
) -> dict[str, float]:
    """Write at ``rate`` events/s while a relay runs; return latency percentiles (ms)."""
    publisher, subscriber = PubSubPublisher(PROJECT), PubSubSubscriber(PROJECT)
    relay = OutboxRelay(db.pool, publisher, topology, RelayConfig(batch_size=500))
    received: list[float] = []
    expected = int(rate * seconds)

    async def on_message(delivery: Delivery) -> None:
        sent = datetime.fromisoformat(delivery.message.attributes["ce-time"])
        received.append((datetime.now(UTC) - sent).total_seconds() * 1000)
        delivery.ack()

    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(relay.run(stop)),
        asyncio.create_task(
            subscriber.run(
                topology.name(EVENTS_TAIL_SUBSCRIPTION), on_message, stop=stop, max_in_flight=2000
            )
        ),
    ]
    await asyncio.sleep(1.0)  # let the relay take its buckets and the stream open
    received.clear()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for tick in range(expected // 10):
        async with db.tenant_transaction(tenant) as tx:
            await append(
                tx.conn, [make_event(tenant, f"lat_{tick % 500}", tick * 10 + j) for j in range(10)]
            )
        delay = started + (tick + 1) * 10 / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    deadline = loop.time() + 30
    while len(received) < expected and loop.time() < deadline:  # noqa: ASYNC110 (polling a counter the subscriber thread fills)
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    publisher.close()
    subscriber.close()
    async with db.connection() as conn:
        publish_ms = [
            r[0]
            for r in await conn.fetch(
                "SELECT extract(epoch FROM published_at - created_at) * 1000"
                " FROM payments_central.outbox WHERE attributes->>'ce-subject' LIKE 'lat_%'"
            )
        ]
    return {
        "events": expected,
        "received": len(received),
        "commit_to_publish_p50_ms": round(statistics.median(publish_ms), 2),
        "commit_to_publish_p99_ms": round(percentile(publish_ms, 99), 2),
        "commit_to_receive_p50_ms": round(statistics.median(received), 2),
        "commit_to_receive_p99_ms": round(percentile(received, 99), 2),
    }


@contextlib.contextmanager
def emulator() -> Iterator[None]:
    """Use PUBSUB_EMULATOR_HOST, or run an emulator for the benchmark."""
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        yield
        return
    with PubSubEmulator() as running:
        os.environ["PUBSUB_EMULATOR_HOST"] = running.host
        try:
            yield
        finally:
            del os.environ["PUBSUB_EMULATOR_HOST"]


async def bench(dsn: str, events: int, rate: int, seconds: float) -> dict[str, object]:
    """Run both phases on a fresh database."""
    topology = TOPOLOGY.with_prefix(f"bench-{secrets.token_hex(3)}-")
    await ensure_topology(topology, project=PROJECT)
    db = await Database.open(dsn, min_size=2, max_size=10)
    try:
        await migrate_central(db, load_migrations(REPO_ROOT / "migrations" / "central"))
        tenant = f"tnt_bench_{secrets.token_hex(3)}"
        await provision_tenant(
            db,
            load_migrations(REPO_ROOT / "migrations" / "tenant"),
            ProvisionRequest(tenant, "saq_a", None),
        )
        baseline = await direct(topology, events)
        await fill(db, tenant, events)
        relay_rate = await drain(db, topology, events)
        latency = await steady(db, tenant, topology, rate, seconds)
    finally:
        await db.close()
    return {
        "events": events,
        "relay_events_per_s": round(relay_rate),
        "direct_publish_per_s": round(baseline),
        "ratio_relay_to_direct": round(relay_rate / baseline, 2),
        "steady_rate_per_s": rate,
        **latency,
    }


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    configure_logging("warning")
    server = os.environ.get("DATABASE_URL") or start_embedded_postgres(
        REPO_ROOT / ".local" / "bench-pg"
    )
    name = f"pgw_bench_{secrets.token_hex(3)}"
    dsn = asyncio.run(create_database(server, name))
    try:
        with emulator():
            figures = asyncio.run(bench(dsn, args.events, args.rate, args.seconds))
    finally:
        asyncio.run(drop_databases_and_roles(server, [name], "tnt_bench_"))
    for key, value in figures.items():
        print(f"{key}: {value}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    Path(RESULTS / "relay.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
