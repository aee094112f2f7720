"""payment-api's probes as deployed: /readyz checks the database, migrations and Pub/Sub."""

from pathlib import Path

import httpx
import pytest

from gateway.api import serving
from gateway.api_runtime import api_for
from gateway.bootstrap import bootstrap
from tenancy.central import migrate_central
from tests.emulator import PROJECT
from tests.integration.conftest import local_settings

pytestmark = pytest.mark.integration


@pytest.mark.usefixtures("pubsub_emulator_host")
async def test_readyz_waits_for_migrations_and_answers_once_they_are_applied(
    fresh_dsn: str, tmp_path: Path
) -> None:
    """A central migration not applied: 503 naming it; applied: ready, Pub/Sub checked too."""
    settings = local_settings(
        fresh_dsn,
        tmp_path,
        pubsub_project=PROJECT,
    )
    async with bootstrap(settings) as container:
        await migrate_central(container.db, container.central_migrations)
        latest = await container.db.pool.fetchrow(
            "DELETE FROM payments_central.central_migrations WHERE version ="
            " (SELECT max(version) FROM payments_central.central_migrations) RETURNING *"
        )
        assert latest is not None
        async with (
            api_for(container) as (application, _),
            serving(application) as url,
            httpx.AsyncClient(base_url=url) as client,
        ):
            assert (await client.get("/healthz")).status_code == 200
            before = await client.get("/readyz")
            await container.db.pool.execute(
                "INSERT INTO payments_central.central_migrations VALUES ($1, $2, $3, $4)",
                *latest.values(),
            )
            after = await client.get("/readyz")
    assert before.status_code == 503
    assert before.json()["status"] == "unready"
    assert before.json()["failures"]["database"] == (
        f"central migrations not applied: [{latest['version']}]"
    )
    assert "pubsub" not in before.json()["failures"]
    assert (after.status_code, after.json()) == (
        200,
        {"status": "ready", "checks": ["database", "pubsub"]},
    )


async def test_readyz_names_an_unreachable_pubsub(
    fresh_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Pub/Sub pointed at a closed port, /readyz answers 503 naming it."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")
    settings = local_settings(
        fresh_dsn,
        tmp_path,
        pubsub_project=PROJECT,
    )
    async with bootstrap(settings) as container:
        await migrate_central(container.db, container.central_migrations)
        async with (
            api_for(container) as (application, _),
            serving(application) as url,
            httpx.AsyncClient(base_url=url, timeout=15) as client,
        ):
            answer = await client.get("/readyz")
    assert answer.status_code == 503
    assert set(answer.json()["failures"]) == {"pubsub"}
