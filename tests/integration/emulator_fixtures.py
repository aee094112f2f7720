"""Fixtures joining the emulator topology, the transport adapters and a fresh database."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from outbox.pubsub_admin import ensure_topology
from schemas.topology import WORKER_COMMANDS_SUBSCRIPTION, Topology
from tests.emulator import PROJECT, with_subscription


@pytest.fixture
def emulator_topology(
    unique_topology: Topology,
    pubsub_publisher: Any,  # noqa: ANN401 (untyped client)
    pubsub_subscriber: Any,  # noqa: ANN401 (untyped client)
) -> Topology:
    """The topology with the worker subscription unordered and without backoff, created.

    The emulator cannot dead-letter from ordered subscriptions (real Pub/Sub can), and
    its retry backoff would make five attempts take minutes.
    """
    topology = with_subscription(
        unique_topology,
        WORKER_COMMANDS_SUBSCRIPTION,
        ordering=False,
        min_backoff_seconds=0,
        max_backoff_seconds=0,
    )
    asyncio.run(
        ensure_topology(
            topology, project=PROJECT, publisher=pubsub_publisher, subscriber=pubsub_subscriber
        )
    )
    return topology


@pytest.fixture
async def pubsub_transport(
    pubsub_emulator_host: str,
) -> AsyncIterator[tuple[PubSubPublisher, PubSubSubscriber]]:
    """Our publisher and subscriber adapters on the emulator."""
    assert pubsub_emulator_host
    publisher, subscriber = PubSubPublisher(PROJECT), PubSubSubscriber(PROJECT)
    yield publisher, subscriber
    await publisher.aclose()
    subscriber.close()
