"""Fixtures for driving ``payments-admin-cli`` in-process against the test database."""

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gateway.bootstrap import Overrides
from gateway.cli.main import build_app
from gateway.settings import Settings
from tenancy.db import Database


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: datetime

    def __call__(self) -> datetime:
        """The time the test set."""
        return self.now


@dataclass
class Cli:
    """Invokes the CLI with this test's environment and overrides."""

    env: dict[str, str]
    clock: FakeClock
    secret_dir: Path
    archive_dir: Path

    def __call__(self, *args: str) -> Result:
        """Run ``payments-admin-cli *args`` and return its result."""
        app = build_app(Overrides(clock=self.clock))
        return CliRunner(env=self.env).invoke(app, list(args))


@pytest.fixture
def cli_factory(tmp_path: Path) -> Callable[[str], Cli]:
    """Makes a ``Cli`` bound to the database at the given DSN."""

    def make(dsn: str) -> Cli:
        secret_dir, archive_dir = tmp_path / "secrets", tmp_path / "archive"
        env = {
            "DATABASE_URL": dsn,
            "PAYMENTS_ENVIRONMENT": "dev",
            "PAYMENTS_LOCAL_DIR": str(tmp_path / "local"),
            "PAYMENTS_SECRET_FILE_DIR": str(secret_dir),
            "PAYMENTS_ARCHIVE_DIR": str(archive_dir),
            "PAYMENTS_LOG_LEVEL": "warning",
        }
        clock = FakeClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
        return Cli(env, clock, secret_dir, archive_dir)

    return make


@pytest.fixture
def cli(cli_factory: Callable[[str], Cli], database_dsn: str) -> Cli:
    """The CLI on this worker's shared test database."""
    return cli_factory(database_dsn)


@pytest.fixture
def fresh_dsn(database_factory: Callable[[], str]) -> str:
    """A database of its own, for tests that must not see other tests' rows."""
    return database_factory()


@pytest.fixture
async def fresh_db(fresh_dsn: str) -> AsyncIterator[Database]:
    """A pool on this test's own database."""
    database = await Database.open(fresh_dsn, min_size=2, max_size=30)
    yield database
    await database.close()


def local_settings(dsn: str, folder: Path, **extra: Any) -> Settings:  # noqa: ANN401 (settings fields)
    """Settings on ``dsn`` with the local stores under ``folder``, plus ``extra``."""
    return Settings(
        database_url=dsn,
        local_dir=folder,
        secret_file_dir=folder / "secrets",
        archive_dir=folder / "archive",
        **extra,
    )
