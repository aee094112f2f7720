"""Builds and runs the service's processes from settings."""

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import structlog
from opentelemetry.metrics import get_meter

from gateway.bootstrap import Container
from gateway.payments import payment_router, services_for
from gateway.pubsub_emulator import PubSubEmulator
from gateway.settings import Settings
from gateway.worker import Worker
from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.relay import RelayConfig
from schemas.topology import TOPOLOGY, Topology

_log = structlog.get_logger(__name__)
EMULATOR_ENV = "PUBSUB_EMULATOR_HOST"


@asynccontextmanager
async def worker_for(
    container: Container, settings: Settings, topology: Topology = TOPOLOGY
) -> AsyncIterator[Worker]:
    """A worker on real Pub/Sub (or the emulator), closed on exit."""
    publisher = PubSubPublisher(settings.pubsub_project)
    subscriber = PubSubSubscriber(settings.pubsub_project)
    services = services_for(container, meter=get_meter("payments.processors"))
    try:
        yield Worker(
            db=container.db,
            publisher=publisher,
            subscriber=subscriber,
            topology=topology,
            router=payment_router(services),
            clock=container.clock,
            relay_config=RelayConfig(),
            max_in_flight=settings.worker_max_in_flight,
            meter=get_meter("payments.worker"),
            timers=services.timers,
            inbox=services.inbox,
        )
    finally:
        await services.aclose()
        await publisher.aclose()
        subscriber.close()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextmanager
def emulator_if_needed() -> Iterator[str]:
    """``PUBSUB_EMULATOR_HOST`` if set, else a Pub/Sub emulator of our own for the block."""
    configured = os.environ.get(EMULATOR_ENV)
    if configured:
        yield configured
        return
    with PubSubEmulator() as emulator:
        os.environ[EMULATOR_ENV] = emulator.host
        _log.info("pubsub_emulator_started", host=emulator.host, pid=emulator.pid)
        try:
            yield emulator.host
        finally:
            os.environ.pop(EMULATOR_ENV, None)
