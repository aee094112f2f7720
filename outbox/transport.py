"""Transport ports: publishing and pulling Pub/Sub messages, real or in memory.

Settlement is explicit: a handler acks (done, or dead-lettered by us) or nacks (try
again later; the subscription's retry and dead-letter policies apply).
"""

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from outbox.binding import WireMessage


class PublishError(Exception):
    """A message could not be published; it may be retried with the same content."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for a topic (the full topic name, prefix included)."""

    topic: str
    message: WireMessage


class Publisher(Protocol):
    """Publishes in call order per ordering key."""

    async def publish_batch(self, batch: Sequence[Outgoing]) -> list[str | PublishError]:
        """Publish every message, keeping call order per key; one result per message.

        A result is the server's message id, or the error for that message. After a
        failure on an ordering key, later messages on that key fail too, until ``resume``.
        """
        ...

    def resume(self, topic: str, ordering_key: str) -> None:
        """Accept messages on ``ordering_key`` again after a failure."""
        ...


class Delivery(Protocol):
    """One delivery of a message; settle it exactly once."""

    @property
    def message(self) -> WireMessage:
        """The message delivered."""
        ...

    @property
    def message_id(self) -> str:
        """The transport's id of the message (not the CloudEvent id)."""
        ...

    @property
    def delivery_attempt(self) -> int:
        """1 on first delivery; counts redeliveries when the subscription tracks them."""
        ...

    def ack(self) -> None:
        """Done with the message: never deliver it again."""
        ...

    def nack(self) -> None:
        """Not done: deliver it again later."""
        ...


Handler = Callable[[Delivery], Coroutine[Any, Any, None]]


class Subscriber(Protocol):
    """Pulls a subscription and hands each delivery to a coroutine."""

    async def run(
        self, subscription: str, handle: Handler, *, stop: asyncio.Event, max_in_flight: int
    ) -> None:
        """Deliver until ``stop`` is set, then wait for in-flight handlers to finish."""
        ...
