"""An in-memory broker with the transport ports' behaviour, for fast tests.

Topics fan out to subscriptions; a nacked delivery comes back with its attempt count
raised, and after ``max_delivery_attempts`` it moves to the subscription's dead-letter
topic, as Pub/Sub does.
"""

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from outbox.binding import WireMessage
from outbox.transport import Handler, Outgoing, PublishError


@dataclass
class _Subscription:
    topic: str
    dead_letter_topic: str | None
    max_delivery_attempts: int
    queue: asyncio.Queue[tuple[str, WireMessage, int]] = field(default_factory=asyncio.Queue)


@dataclass
class _MemoryDelivery:
    broker: "InMemoryBroker"
    subscription: str
    message: WireMessage
    message_id: str
    delivery_attempt: int
    settled: bool = False

    def ack(self) -> None:
        self._settle()

    def nack(self) -> None:
        self._settle()
        self.broker.redeliver(self)

    def _settle(self) -> None:
        if self.settled:
            raise RuntimeError("delivery settled twice")
        self.settled = True


class InMemoryBroker:
    """Implements ``Publisher`` and ``Subscriber`` in one process."""

    def __init__(self) -> None:
        """An empty broker; declare subscriptions before publishing."""
        self._subscriptions: dict[str, _Subscription] = {}
        self._by_topic: dict[str, list[str]] = defaultdict(list)
        self._ids = itertools.count(1)
        self.published: list[Outgoing] = []
        self.fail_topics: set[str] = set()
        self.redelivered = 0

    def declare(
        self,
        subscription: str,
        topic: str,
        *,
        dead_letter_topic: str | None = None,
        max_delivery_attempts: int = 5,
    ) -> None:
        """Create a subscription on ``topic``."""
        self._subscriptions[subscription] = _Subscription(
            topic, dead_letter_topic, max_delivery_attempts
        )
        self._by_topic[topic].append(subscription)

    async def publish_batch(self, batch: Sequence[Outgoing]) -> list[str | PublishError]:
        """Deliver each message to every subscription of its topic, in order."""
        results: list[str | PublishError] = []
        for item in batch:
            if item.topic in self.fail_topics:
                results.append(PublishError(f"topic {item.topic} is failing"))
                continue
            message_id = str(next(self._ids))
            self.published.append(item)
            for name in self._by_topic[item.topic]:
                self._subscriptions[name].queue.put_nowait((message_id, item.message, 1))
            results.append(message_id)
        return results

    def resume(self, topic: str, ordering_key: str) -> None:
        """Nothing to resume: in-memory publishes never pause a key."""

    def redeliver(self, delivery: _MemoryDelivery) -> None:
        """Queue a nacked delivery again, or dead-letter it after the last attempt."""
        self.redelivered += 1
        sub = self._subscriptions[delivery.subscription]
        if delivery.delivery_attempt >= sub.max_delivery_attempts and sub.dead_letter_topic:
            for name in self._by_topic[sub.dead_letter_topic]:
                self._subscriptions[name].queue.put_nowait(
                    (delivery.message_id, delivery.message, 1)
                )
            return
        sub.queue.put_nowait((delivery.message_id, delivery.message, delivery.delivery_attempt + 1))

    def pending(self, subscription: str) -> int:
        """Messages waiting on ``subscription``."""
        return self._subscriptions[subscription].queue.qsize()

    async def run(
        self, subscription: str, handle: Handler, *, stop: asyncio.Event, max_in_flight: int
    ) -> None:
        """Deliver until ``stop``, at most ``max_in_flight`` at once; then drain."""
        sub = self._subscriptions[subscription]
        limit = asyncio.Semaphore(max_in_flight)
        tasks: set[asyncio.Task[None]] = set()

        async def deliver(message_id: str, message: WireMessage, attempt: int) -> None:
            try:
                await handle(_MemoryDelivery(self, subscription, message, message_id, attempt))
            finally:
                limit.release()

        while not stop.is_set():
            getter = asyncio.ensure_future(sub.queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:
                getter.cancel()
                break
            await limit.acquire()
            task = asyncio.create_task(deliver(*getter.result()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks, return_exceptions=True)
