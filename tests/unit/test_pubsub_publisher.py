"""The Pub/Sub publisher's batching: request limits, order, and failure part-way."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions as google_errors

from outbox.binding import WireMessage
from outbox.pubsub import MAX_MESSAGES_PER_REQUEST, PubSubPublisher
from outbox.transport import Outgoing, PublishError


@dataclass
class _Response:
    message_ids: list[str]


@dataclass
class RecordingClient:
    """Answers Publish requests, failing the ones whose number is in ``fail``."""

    fail: set[int] = field(default_factory=set)
    requests: list[tuple[str, list[bytes]]] = field(default_factory=list)

    async def publish(self, *, topic: str, messages: Sequence[Any], **_: object) -> _Response:
        """Record the request; answer ids or raise."""
        self.requests.append((topic, [m.data for m in messages]))
        if len(self.requests) in self.fail:
            raise google_errors.ServiceUnavailable("down")  # type: ignore[no-untyped-call]  # untyped
        return _Response([f"{len(self.requests)}-{i}" for i in range(len(messages))])


def batch(count: int, topic: str = "t") -> list[Outgoing]:
    """``count`` small messages on ``topic``."""
    return [Outgoing(topic, WireMessage(str(i).encode(), {}, f"k{i % 7}")) for i in range(count)]


async def test_a_batch_goes_out_in_ordered_requests_of_at_most_1000() -> None:
    """2,500 messages become 3 requests, in order, each within the limit."""
    client = RecordingClient()
    results = await PubSubPublisher("p", client).publish_batch(batch(2500))  # type: ignore[arg-type]
    sizes = [len(data) for _, data in client.requests]
    assert sizes == [MAX_MESSAGES_PER_REQUEST, MAX_MESSAGES_PER_REQUEST, 500]
    assert [d for _, data in client.requests for d in data] == [
        str(i).encode() for i in range(2500)
    ]
    assert all(isinstance(r, str) for r in results)


async def test_a_failed_request_fails_every_later_message_of_its_topic() -> None:
    """When the second request fails, no later request for that topic is sent."""
    client = RecordingClient(fail={2})
    results = await PubSubPublisher("p", client).publish_batch(batch(2500))  # type: ignore[arg-type]
    assert len(client.requests) == 2
    assert all(isinstance(r, str) for r in results[:1000])
    assert all(isinstance(r, PublishError) for r in results[1000:])


async def test_topics_fail_independently() -> None:
    """A failure on one topic does not stop another topic's messages."""
    client = RecordingClient(fail={1})
    mixed = batch(3, "a") + batch(2, "b")
    results = await PubSubPublisher("p", client).publish_batch(mixed)  # type: ignore[arg-type]
    assert [isinstance(r, PublishError) for r in results] == [True, True, True, False, False]
    assert [topic for topic, _ in client.requests] == ["projects/p/topics/a", "projects/p/topics/b"]
