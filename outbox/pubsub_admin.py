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
from datetime import timedelta
from enum import StrEnum
from typing import Any, Final, Literal

import structlog
from google.api_core import exceptions as google_errors
from google.api_core.retry import Retry, if_exception_type
from google.auth import exceptions as auth_errors
from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
from google.pubsub_v1.types import (
    DeadLetterPolicy,
    RetryPolicy,
    Subscription,
    Topic,
    UpdateSubscriptionRequest,
    UpdateTopicRequest,
)

from schemas.topology import SubscriptionSpec, TopicSpec, Topology

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
_IMMUTABLE: Final = frozenset({"topic", "enable_message_ordering"})
"""Subscription fields Pub/Sub cannot update: the subscription must be re-created."""
_log = structlog.get_logger(__name__)


class TopologyError(Exception):
    """Base of the errors raised while applying a topology."""


class PubSubUnavailableError(TopologyError):
    """Pub/Sub could not be reached, or refused the first request: nothing was changed."""


class TopologyApplyError(TopologyError):
    """A request failed part-way: resources before the named one may have been changed."""


class Outcome(StrEnum):
    """What ``ensure_topology`` did to one resource."""

    CREATED = "created"
    PRESENT = "present"
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class Drift:
    """One field of an existing resource that differs from its spec."""

    field: str
    expected: str
    actual: str
    fixed: bool
    """Whether it was updated in place; if not, the resource must be deleted and re-created."""


@dataclass(frozen=True, slots=True)
class ResourceResult:
    """One topic or subscription and what happened to it."""

    kind: Literal["topic", "subscription"]
    name: str
    outcome: Outcome
    drift: tuple[Drift, ...] = ()


@dataclass(frozen=True, slots=True)
class TopologyReport:
    """Every resource of the topology, in creation order."""

    project: str
    resources: tuple[ResourceResult, ...]

    def names(self, outcome: Outcome) -> tuple[str, ...]:
        """Names of the resources with ``outcome``."""
        return tuple(r.name for r in self.resources if r.outcome is outcome)

    @property
    def created(self) -> tuple[str, ...]:
        """Resources that did not exist."""
        return self.names(Outcome.CREATED)

    @property
    def present(self) -> tuple[str, ...]:
        """Resources that existed and were left unchanged."""
        return self.names(Outcome.PRESENT)

    @property
    def updated(self) -> tuple[str, ...]:
        """Resources that existed and had drifted fields updated."""
        return self.names(Outcome.UPDATED)

    @property
    def unresolved(self) -> tuple[tuple[str, Drift], ...]:
        """(resource, drift) pairs Pub/Sub cannot change in place."""
        return tuple((r.name, d) for r in self.resources for d in r.drift if not d.fixed)


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


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _topic(project: str, spec: TopicSpec) -> Topic:
    return Topic(
        name=f"projects/{project}/topics/{spec.name}",
        message_retention_duration=spec.retention,
    )


def _subscription(project: str, spec: SubscriptionSpec) -> Subscription:
    dead_letter = None
    if spec.dead_letter_topic is not None:
        dead_letter = DeadLetterPolicy(
            dead_letter_topic=f"projects/{project}/topics/{spec.dead_letter_topic}",
            max_delivery_attempts=spec.max_delivery_attempts,
        )
    return Subscription(
        name=f"projects/{project}/subscriptions/{spec.name}",
        topic=f"projects/{project}/topics/{spec.topic}",
        ack_deadline_seconds=spec.ack_deadline_seconds,
        enable_message_ordering=spec.ordering,
        dead_letter_policy=dead_letter,
        retry_policy=RetryPolicy(
            minimum_backoff=timedelta(seconds=spec.min_backoff_seconds),
            maximum_backoff=timedelta(seconds=spec.max_backoff_seconds),
        ),
        message_retention_duration=spec.retention,
    )


def _subscription_fields(sub: Subscription) -> dict[str, str]:
    """The compared fields, as text."""
    dead_letter, retry = sub.dead_letter_policy, sub.retry_policy
    return {
        "topic": sub.topic,
        "enable_message_ordering": str(sub.enable_message_ordering),
        "ack_deadline_seconds": str(sub.ack_deadline_seconds),
        "message_retention_duration": _span(sub.message_retention_duration),
        "retry_policy": f"{_span(retry.minimum_backoff)}..{_span(retry.maximum_backoff)}",
        "dead_letter_policy": f"{dead_letter.dead_letter_topic} after"
        f" {dead_letter.max_delivery_attempts} attempts"
        if dead_letter.dead_letter_topic
        else "none",
    }


def _drift(want: Subscription, have: Subscription) -> list[Drift]:
    expected, actual = _subscription_fields(want), _subscription_fields(have)
    return [
        Drift(field, value, actual[field], fixed=field not in _IMMUTABLE)
        for field, value in expected.items()
        if actual[field] != value
    ]


async def _ensure_topic(clients: _Clients, project: str, spec: TopicSpec) -> ResourceResult:
    want = _topic(project, spec)
    with _applying("topic", spec.name):
        try:
            await clients.call(clients.publisher.create_topic, request=want)
        except google_errors.AlreadyExists:
            have: Topic = await clients.call(clients.publisher.get_topic, topic=want.name)
        else:
            _log.info("pubsub_topic_created", topic=want.name)
            return ResourceResult("topic", spec.name, Outcome.CREATED)
        field = "message_retention_duration"
        expected = _span(want.message_retention_duration)
        actual = _span(have.message_retention_duration)
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
    want = _subscription(project, spec)
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
        drift = _drift(want, have)
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
