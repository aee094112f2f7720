"""Benchmark: `payments-admin-cli migrate-all` over N tenants (default 1,000).

Provisions N tenants in a throwaway database, then, three times, adds a new tenant
migration and times the real CLI (a subprocess, default policy: batches of 50, 30 s per
tenant). As a baseline in the same run, a bare asyncpg loop applies an equivalent DDL to
every schema with 50 connections and no bookkeeping. Prints medians and the ratio, and
writes bench/results/migrate_all.json.

    make bench-migrate   (or: PYTHONPATH=. .venv/bin/python bench/migrate_all.py --tenants N)

Uses DATABASE_URL when set, else an embedded pgserver under .local/bench-pg.
"""

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from gateway.embedded import start_embedded_postgres
from gateway.logging import configure_logging
from gateway.settings import REPO_ROOT
from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.migration_files import load_migrations
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tests.pg import create_database, drop_databases_and_roles

ROUNDS = 3
RESULTS = REPO_ROOT / "bench" / "results"


async def provision_all(dsn: str, tenants: list[str]) -> float:
    """Provision every tenant, 20 at a time; return tenants per second."""
    central = load_migrations(REPO_ROOT / "migrations" / "central")
    tenant_migrations = load_migrations(REPO_ROOT / "migrations" / "tenant")
    db = await Database.open(dsn, min_size=1, max_size=20)
    limit = asyncio.Semaphore(20)

    async def one(tenant: str) -> None:
        async with limit:
            await provision_tenant(db, tenant_migrations, ProvisionRequest(tenant, "saq_a", None))

    try:
        await migrate_central(db, central)
        started = time.perf_counter()
        await asyncio.gather(*(one(t) for t in tenants))
        return len(tenants) / (time.perf_counter() - started)
    finally:
        await db.close()


def run_cli(dsn: str, migrations_dir: Path) -> float:
    """Run migrate-all as operators do; return wall seconds."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "PAYMENTS_MIGRATIONS_DIR": str(migrations_dir),
        "PAYMENTS_LOG_LEVEL": "warning",
    }
    cli = Path(sys.executable).with_name("payments-admin-cli")
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (our own console script)
        [str(cli), "migrate-all"], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"migrate-all failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


async def raw_baseline(dsn: str, schemas: list[str], table: str) -> float:
    """Apply CREATE TABLE to every schema with 50 bare connections; return seconds."""
    pool = await asyncpg.create_pool(dsn, min_size=50, max_size=50)

    async def one(schema: str) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f'CREATE TABLE "{schema}".{table} (id bigint PRIMARY KEY, note text)'
            )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(s) for s in schemas))
        return time.perf_counter() - started
    finally:
        await pool.close()


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args()
    configure_logging("warning")
    server = os.environ.get("DATABASE_URL") or start_embedded_postgres(
        REPO_ROOT / ".local" / "bench-pg"
    )
    token = secrets.token_hex(3)
    name = f"pgw_bench_{token}"
    dsn = asyncio.run(create_database(server, name))
    tenants = [f"tnt_bench_{token}_{i:05d}" for i in range(args.tenants)]
    try:
        provision_rate = asyncio.run(provision_all(dsn, tenants))
        print(f"provisioned {len(tenants)} tenants at {provision_rate:.1f} tenants/s")
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch) / "migrations"
            shutil.copytree(REPO_ROOT / "migrations", root)
            cli_seconds, raw_seconds = [], []
            for round_ in range(ROUNDS):
                table = f"bench_notes_{round_}"
                sql = f"CREATE TABLE {table} (id bigint PRIMARY KEY, note text);\n"
                (root / "tenant" / f"09{round_:02d}_{table}.sql").write_text(sql)
                cli_seconds.append(run_cli(dsn, root))
                raw = asyncio.run(raw_baseline(dsn, [t.lower() for t in tenants], f"raw_{table}"))
                raw_seconds.append(raw)
                print(
                    f"round {round_ + 1}: migrate-all {cli_seconds[-1]:.2f} s"
                    f" ({len(tenants) / cli_seconds[-1]:.0f} tenants/s);"
                    f" bare asyncpg {raw:.2f} s"
                )
    finally:
        asyncio.run(drop_databases_and_roles(server, [name], f"tnt_bench_{token}"))
    cli_median, raw_median = statistics.median(cli_seconds), statistics.median(raw_seconds)
    figures = {
        "tenants": len(tenants),
        "rounds": ROUNDS,
        "provision_tenants_per_s": round(provision_rate, 1),
        "migrate_all_seconds": [round(s, 3) for s in cli_seconds],
        "migrate_all_median_s": round(cli_median, 3),
        "migrate_all_tenants_per_s": round(len(tenants) / cli_median, 1),
        "bare_asyncpg_median_s": round(raw_median, 3),
        "ratio_to_bare": round(cli_median / raw_median, 2),
    }
    print(
        f"migrate-all of {len(tenants)} tenants: median {cli_median:.2f} s"
        f" = {figures['migrate_all_tenants_per_s']} tenants/s;"
        f" bare asyncpg median {raw_median:.2f} s; ratio {figures['ratio_to_bare']}x"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "migrate_all.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
