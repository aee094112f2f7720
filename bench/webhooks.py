"""Benchmark: signed Stripe webhooks into payment-api's inbox, next to a bare uvicorn endpoint.

payment-api runs in a process of its own, built as ``payment-gateway api`` builds it
(``bootstrap``, ``api_for``, ``gateway.api.serving``) with the real Stripe adapter
(``PAYMENTS_PROCESSOR_BACKEND=vendors``), so every webhook is checked as in production:
tenant served, Stripe attached, ``Stripe-Signature`` verified with the tenant's
``whsec_`` secret (file secret store), the event normalized and inserted into
``payments_central.webhook_inbox``. Verifying makes no call to Stripe. The baseline is a
bare endpoint (a Starlette route that reads the body and answers JSON) served by the
same ``serving`` (uvicorn, httptools) in a process of its own. For each server:

* warm-up: a few hundred webhooks, not counted;
* throughput: N webhooks (default 20,000) over C keep-alive connections (default 32),
  each sending its next as soon as the last is answered; webhooks/s;
* latency: webhooks at a fixed rate (half payment-api's throughput, the same rate for
  the bare endpoint) for S seconds (default 10), p50/p90/p99/max from each one's due time;

and the CPU seconds each process used per 1,000 webhooks (payment-api or the bare
endpoint, Postgres, this load generator), with what the rest of the machine used and the
hypervisor stole meanwhile, so that other work on the machine shows. Every event has an
id of its own (``evt_bench_<n>``) and is signed just before its phase (Stripe's tolerance
is 300 s); afterwards the inbox must hold exactly the events sent to payment-api, and
every answer must have been 200. Both servers and this process run on uvloop when it is
importable (``--loop asyncio``: asyncio's own loop, which is what ``payment-gateway api``
runs on, since it drives uvicorn from ``asyncio.run``).

    make bench-webhooks   (or: .venv/bin/python -m bench.webhooks [--count N] [--seconds S]
                           [--connections C] [--pool-size P] [--log-level L] [--quick])

Postgres is embedded (pgserver) in a temporary folder, deleted afterwards. payment-api logs
at ``--log-level`` (default info, the service's default: one line per stored webhook)
into a file under the temporary folder. ``--profile DIR`` runs each server under cProfile
and writes ``<server>.prof`` there. Writes bench/results/webhooks.json.
"""

import argparse
import asyncio
import contextlib
import cProfile
import itertools
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.saga_common import RESULTS
from bench.saga_load import Watched
from bench.sagas import embedded_postgres
from bench.webhook_load import (
    Latency,
    Target,
    Throughput,
    closed_loop,
    open_loop,
    per_1000,
    usage,
    wait_ready,
)
from bench.webhook_load import signed_requests as sign
from gateway.api import serving
from gateway.api_runtime import api_for
from gateway.bootstrap import bootstrap
from gateway.logging import configure_logging
from gateway.runtime import stop_on_signals
from gateway.settings import REPO_ROOT, Settings
from schemas.processors import Processor, VendorEnv
from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.migration_files import load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tenancy.secrets import FileSecretStore, SecretRef
from tenancy.vendors import AttachRequest, attach_vendor

GOAL_PER_S: Final = 2000
GOAL_P99_MS: Final = 20
HOST: Final = "127.0.0.1"
READY_WITHIN_S: Final = 60.0
STOP_WITHIN_S: Final = 30.0
UNUSED_SANDBOX: Final = "http://127.0.0.1:9"
"""Stripe's base URL for the adapter: never called, since verifying needs no request."""
T = TypeVar("T")
_INBOX: Final = "SELECT count(*) FROM payments_central.webhook_inbox WHERE tenant_id = $1"


@dataclass(frozen=True, slots=True)
class Plan:
    """The run's sizes and settings."""

    warmup: int
    count: int
    seconds: float
    connections: int
    pool_size: int
    log_level: str
    loop: str
    profile: str | None


@dataclass(frozen=True, slots=True)
class Tenant:
    """The benchmark's tenant and its Stripe webhook secret."""

    tenant_id: str
    webhook_secret: str


async def prepare(dsn: str, store_dir: Path) -> Tenant:
    """Migrate, provision a tenant, attach Stripe (sandbox) with secrets in a file store."""
    token = secrets.token_hex(4)
    tenant = Tenant(f"tnt_whbench_{token}", f"whsec_bench_{secrets.token_hex(16)}")
    store = FileSecretStore(store_dir)
    base = f"projects/payments-bench/secrets/{tenant.tenant_id}/stripe/sandbox"
    key_ref = SecretRef.parse(f"{base}/api_key/versions/latest")
    hook_ref = SecretRef.parse(f"{base}/webhook_secret/versions/latest")
    await store.add_version(key_ref, SecretStr(f"sk_test_bench_{token}"))
    await store.add_version(hook_ref, SecretStr(tenant.webhook_secret))
    db = await Database.open(dsn, min_size=1, max_size=2)
    try:
        await migrate_central(db, load_migrations(REPO_ROOT / "migrations" / "central"))
        migrations = load_migrations(REPO_ROOT / "migrations" / "tenant")
        await provision_tenant(db, migrations, ProvisionRequest(tenant.tenant_id, "saq_a", None))
        request = AttachRequest(
            tenant.tenant_id,
            Processor.STRIPE,
            VendorEnv.SANDBOX,
            f"acct_{token}",
            key_ref,
            hook_ref,
            10,
        )
        await attach_vendor(db, store, request, production=False)
    finally:
        await db.close()
    return tenant


# ---- the servers (child processes) ----------------------------------------------------


async def _serve_api() -> None:
    """payment-api as ``payment-gateway api`` serves it, its settings from the environment."""
    settings = Settings()
    configure_logging(settings.log_level)
    stop = stop_on_signals()
    async with (
        bootstrap(settings) as container,
        api_for(container) as (application, _),
        serving(application, settings.api_host, settings.api_port),
    ):
        await stop.wait()


def bare_app() -> Starlette:
    """The baseline: read the body, answer a small JSON object; nothing else."""

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"status": "stored", "bytes": len(body)})

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks/{processor}/{tenant_id}", webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


async def _serve_bare(port: int) -> None:
    stop = stop_on_signals()
    async with serving(bare_app(), HOST, port):
        await stop.wait()


def run_loop(main: Coroutine[Any, Any, T], loop: str, profile: Path | None = None) -> T:
    """Run ``main`` on uvloop (``loop == "uvloop"``) or asyncio's loop, maybe profiled."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 (optional: only when it is asked for)

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        if profile is None:
            return runner.run(main)
        profiler = cProfile.Profile()
        try:
            return profiler.runcall(runner.run, main)
        finally:
            profiler.dump_stats(profile)


def default_loop() -> str:
    """``uvloop`` when it is importable, else ``asyncio``."""
    try:
        import uvloop  # noqa: F401, PLC0415 (only probing that it is installed)
    except ImportError:
        return "asyncio"
    return "uvloop"


@contextlib.contextmanager
def server_process(
    argv: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m bench.webhooks <argv>`` for the block; SIGTERM to its pid on exit."""
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 (this interpreter and module, fixed arguments)
            [sys.executable, "-m", "bench.webhooks", *argv],
            cwd=REPO_ROOT,
            env=os.environ | {"PYTHONPATH": str(REPO_ROOT)} | env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_WITHIN_S)


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


# ---- the load (this process) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Phase:
    """One server under both loads, and the CPU time its parts used per 1,000 webhooks."""

    label: str
    sent: int
    throughput: Throughput
    paced: Latency
    cpu_s_per_1000_burst: dict[str, float]
    cpu_s_per_1000_paced: dict[str, float]


@dataclass(frozen=True, slots=True)
class Server:
    """How to start one server, and where it listens."""

    label: str
    argv: list[str]
    env: dict[str, str]
    port: int


@dataclass(frozen=True, slots=True)
class Run:
    """What both servers' measurements share."""

    plan: Plan
    tenant: Tenant
    numbers: Iterator[int]
    """The next event numbers: every event sent in the run has an id of its own."""
    watched: Watched
    log: Path
    """The servers' output."""


async def measure(run: Run, server: Server, rate: float | None = None) -> Phase:
    """Start ``server``, warm it up, then its throughput, then its latency at ``rate``.

    ``rate`` defaults to half the throughput just measured.
    """
    plan, tenant = run.plan, run.tenant
    target = Target(HOST, server.port, f"/webhooks/stripe/{tenant.tenant_id}")

    def batch(count: int) -> list[bytes]:
        return sign(target, tenant.webhook_secret, itertools.islice(run.numbers, count))

    with server_process(server.argv, server.env, run.log) as process:
        try:
            await wait_ready(target, lambda: process.poll() is None, READY_WITHIN_S)
        except RuntimeError:
            print(run.log.read_text()[-4000:], file=sys.stderr)
            raise
        warm = await closed_loop(target, batch(plan.warmup), plan.connections)
        watch = run.watched | {server.label: (process.pid, False)}
        burst = batch(plan.count)
        before = usage(watch)
        load = await closed_loop(target, burst, plan.connections)
        burst_cpu = per_1000(before, usage(watch), load.sent)
        print(f"{server.label}: {load.per_s} webhooks/s over {plan.connections} connections")
        rate = rate or load.per_s / 2
        steady = batch(max(1, round(rate * plan.seconds)))
        before = usage(watch)
        paced = await open_loop(target, steady, rate, plan.connections)
        paced_cpu = per_1000(before, usage(watch), paced.sent)
        print(
            f"{server.label}: at {paced.rate_per_s}/s p50 {paced.p50_ms} ms, p99 {paced.p99_ms} ms"
        )
    sent = warm.sent + load.sent + paced.sent
    errors = sum((Counter(part.errors) for part in (warm, load, paced)), Counter[str]())
    if errors:
        print(f"{server.label}: answers other than 200: {errors}")
    return Phase(server.label, sent, load, paced, burst_cpu, paced_cpu)


def servers(plan: Plan, dsn: str, scratch: Path) -> tuple[Server, Server]:
    """payment-api (settings in its environment, as deployed) and the bare endpoint."""
    api_port, bare_port = free_port(), free_port()
    profile = Path(plan.profile) if plan.profile else None

    def argv(command: str, label: str) -> list[str]:
        where = [] if profile is None else ["--profile", str(profile / f"{label}.prof")]
        return [command, "--loop", plan.loop, *where]

    api_env = {
        "DATABASE_URL": dsn,
        "PAYMENTS_ENVIRONMENT": "dev",
        "PAYMENTS_LOCAL_DIR": str(scratch / "local"),
        "PAYMENTS_SECRET_BACKEND": "file",
        "PAYMENTS_SECRET_FILE_DIR": str(scratch / "secrets"),
        "PAYMENTS_PROCESSOR_BACKEND": "vendors",
        "PAYMENTS_SANDBOX_URLS": json.dumps({"stripe": UNUSED_SANDBOX}),
        "PAYMENTS_API_HOST": HOST,
        "PAYMENTS_API_PORT": str(api_port),
        "PAYMENTS_DB_POOL_MAX": str(plan.pool_size),
        "PAYMENTS_LOG_LEVEL": plan.log_level,
    }
    api = Server("payment-api", argv("serve-api", "payment-api"), api_env, api_port)
    bare = Server("bare", [*argv("serve-bare", "bare"), "--port", str(bare_port)], {}, bare_port)
    return api, bare


async def bench(plan: Plan, dsn: str, postmaster: int, scratch: Path) -> dict[str, object]:
    """payment-api, then the bare endpoint at payment-api's paced rate; then the inbox check."""
    load_before = os.getloadavg()
    tenant = await prepare(dsn, scratch / "secrets")
    watched: Watched = {"postgres": (postmaster, True), "load generator": (os.getpid(), False)}
    run = Run(plan, tenant, itertools.count(1), watched, scratch / "servers.log")
    api_server, bare_server = servers(plan, dsn, scratch)
    api = await measure(run, api_server)
    bare = await measure(run, bare_server, api.paced.rate_per_s)
    db = await Database.open(dsn, min_size=1, max_size=1)
    try:
        async with db.connection() as conn:
            stored = int(await conn.fetchval(_INBOX, tenant.tenant_id))
    finally:
        await db.close()
    results = figures(plan, api, bare, stored)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m_before": round(load_before[0], 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }
    report(results, api, bare)
    return results


def _all_ok(phase: Phase) -> bool:
    return phase.throughput.ok == phase.throughput.sent and phase.paced.ok == phase.paced.sent


def figures(plan: Plan, api: Phase, bare: Phase, stored: int) -> dict[str, object]:
    """Everything measured, with the ratios, the checks and the goal's verdict."""
    return {
        "plan": asdict(plan),
        "payment_api": asdict(api),
        "bare": asdict(bare),
        "ratio_throughput_api_to_bare": round(api.throughput.per_s / bare.throughput.per_s, 3),
        "ratio_p50_api_to_bare": round(api.paced.p50_ms / bare.paced.p50_ms, 2),
        "ratio_p99_api_to_bare": round(api.paced.p99_ms / bare.paced.p99_ms, 2),
        "checks": {
            "events_sent_to_api": api.sent,
            "inbox_rows": stored,
            "inbox_matches": stored == api.sent,
            "every_answer_200": _all_ok(api) and _all_ok(bare),
        },
        "goal": {
            "webhooks_per_s": GOAL_PER_S,
            "p99_ms": GOAL_P99_MS,
            "throughput_met": api.throughput.per_s >= GOAL_PER_S,
            "latency_met": api.paced.p99_ms < GOAL_P99_MS,
        },
    }


def report(results: dict[str, Any], api: Phase, bare: Phase) -> None:
    """Print the table, the ratios, where the CPU went, the checks and the goal."""
    print()
    print(
        f"{'':<12} {'webhooks/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'paced/s':>8} {'p50 ms':>7}"
        f" {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'late p99':>8}"
    )
    for p in (api, bare):
        t, q = p.throughput, p.paced
        print(
            f"{p.label:<12} {t.per_s:>10} {t.p50_ms:>7} {t.p99_ms:>7} | {q.achieved_per_s:>8}"
            f" {q.p50_ms:>7} {q.p90_ms:>7} {q.p99_ms:>7} {q.max_ms:>7} {q.late_p99_ms:>8}"
        )
    print(
        f"payment-api / bare: throughput {results['ratio_throughput_api_to_bare']};"
        f" at {api.paced.rate_per_s}/s p50 {results['ratio_p50_api_to_bare']}x,"
        f" p99 {results['ratio_p99_api_to_bare']}x"
    )
    for p in (api, bare):
        for name, cpu in (("burst", p.cpu_s_per_1000_burst), ("paced", p.cpu_s_per_1000_paced)):
            used = ", ".join(f"{k} {v}" for k, v in cpu.items())
            print(f"{p.label} CPU s per 1,000 webhooks ({name}): {used}")
    checks, goal, machine = results["checks"], results["goal"], results["machine"]
    print(
        f"inbox: {checks['inbox_rows']} rows for {checks['events_sent_to_api']} distinct events"
        f" sent ({'match' if checks['inbox_matches'] else 'MISMATCH'}); every answer 200:"
        f" {'yes' if checks['every_answer_200'] else 'NO'}"
    )
    print(
        f"goal >= {GOAL_PER_S} webhooks/s: {'met' if goal['throughput_met'] else 'NOT met'}"
        f" ({api.throughput.per_s}); p99 < {GOAL_P99_MS} ms at {api.paced.rate_per_s}/s:"
        f" {'met' if goal['latency_met'] else 'NOT met'} ({api.paced.p99_ms} ms)"
    )
    print(
        f"{machine['cpus']} CPUs, load average (1 min) {machine['load_average_1m_before']} before,"
        f" {machine['load_average_1m_after']} after: other work on the machine shows in both"
        " servers' figures"
    )


# ---- entry points ---------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """A child process: ``serve-api`` or ``serve-bare`` until SIGTERM."""
    profile = Path(args.profile) if args.profile else None
    if args.command == "serve-api":
        run_loop(_serve_api(), args.loop, profile)
    else:
        run_loop(_serve_bare(args.port), args.loop, profile)


def parse() -> argparse.Namespace:
    """The command line: the benchmark, or one of its servers."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="webhooks per throughput run")
    parser.add_argument("--warmup", type=int, default=1_000, help="webhooks before measuring")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of paced runs")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--pool-size", type=int, default=10, help="payment-api's connections")
    parser.add_argument("--log-level", default="info", help="payment-api's log level")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default=default_loop())
    parser.add_argument("--profile", help="folder for each server's cProfile output")
    parser.add_argument("--quick", action="store_true", help="3,000 webhooks, 3 s: a smoke run")
    commands = parser.add_subparsers(dest="command")
    for name in ("serve-api", "serve-bare"):
        child = commands.add_parser(name, help="a server process (started by the benchmark)")
        child.add_argument("--loop", choices=["uvloop", "asyncio"], default=default_loop())
        child.add_argument("--profile", help="write this cProfile file on exit")
        child.add_argument("--port", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    """Run the benchmark (or one of its servers) and write bench/results/webhooks.json."""
    args = parse()
    if args.command is not None:
        serve(args)
        return
    plan = Plan(
        warmup=300 if args.quick else args.warmup,
        count=3_000 if args.quick else args.count,
        seconds=3.0 if args.quick else args.seconds,
        connections=args.connections,
        pool_size=args.pool_size,
        log_level=args.log_level,
        loop=args.loop,
        profile=str(Path(args.profile).resolve()) if args.profile else None,
    )
    if plan.profile:
        Path(plan.profile).mkdir(parents=True, exist_ok=True)
    configure_logging("warning")
    # pgserver asks platformdirs for a runtime folder that containers lack
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    with (
        embedded_postgres() as (dsn, postmaster),
        tempfile.TemporaryDirectory(prefix="bench-webhooks-") as scratch,
    ):
        results = run_loop(bench(plan, dsn, postmaster, Path(scratch)), plan.loop)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "webhooks.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
