"""Benchmark: authorize sagas end to end, from command published to ``payment.authorized`` received.

The real worker (consumer, relay and timers) runs in a process of its own, so the measuring
process does not share its event loop, against the Pub/Sub emulator and Postgres, with the
fake processors taking 0 ms, then 100 ms, per vendor call. For each latency:

* throughput: N AuthorizePayment commands (default 5,000) published as fast as they are
  answered, with at most W unanswered (default twice the worker's flow-control limit, so
  it is never idle); completed sagas/s from the first publish to the last event received.
  The bound keeps the emulator out of its own trouble: with thousands of messages waiting
  on an ordered subscription it slows down by itself (the echo below, 5,000 published at
  once: 87 answers/s and publishes timing out);
* latency: commands paced at half that throughput for S seconds (default 10); p50/p99 of
  received - published, and the overhead: that minus the fake's latency. Each paced saga
  is split into stages from its stored timestamps (delivery to the handler, the saga's
  transactions and vendor call, the relay, delivery to the subscriber), and Postgres's
  sessions are sampled during the throughput run (running, waiting for a lock, waiting
  for the worker inside a transaction), as is the CPU time per completed saga of each
  process: the worker, Postgres, the emulator and this one (Linux /proc).

Baselines in the same run: an echo (a process answering each command at once with a
``payment.authorized`` message: Pub/Sub's two hops with no database and no saga), measured
the same way; and pgbench on the same server running one saga's SQL as one transaction (the
code's own statements, in the worker's order: the consumer's tenant check, the tenant
transactions, the pool's reset on release, the relay's read and mark), with as many
clients as the worker has connections. The ratio ours / pgbench is printed.

    make bench-sagas   (or: .venv/bin/python -m bench.sagas [--count N] [--seconds S]
                        [--latencies 0,100] [--quick])

Postgres is embedded (pgserver) in a temporary folder, deleted afterwards. Each load (a
throughput or a latency run) gets a fresh emulator, topology and child process, unless
PUBSUB_EMULATOR_HOST is set (then only the topology and the child are fresh).
BENCH_SAGAS_PROFILE=<folder> runs each child under cProfile and writes ``<label>.prof``
there. Writes bench/results/sagas.json.
"""

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from opentelemetry.metrics import get_meter
from pgserver.postgres_server import get_server

from bench.saga_baseline import (
    BASELINE_WAKEUP,
    pgbench,
    pgbench_script,
    sample,
)
from bench.saga_common import (
    ATTACH,
    AUTHORIZED,
    GOAL_P99_OVERHEAD_MS,
    GOAL_SAGAS_PER_S,
    PRECEDENCE,
    PROJECT,
    PUBLISH_BATCH,
    RESULTS,
    WARMUP,
)
from bench.saga_load import (
    Latency,
    Throughput,
    Tracker,
    Watched,
    commands,
    cpu_seconds,
    paced,
    publish,
    sample_waits,
    stages,
    throughput,
)
from gateway.bootstrap import system_clock
from gateway.embedded import start_embedded_postgres
from gateway.logging import configure_logging
from gateway.payments import build_payment_services, fake_processors, payment_router, shared_factory
from gateway.pubsub_emulator import PubSubEmulator
from gateway.settings import REPO_ROOT
from gateway.worker import Worker
from outbox.binding import WireMessage
from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.pubsub_admin import ensure_topology
from outbox.relay import RelayConfig
from outbox.transport import Delivery, Outgoing, PublishError
from schemas.processors import Processor, VendorEnv
from schemas.topology import (
    EVENTS_TAIL_SUBSCRIPTION,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    TOPOLOGY,
    WORKER_COMMANDS_SUBSCRIPTION,
    Topology,
)
from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.migration_files import load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as EventType


async def prepare(db: Database, tenants: list[str]) -> None:
    """Migrate, provision ``tenants`` and attach the three fake processors (sandbox) to each."""
    await migrate_central(db, load_migrations(REPO_ROOT / "migrations" / "central"))
    migrations = load_migrations(REPO_ROOT / "migrations" / "tenant")
    for tenant in tenants:
        await provision_tenant(db, migrations, ProvisionRequest(tenant, "saq_a", None))
        async with db.connection() as conn:
            for processor in Processor:
                await conn.execute(
                    ATTACH,
                    tenant,
                    processor.value,
                    f"acct_{processor.value}",
                    f"projects/p/secrets/{tenant}__{processor.value}__api_key/versions/latest",
                    PRECEDENCE[processor],
                )


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """What a child process serves (the worker, or the echo baseline) and how."""

    label: str
    echo: bool
    dsn: str
    prefix: str
    emulator: str
    latency_s: float
    max_in_flight: int
    pool_size: int
    profile: str | None


async def _serve_sagas(spec: ChildSpec, stop: asyncio.Event) -> None:
    """The payment worker as ``gateway.runtime.worker_for`` builds it, fakes of a latency."""
    db = await Database.open(spec.dsn, min_size=spec.pool_size, max_size=spec.pool_size)
    publisher = PubSubPublisher(PROJECT)
    subscriber = PubSubSubscriber(PROJECT)
    processors = fake_processors(system_clock, latency=spec.latency_s)
    services = build_payment_services(
        db,
        shared_factory(processors),
        system_clock,
        env=VendorEnv.SANDBOX,
        meter=get_meter("payments.processors"),
    )
    worker = Worker(
        db=db,
        publisher=publisher,
        subscriber=subscriber,
        topology=TOPOLOGY.with_prefix(spec.prefix),
        router=payment_router(services),
        clock=system_clock,
        relay_config=RelayConfig(),
        max_in_flight=spec.max_in_flight,
        meter=get_meter("payments.worker"),
        timers=services.timers,
    )
    try:
        await worker.run(stop)
    finally:
        await publisher.aclose()
        subscriber.close()
        await db.close()


async def _serve_echo(spec: ChildSpec, stop: asyncio.Event) -> None:
    """Answer each command with a ``payment.authorized``-typed message, batched as the relay does.

    Answers queue up while a Publish request is out; each request takes all that waited.
    """
    publisher = PubSubPublisher(PROJECT)
    subscriber = PubSubSubscriber(PROJECT)
    topology = TOPOLOGY.with_prefix(spec.prefix)
    topic = topology.name(PAYMENT_EVENTS)
    waiting: asyncio.Queue[tuple[Delivery, Outgoing]] = asyncio.Queue()

    async def echo(delivery: Delivery) -> None:
        payment_id = json.loads(delivery.message.data)["payment_id"]
        body = json.dumps({"payment_id": payment_id}).encode()
        answer = WireMessage(body, {"ce-type": AUTHORIZED}, payment_id)
        await waiting.put((delivery, Outgoing(topic, answer)))

    async def flush() -> None:
        while True:
            batch = [await waiting.get()]
            while not waiting.empty() and len(batch) < PUBLISH_BATCH:
                batch.append(waiting.get_nowait())
            results = await publisher.publish_batch([answer for _, answer in batch])
            for (delivery, _), result in zip(batch, results, strict=True):
                if isinstance(result, PublishError):
                    delivery.nack()
                else:
                    delivery.ack()

    subscription = topology.name(WORKER_COMMANDS_SUBSCRIPTION)
    flusher = asyncio.create_task(flush())
    try:
        await subscriber.run(subscription, echo, stop=stop, max_in_flight=spec.max_in_flight)
    finally:
        flusher.cancel()
        await publisher.aclose()
        subscriber.close()


def _child(spec: ChildSpec, events: "tuple[EventType, EventType]") -> None:
    """Child process: serve until ``done`` is set (the load runs in the parent)."""
    os.environ["PUBSUB_EMULATOR_HOST"] = spec.emulator
    configure_logging("warning")
    ready, done = events
    serve = _serve_echo if spec.echo else _serve_sagas

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(spec, stop))
        ready.set()
        await asyncio.to_thread(done.wait)
        stop.set()
        await task

    if spec.profile is None:
        asyncio.run(main())
        return
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, main())
    profiler.dump_stats(Path(spec.profile) / f"{spec.label}.prof")


@contextlib.contextmanager
def child_process(spec: ChildSpec) -> Iterator[int]:
    """``spec``'s server in a process of its own for the block (yields its pid; stopped by it)."""
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    child = context.Process(target=_child, args=(spec, (ready, done)))
    child.start()
    try:
        if not ready.wait(60):
            raise RuntimeError(f"the {spec.label} process did not start")
        yield child.pid or 0
    finally:
        done.set()
        child.join(60)
        if child.is_alive():
            child.terminate()  # SIGTERM to this child's pid only
            child.join(10)


@dataclass(frozen=True, slots=True)
class Plan:
    """The run's sizes."""

    count: int
    seconds: float
    latencies_ms: tuple[int, ...]
    max_in_flight: int
    pool_size: int
    tenants: int
    window: int


@dataclass(frozen=True, slots=True)
class Phase:
    """One server (the worker at one fake latency, or the echo) under both loads."""

    label: str
    fake_latency_ms: int
    throughput: Throughput
    paced: Latency
    stages: dict[str, dict[str, float]]
    db_sessions: dict[str, float]
    cpu_ms_per_saga: dict[str, float]

    @property
    def p50_overhead_ms(self) -> float:
        """p50 latency minus the fake processor's."""
        return round(self.paced.p50_ms - self.fake_latency_ms, 1)

    @property
    def p99_overhead_ms(self) -> float:
        """p99 latency minus the fake processor's."""
        return round(self.paced.p99_ms - self.fake_latency_ms, 1)


@dataclass(frozen=True, slots=True)
class Run:
    """What every phase shares."""

    dsn: str
    token: str
    db: Database
    tracker: Tracker
    tenants: list[str]
    plan: Plan
    watched: Watched


@dataclass(frozen=True, slots=True)
class Serving:
    """A child serving one load on an emulator and topology of its own."""

    topic: str
    publisher: PubSubPublisher
    watched: Watched


@contextlib.asynccontextmanager
async def listening(tracker: Tracker, topology: Topology) -> AsyncIterator[None]:
    """Feed the events of ``topology`` to ``tracker`` for the duration of the block."""
    subscriber = PubSubSubscriber(PROJECT)
    stop = asyncio.Event()
    events = topology.name(EVENTS_TAIL_SUBSCRIPTION)
    task = asyncio.create_task(
        subscriber.run(events, tracker.on_event, stop=stop, max_in_flight=5000)
    )
    try:
        yield
    finally:
        stop.set()
        await task
        subscriber.close()


@contextlib.asynccontextmanager
async def serving(run: Run, label: str, *, echo: bool, latency_ms: int) -> AsyncIterator[Serving]:
    """A fresh emulator (unless one is given), topology and child, warmed up, for one load.

    Nothing is shared between loads: the emulator slows down as an ordered subscription
    sees more ordering keys (measured at 500 messages/s, each with a key of its own: p50
    54 ms over the first 3,000, 448 ms over the fifth 3,000), and after a subscriber of an
    ordered subscription goes away it keeps about half of the new keys for it.
    """
    with emulator() as emulator_pid:
        topology = TOPOLOGY.with_prefix(f"bench-{run.token}-{label}-")
        await ensure_topology(topology, project=PROJECT)
        spec = ChildSpec(
            label=label,
            echo=echo,
            dsn=run.dsn,
            prefix=topology.prefix,
            emulator=os.environ["PUBSUB_EMULATOR_HOST"],
            latency_s=latency_ms / 1000,
            max_in_flight=run.plan.max_in_flight,
            pool_size=run.plan.pool_size,
            profile=os.environ.get("BENCH_SAGAS_PROFILE"),
        )
        publisher = PubSubPublisher(PROJECT)
        try:
            async with listening(run.tracker, topology):
                with child_process(spec) as pid:
                    topic = topology.name(PAYMENT_COMMANDS)
                    warm = commands(topic, run.tenants, f"{label.replace('-', '')}w", WARMUP)
                    await publish(publisher, run.tracker, warm)
                    if await run.tracker.wait_for([i for i, _ in warm], within=60.0) < WARMUP:
                        raise RuntimeError(f"{label}: warm-up incomplete; {run.tracker.rejections}")
                    watched = run.watched | {"echo" if echo else "worker": (pid, True)}
                    if emulator_pid is not None:
                        watched["emulator"] = (emulator_pid, True)
                    yield Serving(topic, publisher, watched)
        finally:
            await publisher.aclose()


async def while_sampling(
    db: Database, watched: Watched, work: Callable[[], Awaitable[Throughput]]
) -> tuple[Throughput, dict[str, float], dict[str, float]]:
    """Run ``work`` while sampling the database's sessions; also CPU ms per completed saga."""
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_waits(db, stop))
    before = cpu_seconds(watched)
    try:
        result = await work()
    finally:
        stop.set()
    after = cpu_seconds(watched)
    per_saga = {
        name: round((after[name] - before[name]) * 1000 / max(result.completed, 1), 2)
        for name in watched
    }
    return result, await sampler, per_saga | {"total": round(sum(per_saga.values()), 2)}


async def phase(
    run: Run, label: str, *, echo: bool = False, latency_ms: int = 0, rate: float | None = None
) -> Phase:
    """Throughput, then latency at ``rate`` (default: half the throughput), each on its own."""
    tag = label.replace("-", "")
    async with run.db.connection() as conn:
        await conn.execute("CHECKPOINT")
    async with serving(run, f"{label}-burst", echo=echo, latency_ms=latency_ms) as served:
        burst = commands(served.topic, run.tenants, f"{tag}t", run.plan.count)
        load, sessions, cpu = await while_sampling(
            run.db,
            served.watched,
            lambda: throughput(served.publisher, run.tracker, burst, run.plan.window),
        )
    print(f"{label}: {load.per_s} sagas/s ({load.completed}/{load.sent})")
    rate = rate or load.per_s / 2
    async with serving(run, f"{label}-paced", echo=echo, latency_ms=latency_ms) as served:
        count = max(1, round(rate * run.plan.seconds))
        steady = commands(served.topic, run.tenants, f"{tag}p", count)
        latency = await paced(served.publisher, run.tracker, steady, rate)
    print(f"{label}: at {latency.rate_per_s}/s p50 {latency.p50_ms}, p99 {latency.p99_ms} ms")
    ids = [i for i, _ in steady]
    split = {} if echo else await stages(run.db, run.tenants, run.tracker, ids)
    return Phase(label, latency_ms, load, latency, split, sessions, cpu)


async def bench(dsn: str, plan: Plan, watched: Watched) -> dict[str, object]:
    """Every phase on one Postgres, then pgbench on it."""
    token = secrets.token_hex(3)
    tenants = [f"tnt_bench_{token}_{i}" for i in range(plan.tenants)]
    baseline_tenant = f"tnt_pgbench_{token}"
    db = await Database.open(dsn, min_size=1, max_size=4)
    run = Run(dsn, token, db, Tracker(), tenants, plan, watched)
    try:
        await prepare(db, [*tenants, baseline_tenant])
        sagas = [await phase(run, f"sagas-{ms}ms", latency_ms=ms) for ms in plan.latencies_ms]
        rate = max(p.paced.rate_per_s for p in sagas)
        echo = await phase(run, "echo", echo=True, rate=rate)
        values = await sample(db, tenants[0])
        async with db.connection() as conn:
            await conn.execute(BASELINE_WAKEUP, baseline_tenant)
            await conn.execute("CHECKPOINT")
    finally:
        await db.close()
    script = pgbench_script(baseline_tenant, values)
    server = {"postgres": watched["postgres"], "pgbench": (os.getpid(), False)}
    before = cpu_seconds(server)
    baseline = await asyncio.to_thread(pgbench, dsn, script, plan.pool_size, plan.seconds)
    after = cpu_seconds(server)
    done = max(1, baseline["transactions"])
    for name in server:
        baseline[f"cpu_ms_per_saga_{name}"] = round((after[name] - before[name]) * 1000 / done, 2)
    report(sagas, echo, baseline)
    return figures(plan, sagas, echo, baseline, run.tracker)


def figures(
    plan: Plan, sagas: list[Phase], echo: Phase, baseline: dict[str, float], tracker: Tracker
) -> dict[str, object]:
    """Everything measured, with the ratios and the goal's verdict, for the JSON file."""
    per_s = baseline["sagas_per_s"]
    best = max(p.throughput.per_s for p in sagas)
    worst = max(p.p99_overhead_ms for p in sagas)
    return {
        "plan": asdict(plan),
        "sagas": [
            asdict(p)
            | {
                "p50_overhead_ms": p.p50_overhead_ms,
                "p99_overhead_ms": p.p99_overhead_ms,
                "p99_overhead_beyond_echo_ms": round(p.p99_overhead_ms - echo.paced.p99_ms, 1),
                "ratio_to_pgbench": round(p.throughput.per_s / per_s, 3),
            }
            for p in sagas
        ],
        "echo": asdict(echo),
        "pgbench": baseline,
        "goal": {
            "sagas_per_s": GOAL_SAGAS_PER_S,
            "p99_overhead_ms": GOAL_P99_OVERHEAD_MS,
            "best_sagas_per_s": best,
            "worst_p99_overhead_ms": worst,
            "throughput_met": best >= GOAL_SAGAS_PER_S,
            "latency_met": worst < GOAL_P99_OVERHEAD_MS,
        },
        "other_events": dict(tracker.other),
        "rejections": tracker.rejections,
    }


def report(sagas: list[Phase], echo: Phase, baseline: dict[str, float]) -> None:
    """Print the table, the ratios, where the time went, and whether the goal is met."""
    per_s = baseline["sagas_per_s"]
    print()
    print(
        f"{'':<16} {'sagas/s':>8} {'/pgbench':>8} {'paced/s':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'p50 over':>8} {'p99 over':>8}"
    )
    for p in [*sagas, echo]:
        print(
            f"{p.label:<16} {p.throughput.per_s:>8} {p.throughput.per_s / per_s:>8.2f}"
            f" {p.paced.rate_per_s:>8} {p.paced.p50_ms:>7} {p.paced.p99_ms:>7}"
            f" {p.p50_overhead_ms:>8} {p.p99_overhead_ms:>8}"
        )
    print(
        f"pgbench, one saga's SQL per transaction, {baseline['clients']} clients:"
        f" {per_s} sagas/s (latency average {baseline['latency_average_ms']} ms,"
        f" {baseline['failed']} failed; CPU ms per saga: postgres"
        f" {baseline['cpu_ms_per_saga_postgres']}, pgbench {baseline['cpu_ms_per_saga_pgbench']})"
    )
    for p in sagas:
        split = ", ".join(f"{k} {v['p50_ms']}/{v['p99_ms']}" for k, v in p.stages.items())
        print(f"{p.label} stages at {p.paced.rate_per_s}/s, p50/p99 ms: {split}")
    for p in [*sagas, echo]:
        busy = ", ".join(f"{k} {v}" for k, v in p.db_sessions.items()) or "none"
        print(f"{p.label} Postgres sessions busy during the burst (average): {busy}")
    for p in [*sagas, echo]:
        cpu = ", ".join(f"{k} {v}" for k, v in p.cpu_ms_per_saga.items())
        print(f"{p.label} CPU ms per saga during the burst: {cpu}")
    best = max(p.throughput.per_s for p in sagas)
    worst = max(p.p99_overhead_ms for p in sagas)
    print(
        f"goal >= {GOAL_SAGAS_PER_S} sagas/s: {'met' if best >= GOAL_SAGAS_PER_S else 'NOT met'}"
        f" (best {best}); p99 overhead < {GOAL_P99_OVERHEAD_MS} ms at half rate:"
        f" {'met' if worst < GOAL_P99_OVERHEAD_MS else 'NOT met'} (worst {worst} ms;"
        f" the echo's own p99 is {echo.paced.p99_ms} ms)"
    )


@contextlib.contextmanager
def emulator() -> Iterator[int | None]:
    """Use PUBSUB_EMULATOR_HOST, or run an emulator (yields its pid; stopped by it)."""
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        yield None
        return
    with PubSubEmulator() as running:
        os.environ["PUBSUB_EMULATOR_HOST"] = running.host
        try:
            yield running.pid
        finally:
            del os.environ["PUBSUB_EMULATOR_HOST"]


@contextlib.contextmanager
def embedded_postgres() -> Iterator[tuple[str, int]]:
    """A throwaway pgserver in a temporary folder (yields its DSN and postmaster pid).

    Stopped and deleted on exit.
    """
    with tempfile.TemporaryDirectory(prefix="bench-sagas-") as scratch:
        folder = Path(scratch) / "pg"
        dsn = start_embedded_postgres(folder, cleanup="delete")
        server = get_server(folder)
        try:
            postmaster = server.get_pid()
            if postmaster is None:
                raise RuntimeError(f"pgserver in {folder} reports no running postmaster")
            yield dsn, postmaster
        finally:
            server.cleanup()


def main() -> None:
    """Run the benchmark, print its figures and write them to bench/results/sagas.json."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="commands per throughput run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of paced runs")
    parser.add_argument("--latencies", default="0,100", help="fake processor latencies, ms")
    parser.add_argument("--max-in-flight", type=int, default=500, help="worker flow control")
    parser.add_argument("--pool-size", type=int, default=20, help="worker connections")
    parser.add_argument("--tenants", type=int, default=1, help="tenants the commands cycle over")
    parser.add_argument(
        "--window", type=int, help="most unanswered commands (default 2 x --max-in-flight)"
    )
    parser.add_argument("--quick", action="store_true", help="500 commands, 3 s: a smoke run")
    args = parser.parse_args()
    plan = Plan(
        count=500 if args.quick else args.count,
        seconds=3.0 if args.quick else args.seconds,
        latencies_ms=tuple(int(ms) for ms in args.latencies.split(",")),
        max_in_flight=args.max_in_flight,
        pool_size=args.pool_size,
        tenants=args.tenants,
        window=args.window or 2 * args.max_in_flight,
    )
    configure_logging("warning")
    with embedded_postgres() as (dsn, postmaster):
        watched: Watched = {"postgres": (postmaster, True), "bench": (os.getpid(), False)}
        results = asyncio.run(bench(dsn, plan, watched))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sagas.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
