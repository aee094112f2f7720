"""Google Pub/Sub implementations of the transport ports (the emulator in dev and tests).

The client's streaming pull runs callbacks on its own threads; each callback hands the
message to the event loop with ``run_coroutine_threadsafe`` and returns, so flow control
counts messages until the coroutine settles them.
"""

import asyncio
import concurrent.futures  # noqa: TC003 (used at run time by the subscriber)
from collections.abc import Sequence
from typing import Final

import structlog
from google.api_core import exceptions as google_errors
from google.api_core.retry import AsyncRetry, if_exception_type
from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]  # untyped package
from google.pubsub_v1 import PublisherAsyncClient, PubsubMessage

from outbox.binding import WireMessage
from outbox.transport import Handler, Outgoing, PublishError

_log = structlog.get_logger(__name__)
PUBLISH_DEADLINE_SECONDS: Final = 5.0
MAX_MESSAGES_PER_REQUEST: Final = 1000
MAX_REQUEST_BYTES: Final = 9 * 1024 * 1024
_TRANSIENT: Final = (
    google_errors.ServiceUnavailable,
    google_errors.DeadlineExceeded,
    google_errors.InternalServerError,
    google_errors.Aborted,
    google_errors.ResourceExhausted,
    google_errors.Unknown,
)


class PubSubPublisher:
    """Publishes whole batches in single Publish requests, keeping order per ordering key.

    The client library's batching keeps one batch per ordering key (one request per key)
    and retries ordered messages for ever. This adapter calls the Publish RPC itself:
    the messages of a batch go out grouped by topic, in publish order, in requests of up
    to 1,000 messages, one request after another. A request that fails (after bounded
    retries of transient errors) fails every later message of that topic in the batch,
    so no key can overtake its own unsent message; the relay sends them again.
    """

    def __init__(self, project: str, client: PublisherAsyncClient | None = None) -> None:
        """Publish to topics of ``project``; the gRPC client is made on first use."""
        self._project = project
        self._client = client
        self._retry = AsyncRetry(
            predicate=if_exception_type(*_TRANSIENT),
            initial=0.1,
            maximum=1.0,
            timeout=PUBLISH_DEADLINE_SECONDS,
        )

    def topic_path(self, topic: str) -> str:
        """The full resource name of ``topic``."""
        return f"projects/{self._project}/topics/{topic}"

    async def publish_batch(self, batch: Sequence[Outgoing]) -> list[str | PublishError]:
        """Publish every message; one result per message, in order."""
        results: list[str | PublishError | None] = [None] * len(batch)
        by_topic: dict[str, list[int]] = {}
        for index, item in enumerate(batch):
            by_topic.setdefault(item.topic, []).append(index)
        for topic, indexes in by_topic.items():
            for chunk in _chunks(indexes, batch):
                try:
                    ids = await self._publish(topic, [batch[i] for i in chunk])
                except (google_errors.GoogleAPIError, OSError) as exc:
                    error = PublishError(f"{type(exc).__name__}: {exc}"[:500])
                    for index in indexes:
                        if results[index] is None:
                            results[index] = error
                    _log.warning("pubsub_publish_failed", topic=topic, error=str(error))
                    break
                for index, message_id in zip(chunk, ids, strict=True):
                    results[index] = message_id
        return [r if r is not None else PublishError("not sent") for r in results]

    async def _publish(self, topic: str, items: list[Outgoing]) -> list[str]:
        if self._client is None:  # bound to the running loop, so made inside it
            self._client = PublisherAsyncClient()
        response = await self._client.publish(
            topic=self.topic_path(topic),
            messages=[
                PubsubMessage(
                    data=item.message.data,
                    attributes=dict(item.message.attributes),
                    ordering_key=item.message.ordering_key,
                )
                for item in items
            ],
            retry=self._retry,
            timeout=PUBLISH_DEADLINE_SECONDS,
        )
        return [str(message_id) for message_id in response.message_ids]

    def resume(self, topic: str, ordering_key: str) -> None:
        """Nothing to resume: a failed request pauses no key here."""

    async def aclose(self) -> None:
        """Close the gRPC channel, if one was opened."""
        if self._client is not None:
            await self._client.transport.close()  # type: ignore[no-untyped-call]  # untyped
            self._client = None


def _chunks(indexes: list[int], batch: Sequence[Outgoing]) -> list[list[int]]:
    """Split ``indexes`` into requests within Pub/Sub's message-count and size limits."""
    chunks: list[list[int]] = [[]]
    size = 0
    for index in indexes:
        message = batch[index].message
        weight = len(message.data) + sum(len(k) + len(v) for k, v in message.attributes.items())
        if chunks[-1] and (
            len(chunks[-1]) >= MAX_MESSAGES_PER_REQUEST or size + weight > MAX_REQUEST_BYTES
        ):
            chunks.append([])
            size = 0
        chunks[-1].append(index)
        size += weight
    return [c for c in chunks if c]


class SubscriberError(Exception):
    """The streaming pull ended on its own (subscription gone, permissions, outage)."""


class _GoogleDelivery:
    def __init__(self, message: pubsub_v1.subscriber.message.Message) -> None:
        self._message = message
        self._wire = WireMessage(
            bytes(message.data), dict(message.attributes), message.ordering_key or ""
        )

    @property
    def message(self) -> WireMessage:
        return self._wire

    @property
    def message_id(self) -> str:
        return str(self._message.message_id)

    @property
    def delivery_attempt(self) -> int:
        return int(self._message.delivery_attempt or 1)

    def ack(self) -> None:
        self._message.ack()

    def nack(self) -> None:
        self._message.nack()


class PubSubSubscriber:
    """Streaming pull bridged to asyncio."""

    def __init__(self, project: str, client: pubsub_v1.SubscriberClient | None = None) -> None:
        """Pull subscriptions of ``project``."""
        self._project = project
        self._client = client or pubsub_v1.SubscriberClient()

    async def run(
        self, subscription: str, handle: Handler, *, stop: asyncio.Event, max_in_flight: int
    ) -> None:
        """Deliver until ``stop``; then stop pulling and drain the handlers in flight."""
        loop = asyncio.get_running_loop()
        in_flight: set[concurrent.futures.Future[None]] = set()

        def callback(message: pubsub_v1.subscriber.message.Message) -> None:
            future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                handle(_GoogleDelivery(message)), loop
            )
            in_flight.add(future)
            future.add_done_callback(in_flight.discard)

        path = self._client.subscription_path(self._project, subscription)
        pull = self._client.subscribe(
            path,
            callback,
            flow_control=pubsub_v1.types.FlowControl(max_messages=max_in_flight),
            await_callbacks_on_shutdown=True,
        )
        _log.info("subscriber_started", subscription=subscription, max_in_flight=max_in_flight)
        stopped = asyncio.ensure_future(stop.wait())
        pulling = asyncio.wrap_future(pull)
        failure: BaseException | None = None
        try:
            done, _ = await asyncio.wait({stopped, pulling}, return_when=asyncio.FIRST_COMPLETED)
            if pulling in done and not pulling.cancelled():
                failure = pulling.exception()
        finally:
            stopped.cancel()
            pull.cancel()
            await asyncio.gather(pulling, return_exceptions=True)
            pending = [asyncio.wrap_future(f) for f in list(in_flight)]
            await asyncio.gather(*pending, return_exceptions=True)
            _log.info("subscriber_stopped", subscription=subscription, drained=len(pending))
        if failure is not None:
            raise SubscriberError(f"streaming pull on {subscription} failed") from failure

    def close(self) -> None:
        """Close the client's channel."""
        self._client.close()
