"""Builds ``payment-api`` from the container: the ingress, its adapters and the probes."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from starlette.applications import Starlette

from gateway.api import ApiConfig, Probes, ReadinessCheck, WebhookEndpoint, create_app
from gateway.bootstrap import Container
from gateway.payments import port_factory
from gateway.settings import Settings
from gateway.vendor_mode import MODE_OF, vendor_env
from handlers.ports import TenantPorts
from handlers.webhooks import WebhookIngress
from outbox.pubsub_admin import PubSubUnavailableError, probe_pubsub

_APPLIED: Final = (
    "SELECT coalesce(array_agg(version), '{}') FROM payments_central.central_migrations"
)


def api_config(settings: Settings) -> ApiConfig:
    """The endpoint's limits from the settings."""
    return ApiConfig(
        max_body_bytes=settings.webhook_max_body_bytes,
        allowlists=dict(settings.webhook_allowlists),
        static_pause=settings.webhook_ingestion_paused,
    )


def readiness_checks(container: Container) -> dict[str, ReadinessCheck]:
    """Database reachable with central migrations current; Pub/Sub answering."""

    async def database() -> str | None:
        async with container.db.connection() as conn:
            applied = set(await conn.fetchval(_APPLIED))
        missing = [m.version for m in container.central_migrations if m.version not in applied]
        return f"central migrations not applied: {missing}" if missing else None

    async def pubsub() -> str | None:
        try:
            await probe_pubsub(container.settings.pubsub_project, seconds=2.0)
        except PubSubUnavailableError:
            return "Pub/Sub did not answer"
        return None

    return {"database": database, "pubsub": pubsub}


@asynccontextmanager
async def api_for(container: Container) -> AsyncIterator[tuple[Starlette, WebhookIngress]]:
    """The payment-api application (and its ingress), with its adapters closed on exit."""
    settings = container.settings
    factory, vendors = port_factory(container)
    env = vendor_env(MODE_OF[settings.environment])
    ports = TenantPorts(container.db, factory, env, container.clock)
    ingress = WebhookIngress(container.db, ports, container.clock, env)
    endpoint = WebhookEndpoint(ingress, api_config(settings), container.clock)
    try:
        yield create_app(endpoint, Probes(readiness_checks(container))), ingress
    finally:
        if vendors is not None:
            await vendors.aclose()
