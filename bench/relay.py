"""Benchmark: events through the outbox relay into the Pub/Sub emulator.

Throughput: N events (default 20,000) are written to the outbox, then one relay drains
them; events/s, next to the same messages published straight through the publisher
(the baseline: what Pub/Sub and the client allow without the outbox) in the same run.
Latency: events are written at a steady rate (default 1,000/s) in tenant transactions
of 10 while a relay runs in a process of its own; commit-to-publish (published_at -
created_at) is reported as p50/p99, next to the bare Publish RPC at the same request rate.
An end-to-end phase at 200 events/s adds the emulator's delivery to one subscriber
(commit-to-receive: receipt - ce-time).

    make bench-relay   (or: PYTHONPATH=. .venv/bin/python bench/relay.py [--events N] [--rate R])

Uses DATABASE_URL and PUBSUB_EMULATOR_HOST when set, else embedded Postgres and an
emulator of its own. Writes bench/results/relay.json.
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.embedded import start_embedded_postgres
from gateway.logging import configure_logging
from gateway.pubsub_emulator import PubSubEmulator
from gateway.settings import REPO_ROOT
from outbox.binding import WireMessage
from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.pubsub_admin import ensure_topology
from outbox.relay import OutboxRelay, RelayConfig
from outbox.store import append
from outbox.transport import Delivery, Outgoing
from schemas.topology import EVENTS_TAIL_SUBSCRIPTION, PAYMENT_EVENTS, TOPOLOGY, Topology
from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.migration_files import load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tests.integration.outbox_helpers import event
from tests.pg import create_database, drop_databases_and_roles

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as EventType

PROJECT = "payments-bench"
RESULTS = REPO_ROOT / "bench" / "results"
RELAY_BATCH = int(os.environ.get("BENCH_RELAY_BATCH", "1000"))
RECEIVE_RATE = 200
"""Events/s of the end-to-end phase: what one in-process test subscriber keeps up with."""


def publish_only(prefix: str) -> Topology:
    """The topics with no subscriptions: the emulator keeps nothing it is sent."""
    return Topology(topics=TOPOLOGY.topics, subscriptions=()).with_prefix(prefix)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def fill(db: Database, tenant: str, count: int) -> None:
    """Write ``count`` events in tenant transactions of 500."""
    for start in range(0, count, 500):
        async with db.tenant_transaction(tenant) as tx:
            await append(
                tx.conn,
                [
                    event(tenant, f"pay_{i % 2000}", i)
                    for i in range(start, min(count, start + 500))
                ],
            )


def _relay_process(
    dsn: str, prefix: str, emulator: str, events: "tuple[EventType, EventType]"
) -> None:
    """Child process: run one relay until ``done`` is set (the load runs elsewhere)."""
    os.environ["PUBSUB_EMULATOR_HOST"] = emulator
    configure_logging("warning")

    ready, done = events

    async def main() -> None:
        db = await Database.open(dsn, min_size=2, max_size=4)
        publisher = PubSubPublisher(PROJECT)
        relay = OutboxRelay(
            db.pool, publisher, TOPOLOGY.with_prefix(prefix), RelayConfig(batch_size=RELAY_BATCH)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        while not relay.owned_buckets:  # noqa: ASYNC110 (the relay exposes no event for it)
            await asyncio.sleep(0.01)
        ready.set()
        await asyncio.to_thread(done.wait)
        stop.set()
        await task
        await publisher.aclose()
        await db.close()

    asyncio.run(main())


@contextlib.contextmanager
def relay_process(dsn: str, topology: Topology) -> Iterator[None]:
    """A relay in a process of its own for the duration of the block."""
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    child = context.Process(
        target=_relay_process,
        args=(dsn, topology.prefix, os.environ["PUBSUB_EMULATOR_HOST"], (ready, done)),
    )
    child.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the relay process did not start")
        yield
    finally:
        done.set()
        child.join(30)


async def drain(db: Database, topology: Topology, count: int, dsn: str) -> float:
    """Start a relay (own process) on a full outbox; events per second until all are sent."""
    with relay_process(dsn, topology):
        started = time.perf_counter()
        await _until_sent(db)
        elapsed = time.perf_counter() - started
    return count / elapsed


async def _until_sent(db: Database) -> None:
    while True:
        async with db.connection() as conn:
            left = await conn.fetchval(
                "SELECT count(*) FROM payments_central.outbox WHERE published_at IS NULL"
            )
        if left == 0:
            return
        await asyncio.sleep(0.05)  # coarse enough not to load the 2 cores it measures


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
    await publisher.aclose()
    return count / elapsed


async def direct_latency(topology: Topology, rate: int, seconds: float) -> dict[str, float]:
    """Baseline: Publish RPCs of 10 messages at ``rate``/10 requests/s, their durations (ms)."""
    publisher = PubSubPublisher(PROJECT)
    topic = topology.name(PAYMENT_EVENTS)
    durations: list[float] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    for tick in range(int(rate * seconds) // 10):
        batch = [
            Outgoing(topic, WireMessage(b"{}", {"ce-id": f"{tick}-{j}"}, f"base_{tick % 500}"))
            for j in range(10)
        ]
        sent = time.perf_counter()
        await publisher.publish_batch(batch)
        durations.append((time.perf_counter() - sent) * 1000)
        delay = started + (tick + 1) * 10 / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    await publisher.aclose()
    return {
        "direct_publish_rpc_p50_ms": round(statistics.median(durations), 2),
        "direct_publish_rpc_p99_ms": round(percentile(durations, 99), 2),
    }


async def produce(db: Database, tenant: str, rate: int, seconds: float, prefix: str) -> int:
    """Write ``rate`` events/s for ``seconds``, 10 per tenant transaction; return the count."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    ticks = int(rate * seconds) // 10
    for tick in range(ticks):
        async with db.tenant_transaction(tenant) as tx:
            await append(
                tx.conn,
                [event(tenant, f"{prefix}{tick % 500}", tick * 10 + j) for j in range(10)],
            )
        delay = started + (tick + 1) * 10 / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    return ticks * 10


async def publish_latency(  # noqa: PLR0913, PLR0917 (the run's parts and its load parameters)
    db: Database, dsn: str, tenant: str, topology: Topology, rate: int, seconds: float
) -> dict[str, float]:
    """Commit-to-publish with a relay in its own process and nothing else running."""
    with relay_process(dsn, topology):
        await produce(db, tenant, rate, seconds, "lat_")
        await _until_sent(db)
    async with db.connection() as conn:
        publish_ms = [
            r[0]
            for r in await conn.fetch(
                "SELECT (extract(epoch FROM published_at - created_at) * 1000)::float8"
                " FROM payments_central.outbox WHERE attributes->>'ce-subject' LIKE 'lat_%'"
            )
        ]
    return {
        "commit_to_publish_p50_ms": round(statistics.median(publish_ms), 2),
        "commit_to_publish_p99_ms": round(percentile(publish_ms, 99), 2),
    }


async def receive_latency(  # noqa: PLR0913, PLR0917 (the run's parts and its load parameters)
    db: Database, dsn: str, tenant: str, topology: Topology, rate: int, seconds: float
) -> dict[str, float]:
    """Commit-to-receive at a subscriber of the emulator (includes its delivery latency)."""
    subscriber = PubSubSubscriber(PROJECT)
    received: list[float] = []

    async def on_message(delivery: Delivery) -> None:
        delivery.ack()
        if "ce-time" in delivery.message.attributes:
            sent = datetime.fromisoformat(delivery.message.attributes["ce-time"])
            received.append((datetime.now(UTC) - sent).total_seconds() * 1000)

    stop = asyncio.Event()
    with relay_process(dsn, topology):
        task = asyncio.create_task(
            subscriber.run(
                topology.name(EVENTS_TAIL_SUBSCRIPTION), on_message, stop=stop, max_in_flight=2000
            )
        )
        await asyncio.sleep(1.0)  # let the subscriber's stream open
        expected = await produce(db, tenant, rate, seconds, "e2e_")
        deadline = asyncio.get_running_loop().time() + 30
        while len(received) < expected and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 (a counter the subscriber's threads fill)
            await asyncio.sleep(0.05)
        stop.set()
        await task
    subscriber.close()
    return {
        "receive_rate_per_s": rate,
        "received": len(received),
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
    topology = publish_only(f"bench-{secrets.token_hex(3)}-")
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
        relay_rate = await drain(db, topology, events, dsn)
        print(f"relay {relay_rate:.0f} events/s; direct publish {baseline:.0f} messages/s")
        baseline_latency = await direct_latency(topology, rate, seconds / 2)
        latency = await publish_latency(db, dsn, tenant, topology, rate, seconds)
        fresh = TOPOLOGY.with_prefix(f"bench-{secrets.token_hex(3)}-")  # empty subscriptions
        await ensure_topology(fresh, project=PROJECT)
        latency |= await receive_latency(db, dsn, tenant, fresh, RECEIVE_RATE, seconds / 2)
    finally:
        await db.close()
    return {
        "events": events,
        "relay_events_per_s": round(relay_rate),
        "direct_publish_per_s": round(baseline),
        "ratio_relay_to_direct": round(relay_rate / baseline, 2),
        "steady_rate_per_s": rate,
        **baseline_latency,
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
