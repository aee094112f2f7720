"""The transport contract, run against the in-memory broker."""

import pytest

from outbox.memory import InMemoryBroker
from tests.contracts.transport import TransportContract, TransportUnderTest


class TestInMemoryBroker(TransportContract):
    """The in-memory broker behaves as the transports do."""

    @pytest.fixture
    def transport(self) -> TransportUnderTest:
        """A broker with a dead-lettering subscription."""
        broker = InMemoryBroker()
        broker.declare("sub", "topic", dead_letter_topic="dead", max_delivery_attempts=5)
        broker.declare("dead-sub", "dead")
        return TransportUnderTest(broker, broker, "topic", "sub", "dead-sub", 5, "topic", "sub")
