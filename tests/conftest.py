"""Session-wide real services: one Postgres server per test run, one database per worker.

The server is ``DATABASE_URL`` when set, else an embedded pgserver (Postgres 16) in a
folder shared by the xdist workers of this run and deleted when the last one exits.
Each worker gets its own database with the central migrations applied; tenant ids made
by ``tenant_ids`` carry a per-worker token, and the roles they create are dropped at
the end.
"""

import asyncio
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from gateway.embedded import start_embedded_postgres
from gateway.logging import configure_logging
from gateway.settings import REPO_ROOT
from gateway.telemetry import configure_telemetry
from tenancy.central import migrate_central
from tenancy.db import Database
from tenancy.migration_files import Migration, load_migrations
from tests.pg import create_database, drop_databases_and_roles, new_token

pytest_plugins = [
    "tests.pubsub_conftest",
    "tests.integration.emulator_fixtures",
    "tests.integration.webhook_fixtures",
]

CENTRAL = REPO_ROOT / "migrations" / "central"
TENANT = REPO_ROOT / "migrations" / "tenant"


@pytest.fixture(scope="session")
def server_dsn(testrun_uid: str) -> str:
    """DSN of the Postgres server this test run uses (its maintenance database)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return configured
    folder = Path(tempfile.gettempdir()) / f"pgw-test-{testrun_uid[:12]}"
    return start_embedded_postgres(folder, cleanup="delete")


@pytest.fixture(scope="session")
def worker_token() -> str:
    """A token unique to this worker and run; prefixes the test tenants' ids."""
    return new_token()


@pytest.fixture(scope="session")
def central_migrations() -> tuple[Migration, ...]:
    """The repository's central migrations."""
    return load_migrations(CENTRAL)


@pytest.fixture(scope="session")
def tenant_migrations() -> tuple[Migration, ...]:
    """The repository's tenant migrations."""
    return load_migrations(TENANT)


@pytest.fixture(scope="session")
def database_factory(
    server_dsn: str, worker_token: str, central_migrations: tuple[Migration, ...]
) -> Iterator[Callable[[], str]]:
    """Makes fresh databases with central migrations applied; drops them at the end."""
    made: list[str] = []
    counter = itertools.count()

    async def prepare(dsn: str) -> None:
        db = await Database.open(dsn, min_size=1, max_size=2)
        try:
            await migrate_central(db, central_migrations)
        finally:
            await db.close()

    def make() -> str:
        name = f"pgw_test_{worker_token}_{next(counter)}"
        dsn = asyncio.run(create_database(server_dsn, name))
        made.append(name)
        asyncio.run(prepare(dsn))
        return dsn

    yield make
    asyncio.run(drop_databases_and_roles(server_dsn, made, f"tnt_{worker_token}"))


@pytest.fixture(scope="session")
def database_dsn(database_factory: Callable[[], str]) -> str:
    """This worker's shared test database."""
    return database_factory()


@pytest.fixture
def tenant_ids(worker_token: str) -> Callable[[], str]:
    """Makes tenant ids unique across tests, workers and runs."""
    counter = itertools.count()
    test_token = new_token()
    return lambda: f"tnt_{worker_token}_{test_token}{next(counter)}"


@pytest.fixture
async def db(database_dsn: str) -> AsyncIterator[Database]:
    """A small pool on this worker's test database."""
    database = await Database.open(database_dsn, min_size=1, max_size=8)
    yield database
    await database.close()


@pytest.fixture(scope="session", autouse=True)
def _json_logs() -> None:
    """Log as the service does (JSON lines, to whatever stdout is at write time), with tracing."""
    configure_logging("info")
    configure_telemetry("tests")


@pytest.fixture(autouse=True)
def _info_logs_after_each_test() -> Iterator[None]:
    """Put logging back to info after a test that ran a CLI (which sets its own level)."""
    yield
    configure_logging("info")
