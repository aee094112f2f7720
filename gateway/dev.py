"""Dev mode: everything on embedded defaults, up until Ctrl-C."""

import asyncio
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr

from gateway.api import serving
from gateway.api_runtime import api_for
from gateway.bootstrap import Container, bootstrap
from gateway.demo import Demo, DemoOutput
from gateway.runtime import emulator_if_needed, stop_on_signals, worker_for
from gateway.sandboxes import DEMO_CREDENTIALS, Sandboxes, running_sandboxes
from gateway.settings import ProcessorBackend, Settings
from outbox.pubsub_admin import ensure_topology
from schemas.processors import Processor, VendorEnv
from schemas.topology import TOPOLOGY, Topology
from tenancy.central import migrate_central
from tenancy.errors import DuplicateAttachmentError, SecretNotFoundError
from tenancy.provisioning import ProvisionRequest, provision_tenant
from tenancy.secrets import SecretRef
from tenancy.vendors import AttachRequest, attach_vendor

DEMO_TENANT: Final = "tnt_demo"
_log = structlog.get_logger(__name__)


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for logs."""
    parts = urlsplit(dsn)
    if not parts.password:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


async def prepare(container: Container) -> None:
    """Apply central migrations and provision the demo tenant (both idempotent)."""
    applied = await migrate_central(container.db, container.central_migrations)
    report = await provision_tenant(
        container.db,
        container.tenant_migrations,
        ProvisionRequest(DEMO_TENANT, "saq_a", None),
        grant_to=container.settings.app_db_roles,
    )
    await _attach_demo_processors(container)
    _log.info(
        "dev_tenant_ready",
        tenant_id=report.tenant_id,
        created=report.created,
        schema_versions=list(report.applied_versions),
        central_migrations_applied=applied,
    )


DEMO_PRECEDENCE: Final = {Processor.STRIPE: 10, Processor.PAYPAL: 20, Processor.HESABPAY: 30}


async def _store(container: Container, ref: SecretRef, value: str) -> None:
    """Make ``value`` the latest version of ``ref`` (unchanged if it already is)."""
    try:
        current = await container.secrets.access(ref)
    except SecretNotFoundError:
        current = None
    if current is None or current.get_secret_value() != value:
        await container.secrets.add_version(ref, SecretStr(value))


def _demo_ref(processor: Processor, name: str) -> SecretRef:
    return SecretRef.parse(
        f"projects/payments-dev/secrets/{DEMO_TENANT}/{processor}/sandbox/{name}/versions/latest"
    )


async def _attach_demo_processors(container: Container) -> None:
    """Attach every processor to the demo tenant with the sandboxes' demo credentials."""
    for processor, precedence in DEMO_PRECEDENCE.items():
        demo = DEMO_CREDENTIALS[processor]
        key_ref = _demo_ref(processor, "api_key")
        await _store(container, key_ref, demo.api_key)
        hook_ref = None
        if demo.webhook_secret is not None:
            hook_ref = _demo_ref(processor, "webhook_secret")
            await _store(container, hook_ref, demo.webhook_secret)
        request = AttachRequest(
            DEMO_TENANT, processor, VendorEnv.SANDBOX, demo.account, key_ref, hook_ref, precedence
        )
        try:
            await attach_vendor(container.db, container.secrets, request, production=False)
        except DuplicateAttachmentError:
            continue  # attached by an earlier run


async def run_dev(settings: Settings, *, demo: bool = False) -> None:
    """Embedded Postgres, the emulator, the sandboxes, the demo tenant, API and worker."""
    stop = stop_on_signals()
    with emulator_if_needed() as emulator_host, running_sandboxes() as sandboxes:
        settings = settings.model_copy(
            update={
                "processor_backend": ProcessorBackend.VENDORS,
                "sandbox_urls": sandboxes.urls(),
            }
        )
        async with bootstrap(settings) as container:
            await prepare(container)
            topology = await ensure_topology(TOPOLOGY, project=settings.pubsub_project)
            _log.info(
                "dev_prepared",
                environment=settings.environment,
                database=redact_dsn(container.dsn),
                embedded_postgres=settings.database_url is None,
                pubsub_emulator=emulator_host,
                pubsub_project=settings.pubsub_project,
                topics_created=list(topology.created),
                sandboxes={str(p): url for p, url in sandboxes.urls().items()},
                secrets=settings.secret_backend,
                archive=settings.archive_backend,
            )
            await serve_dev_stack(container, sandboxes, TOPOLOGY, stop, demo=demo)
    _log.info("dev_stopped")


async def serve_dev_stack(  # noqa: PLR0913 (the stack's parts, then how to run it)
    container: Container,
    sandboxes: Sandboxes,
    topology: Topology,
    stop: asyncio.Event,
    *,
    demo: bool = False,
    stop_after_demo: bool = False,
    say: Callable[[str], None] = print,
) -> DemoOutput | None:
    """payment-api and payment-worker for the demo tenant until ``stop``; the demo, if asked.

    The sandboxes deliver their webhooks to this payment-api. A failed demo is logged;
    the stack keeps running (unless ``stop_after_demo``).
    """
    settings = container.settings
    async with (
        api_for(container) as (application, _),
        serving(application, settings.api_host, settings.api_port) as api_url,
        worker_for(container, settings, topology) as worker,
    ):
        sandboxes.deliver_to(api_url, DEMO_TENANT)
        _log.info(
            "dev_running",
            api=api_url,
            demo_tenant=DEMO_TENANT,
            webhooks=f"{api_url}/webhooks/{{processor}}/{DEMO_TENANT}",
            hint="Ctrl-C stops; payments-admin-cli list-tenants shows the registry",
        )
        played: list[DemoOutput] = []

        async def play() -> None:
            scene = Demo(
                container.db,
                DEMO_TENANT,
                worker.publisher,
                worker.subscriber,
                topology,
                sandboxes,
                say,
            )
            try:
                played.append(await scene.run(stop))
            except Exception as exc:  # noqa: BLE001 (the demo failing must not stop the stack)
                _log.error("demo_failed", error=f"{type(exc).__name__}: {exc}")
            finally:
                if stop_after_demo:
                    stop.set()

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(worker.run(stop))
            if demo:
                tasks.create_task(play())
    return played[0] if played else None
