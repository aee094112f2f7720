"""Creates the Pub/Sub topology idempotently and reports how existing resources drifted.

Existing topics and subscriptions are compared with their specs; what Pub/Sub can change in
place (retention, ack deadline, retry and dead-letter policies) is updated, and what it
cannot (a subscription's topic or message ordering) is reported, for an operator to delete
and re-create. The synchronous clients run in worker threads. With ``PUBSUB_EMULATOR_HOST``
set the clients talk to the emulator, without credentials.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Final

import structlog
from google.api_core import exceptions as google_errors
from google.api_core.retry import Retry, if_exception_type
from google.auth import exceptions as auth_errors
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.types import (
    Subscription,
    Topic,
    UpdateSubscriptionRequest,
    UpdateTopicRequest,
)

from outbox.pubsub_specs import (
    Drift,
    Outcome,
    ResourceResult,
    TopologyReport,
    drift_between,
    span,
    subscription_resource,
    topic_resource,
)
from schemas.topology import SubscriptionSpec, TopicSpec, Topology

_log = structlog.get_logger(__name__)

_TRANSIENT: Final = (
    google_errors.ServiceUnavailable,
    google_errors.InternalServerError,
    google_errors.Aborted,
)
_UNREACHABLE: Final = (
    google_errors.ServiceUnavailable,
    google_errors.DeadlineExceeded,
    google_errors.RetryError,
)


class TopologyError(Exception):
    """Base of the errors raised while applying a topology."""


class PubSubUnavailableError(TopologyError):
    """Pub/Sub could not be reached, or refused the first request: nothing was changed."""


class TopologyApplyError(TopologyError):
    """A request failed part-way: resources before the named one may have been changed."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for Pub/Sub's first answer, and for each later request with retries."""

    probe_seconds: float = 10.0
    request_seconds: float = 30.0


DEFAULT_TIMEOUTS: Final = Timeouts()


@contextmanager
def _applying(kind: str, name: str) -> Iterator[None]:
    """Name the resource in any client error raised after the probe."""
    try:
        yield
    except google_errors.GoogleAPIError as exc:
        raise TopologyApplyError(f"{kind} {name}: {type(exc).__name__}: {exc}") from exc


def _retry(seconds: float) -> Retry:
    return Retry(
        predicate=if_exception_type(*_TRANSIENT), initial=0.2, maximum=2.0, timeout=seconds
    )


@dataclass(frozen=True, slots=True)
class _Clients:
    publisher: Any
    subscriber: Any
    timeouts: Timeouts

    async def call(self, method: Callable[..., Any], **kwargs: object) -> Any:  # noqa: ANN401 (the clients are untyped)
        seconds = self.timeouts.request_seconds
        return await asyncio.to_thread(method, **kwargs, retry=_retry(seconds), timeout=seconds)

    async def probe(self, project: str) -> None:
        """List one topic with a short deadline, so an unreachable Pub/Sub fails fast."""
        seconds = self.timeouts.probe_seconds

        def first_page() -> None:
            request = {"project": f"projects/{project}", "page_size": 1}
            pages = self.publisher.list_topics(
                request=request, retry=_retry(seconds), timeout=seconds
            )
            next(iter(pages), None)

        try:
            await asyncio.to_thread(first_page)
        except _UNREACHABLE as exc:
            raise PubSubUnavailableError(
                f"Pub/Sub did not answer within {seconds:g}s: {type(exc).__name__}: {exc}"
            ) from exc
        except (google_errors.GoogleAPIError, auth_errors.GoogleAuthError) as exc:
            raise PubSubUnavailableError(
                f"Pub/Sub refused project {project}: {type(exc).__name__}: {exc}"
            ) from exc

    async def delete(self, method: Callable[..., Any], **kwargs: str) -> None:
        with suppress(google_errors.NotFound):
            await self.call(method, **kwargs)
            _log.info("pubsub_resource_deleted", resource=next(iter(kwargs.values())))


@asynccontextmanager
async def _clients(
    publisher: Any,  # noqa: ANN401 (the clients are untyped)
    subscriber: Any,  # noqa: ANN401
    timeouts: Timeouts,
) -> AsyncIterator[_Clients]:
    """The given clients, or new ones that are closed on exit."""
    made: list[Any] = []
    try:
        if publisher is None:
            publisher = await asyncio.to_thread(PublisherClient)
            made.append(publisher.transport)
        if subscriber is None:
            subscriber = await asyncio.to_thread(SubscriberClient)
            made.append(subscriber)
        yield _Clients(publisher, subscriber, timeouts)
    except auth_errors.DefaultCredentialsError as exc:
        raise PubSubUnavailableError(
            "no Google credentials: set PUBSUB_EMULATOR_HOST to use the emulator, or"
            f" configure Application Default Credentials ({exc})"
        ) from exc
    finally:
        for closable in made:
            closable.close()


async def _ensure_topic(clients: _Clients, project: str, spec: TopicSpec) -> ResourceResult:
    want = topic_resource(project, spec)
    with _applying("topic", spec.name):
        try:
            await clients.call(clients.publisher.create_topic, request=want)
        except google_errors.AlreadyExists:
            have: Topic = await clients.call(clients.publisher.get_topic, topic=want.name)
        else:
            _log.info("pubsub_topic_created", topic=want.name)
            return ResourceResult("topic", spec.name, Outcome.CREATED)
        field = "message_retention_duration"
        expected = span(want.message_retention_duration)
        actual = span(have.message_retention_duration)
        if expected == actual:
            return ResourceResult("topic", spec.name, Outcome.PRESENT)
        request = UpdateTopicRequest(topic=want, update_mask={"paths": [field]})
        await clients.call(clients.publisher.update_topic, request=request)
    _log.warning("pubsub_drift_updated", resource=want.name, fields=[field])
    drift = Drift(field, expected, actual, fixed=True)
    return ResourceResult("topic", spec.name, Outcome.UPDATED, (drift,))


async def _ensure_subscription(
    clients: _Clients, project: str, spec: SubscriptionSpec
) -> ResourceResult:
    want = subscription_resource(project, spec)
    with _applying("subscription", spec.name):
        try:
            await clients.call(clients.subscriber.create_subscription, request=want)
        except google_errors.AlreadyExists:
            have: Subscription = await clients.call(
                clients.subscriber.get_subscription, subscription=want.name
            )
        else:
            _log.info("pubsub_subscription_created", subscription=want.name)
            return ResourceResult("subscription", spec.name, Outcome.CREATED)
        drift = drift_between(want, have)
        fixable = [d.field for d in drift if d.fixed]
        if fixable:
            request = UpdateSubscriptionRequest(subscription=want, update_mask={"paths": fixable})
            await clients.call(clients.subscriber.update_subscription, request=request)
            _log.warning("pubsub_drift_updated", resource=want.name, fields=fixable)
    for unfixed in (d for d in drift if not d.fixed):
        _log.error(
            "pubsub_drift_unresolved",
            resource=want.name,
            field=unfixed.field,
            expected=unfixed.expected,
            actual=unfixed.actual,
        )
    outcome = Outcome.UPDATED if fixable else Outcome.PRESENT
    return ResourceResult("subscription", spec.name, outcome, tuple(drift))


async def ensure_topology(
    topology: Topology,
    *,
    project: str,
    publisher: PublisherClient | None = None,
    subscriber: SubscriberClient | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> TopologyReport:
    """Create every topic, then every subscription, that is missing; align the others.

    Raises ``PubSubUnavailableError`` (nothing changed) when Pub/Sub does not answer its
    first request within ``timeouts.probe_seconds``, ``TopologyApplyError`` when a later
    request fails. Clients not passed in are made here and closed on return.
    """
    async with _clients(publisher, subscriber, timeouts) as clients:
        await clients.probe(project)
        topics = [await _ensure_topic(clients, project, t) for t in topology.topics]
        subs = [await _ensure_subscription(clients, project, s) for s in topology.subscriptions]
    return TopologyReport(project, (*topics, *subs))


async def delete_topology(
    topology: Topology,
    *,
    project: str,
    publisher: PublisherClient | None = None,
    subscriber: SubscriberClient | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> None:
    """Delete every subscription, then every topic, of ``topology``; missing ones are fine."""
    async with _clients(publisher, subscriber, timeouts) as clients:
        for sub in topology.subscriptions:
            path = f"projects/{project}/subscriptions/{sub.name}"
            await clients.delete(clients.subscriber.delete_subscription, subscription=path)
        for topic in topology.topics:
            path = f"projects/{project}/topics/{topic.name}"
            await clients.delete(clients.publisher.delete_topic, topic=path)


async def probe_pubsub(project: str, *, seconds: float = 2.0) -> None:
    """``PubSubUnavailableError`` unless Pub/Sub answers for ``project`` within ``seconds``."""
    timeouts = Timeouts(probe_seconds=seconds)
    async with _clients(None, None, timeouts) as clients:
        await clients.probe(project)
