"""The transport contract, run against the Pub/Sub emulator through our adapters."""

import pytest

from outbox.pubsub import PubSubPublisher, PubSubSubscriber
from schemas.topology import (
    DEAD_LETTER_SUBSCRIPTION,
    EVENTS_TAIL_SUBSCRIPTION,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    WORKER_COMMANDS_SUBSCRIPTION,
    Topology,
)
from tests.contracts.transport import TransportContract, TransportUnderTest

pytestmark = pytest.mark.integration


class TestPubSubTransport(TransportContract):
    """Our Pub/Sub adapters behave as the contract says, on the real emulator."""

    @pytest.fixture
    def transport(
        self,
        emulator_topology: Topology,
        pubsub_transport: tuple[PubSubPublisher, PubSubSubscriber],
    ) -> TransportUnderTest:
        """Adapters on a freshly created topology."""
        publisher, subscriber = pubsub_transport
        worker = emulator_topology.subscription(WORKER_COMMANDS_SUBSCRIPTION)
        return TransportUnderTest(
            publisher,
            subscriber,
            topic=emulator_topology.name(PAYMENT_COMMANDS),
            subscription=worker.name,
            dead_letter_subscription=emulator_topology.name(DEAD_LETTER_SUBSCRIPTION),
            max_delivery_attempts=worker.max_delivery_attempts,
            ordered_topic=emulator_topology.name(PAYMENT_EVENTS),
            ordered_subscription=emulator_topology.name(EVENTS_TAIL_SUBSCRIPTION),
        )
