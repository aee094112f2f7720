"""The Pub/Sub topology as Pub/Sub resources, and how existing ones differ from it.

Pure mapping: topology specs to ``Topic``/``Subscription`` messages, the comparison of an
existing subscription with its spec, and the report ``ensure_topology`` returns.
"""

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Final, Literal

from google.pubsub_v1.types import DeadLetterPolicy, RetryPolicy, Subscription, Topic

from schemas.topology import SubscriptionSpec, TopicSpec

IMMUTABLE_FIELDS: Final = frozenset({"topic", "enable_message_ordering"})
"""Subscription fields Pub/Sub cannot update: the subscription must be re-created."""


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


def span(value: timedelta) -> str:
    """A duration in the short form Pub/Sub logs use (``7d``, ``10m``, ``30s``)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def topic_resource(project: str, spec: TopicSpec) -> Topic:
    """The ``Topic`` message for ``spec``."""
    return Topic(
        name=f"projects/{project}/topics/{spec.name}",
        message_retention_duration=spec.retention,
    )


def subscription_resource(project: str, spec: SubscriptionSpec) -> Subscription:
    """The ``Subscription`` message for ``spec``: delivery, retry and dead-letter policy."""
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


def subscription_fields(sub: Subscription) -> dict[str, str]:
    """The compared fields, as text."""
    dead_letter, retry = sub.dead_letter_policy, sub.retry_policy
    return {
        "topic": sub.topic,
        "enable_message_ordering": str(sub.enable_message_ordering),
        "ack_deadline_seconds": str(sub.ack_deadline_seconds),
        "message_retention_duration": span(sub.message_retention_duration),
        "retry_policy": f"{span(retry.minimum_backoff)}..{span(retry.maximum_backoff)}",
        "dead_letter_policy": f"{dead_letter.dead_letter_topic} after"
        f" {dead_letter.max_delivery_attempts} attempts"
        if dead_letter.dead_letter_topic
        else "none",
    }


def drift_between(want: Subscription, have: Subscription) -> list[Drift]:
    """How an existing subscription differs from the one wanted, field by field."""
    expected, actual = subscription_fields(want), subscription_fields(have)
    return [
        Drift(field, value, actual[field], fixed=field not in IMMUTABLE_FIELDS)
        for field, value in expected.items()
        if actual[field] != value
    ]
