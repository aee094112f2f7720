"""The transport contract: what the consumer and the relay rely on from Pub/Sub.

Subclasses provide a ``transport`` fixture; the suite runs against the in-memory broker
and against the Pub/Sub emulator.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from outbox.binding import WireMessage
from outbox.transport import Delivery, Outgoing, Publisher, Subscriber
from tests.integration.outbox_helpers import eventually


@dataclass
class TransportUnderTest:
    """A publisher and subscriber, a topic whose subscription dead-letters, and an ordered one.

    (The emulator cannot dead-letter from an ordered subscription, so the two are apart.)
    """

    publisher: Publisher
    subscriber: Subscriber
    topic: str
    subscription: str
    dead_letter_subscription: str
    max_delivery_attempts: int
    ordered_topic: str
    ordered_subscription: str


@dataclass
class Recorder:
    """Collects deliveries; nacks those whose data is in ``refuse``."""

    refuse: set[bytes] = field(default_factory=set)
    seen: list[tuple[bytes, dict[str, str], str, int]] = field(default_factory=list)

    async def handle(self, delivery: Delivery) -> None:
        """Record, then settle."""
        message = delivery.message
        self.seen.append(
            (
                message.data,
                dict(message.attributes),
                message.ordering_key,
                delivery.delivery_attempt,
            )
        )
        if message.data in self.refuse:
            delivery.nack()
        else:
            delivery.ack()

    def data(self) -> list[bytes]:
        """Data of every delivery, in arrival order."""
        return [d for d, _, _, _ in self.seen]


@asynccontextmanager
async def consuming(
    transport: TransportUnderTest, subscription: str, recorder: Recorder
) -> AsyncIterator[None]:
    """Run the subscriber in a task until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        transport.subscriber.run(subscription, recorder.handle, stop=stop, max_in_flight=50)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def message(data: bytes, key: str = "") -> WireMessage:
    """A message with an identifying attribute."""
    return WireMessage(data, {"ce-id": uuid.uuid4().hex, "x-test": "1"}, key)


class TransportContract:
    """Behaviour every transport must show."""

    async def test_published_messages_arrive_with_data_attributes_and_key(
        self, transport: TransportUnderTest
    ) -> None:
        """A published message is delivered with its data, attributes and ordering key."""
        recorder = Recorder()
        sent = message(b"hello", "pay_1")
        results = await transport.publisher.publish_batch([Outgoing(transport.topic, sent)])
        assert all(isinstance(r, str) for r in results)
        async with consuming(transport, transport.subscription, recorder):
            await eventually(lambda: recorder.data() == [b"hello"], within=30)
        _, attributes, key, attempt = recorder.seen[0]
        assert attributes["ce-id"] == sent.attributes["ce-id"]
        assert key == "pay_1"
        assert attempt >= 1

    async def test_a_nacked_message_comes_back(self, transport: TransportUnderTest) -> None:
        """Nack means redelivery, with the attempt count going up."""
        recorder = Recorder(refuse={b"again"})
        await transport.publisher.publish_batch([Outgoing(transport.topic, message(b"again"))])
        async with consuming(transport, transport.subscription, recorder):
            await eventually(lambda: len(recorder.seen) >= 2, within=60)
        attempts = [a for _, _, _, a in recorder.seen]
        assert attempts[1] > attempts[0]

    async def test_dead_lettering_after_max_attempts(self, transport: TransportUnderTest) -> None:
        """After the last allowed attempt the message moves to the dead-letter topic."""
        refusing = Recorder(refuse={b"poison"})
        dead = Recorder()
        await transport.publisher.publish_batch([Outgoing(transport.topic, message(b"poison"))])
        async with (
            consuming(transport, transport.subscription, refusing),
            consuming(transport, transport.dead_letter_subscription, dead),
        ):
            await eventually(lambda: dead.data() == [b"poison"], within=120)
        assert len(refusing.seen) == transport.max_delivery_attempts

    async def test_order_is_kept_per_ordering_key(self, transport: TransportUnderTest) -> None:
        """Messages published on one key arrive in publish order."""
        recorder = Recorder()
        batch = [
            Outgoing(transport.ordered_topic, message(str(i).encode(), "pay_ord"))
            for i in range(30)
        ]
        await transport.publisher.publish_batch(batch)
        async with consuming(transport, transport.ordered_subscription, recorder):
            await eventually(lambda: len(recorder.seen) >= 30, within=30)
        assert recorder.data() == [str(i).encode() for i in range(30)]

    async def test_stopping_drains_handlers_in_flight(self, transport: TransportUnderTest) -> None:
        """run() returns only after the handlers already started have settled."""
        started, finished = asyncio.Event(), asyncio.Event()
        release = asyncio.Event()

        async def slow(delivery: Delivery) -> None:
            started.set()
            await release.wait()
            delivery.ack()
            finished.set()

        await transport.publisher.publish_batch([Outgoing(transport.topic, message(b"slow"))])
        stop = asyncio.Event()
        task = asyncio.create_task(
            transport.subscriber.run(transport.subscription, slow, stop=stop, max_in_flight=5)
        )
        await asyncio.wait_for(started.wait(), 30)
        stop.set()
        await asyncio.sleep(0.1)
        assert not task.done()
        release.set()
        await asyncio.wait_for(task, 30)
        assert finished.is_set()
