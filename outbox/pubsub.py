"""Google Pub/Sub implementations of the transport ports (the emulator in dev and tests).

The client's streaming pull runs callbacks on its own threads; each callback hands the
message to the event loop with ``run_coroutine_threadsafe`` and returns, so flow control
counts messages until the coroutine settles them.
"""

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Sequence
from typing import Any, Final

import structlog
from google.api_core import exceptions as google_errors
from google.api_core.retry import Retry
from google.cloud import pubsub_v1  # type: ignore[attr-defined,unused-ignore]  # untyped package

from outbox.binding import WireMessage
from outbox.transport import Handler, Outgoing, PublishError

_log = structlog.get_logger(__name__)
PUBLISH_DEADLINE_SECONDS: Final = 5.0
PROBE_DEADLINE_SECONDS: Final = 2.0


class PubSubPublisher:
    """Publishes with ordering enabled and small, fast batches.

    The client retries an ordered publish for ever (it sets the retry deadline of
    messages with an ordering key to "infinity"), so during an outage its futures never
    fail. This adapter waits ``PUBLISH_DEADLINE_SECONDS`` per batch instead: unanswered
    messages count as failed (their outbox rows stay unsent) and the publisher turns
    *degraded*. While degraded it sends nothing until a cheap probe of the topic answers,
    so an outage does not pile up copies of the same rows in the client. The client still
    holds the unanswered messages and sends them, in key order, when Pub/Sub returns;
    the relay sends them once more, and consumers drop the duplicate by ``ce-id``.
    """

    def __init__(self, project: str, client: pubsub_v1.PublisherClient | None = None) -> None:
        """Publish to topics of ``project``."""
        self._project = project
        self._client = client or pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(
                max_messages=500, max_bytes=4 * 1024 * 1024, max_latency=0.002
            ),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        )
        self._retry = Retry(initial=0.1, maximum=2.0, timeout=PUBLISH_DEADLINE_SECONDS)
        self._probe_retry = Retry(initial=0.1, maximum=0.5, timeout=PROBE_DEADLINE_SECONDS)
        self.degraded = False

    def topic_path(self, topic: str) -> str:
        """The full resource name of ``topic``."""
        path: str = self._client.topic_path(self._project, topic)
        return path

    async def publish_batch(self, batch: Sequence[Outgoing]) -> list[str | PublishError]:
        """Hand every message to the client in order, then wait for them, at most 5 s."""
        if not batch:
            return []
        if self.degraded and not await self._reachable(batch[0].topic):
            return [PublishError("Pub/Sub unreachable; waiting for it to answer")] * len(batch)
        futures = [asyncio.wrap_future(self._submit(item)) for item in batch]
        _, pending = await asyncio.wait(futures, timeout=PUBLISH_DEADLINE_SECONDS)
        if pending:
            self.degraded = True
            _log.warning("pubsub_publish_unanswered", messages=len(pending))
        return [self._result(future) for future in futures]

    @staticmethod
    def _result(future: "asyncio.Future[Any]") -> str | PublishError:
        if not future.done():
            return PublishError(f"no answer within {PUBLISH_DEADLINE_SECONDS:g}s")
        error = future.exception()
        if error is None:
            return str(future.result())
        return PublishError(f"{type(error).__name__}: {error}"[:500])

    async def _reachable(self, topic: str) -> bool:
        """Whether Pub/Sub answers at all (a missing topic is an answer)."""
        try:
            await asyncio.to_thread(
                self._client.get_topic,
                topic=self.topic_path(topic),
                retry=self._probe_retry,
                timeout=PROBE_DEADLINE_SECONDS,
            )
        except google_errors.NotFound:
            pass
        except (google_errors.GoogleAPIError, OSError):
            return False
        if self.degraded:
            _log.info("pubsub_publish_recovered")
        self.degraded = False
        return True

    def _submit(self, item: Outgoing) -> "concurrent.futures.Future[Any]":
        try:
            future: concurrent.futures.Future[Any] = self._client.publish(
                self.topic_path(item.topic),
                item.message.data,
                ordering_key=item.message.ordering_key,
                retry=self._retry,
                timeout=PUBLISH_DEADLINE_SECONDS,
                **dict(item.message.attributes),
            )
        except (RuntimeError, ValueError) as exc:  # a paused ordering key, a bad message
            failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
            failed.set_exception(pubsub_v1.publisher.exceptions.PublishError(str(exc)))
            return failed
        return future

    def resume(self, topic: str, ordering_key: str) -> None:
        """Unpause ``ordering_key`` after a failed publish (a key not paused is left as it is)."""
        with contextlib.suppress(RuntimeError):  # raised for a key that is not paused
            self._client.resume_publish(self.topic_path(topic), ordering_key)

    def close(self) -> None:
        """Flush pending batches and stop the client's threads."""
        self._client.stop()


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
