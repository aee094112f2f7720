"""The Pub/Sub topology as data: one definition for dev, tests and production manifests.

``payments-admin-cli pubsub-bootstrap`` creates it on the emulator or a project;
``deploy/`` renders the same values for production. Tests derive isolated copies with
``Topology.with_prefix``.
"""

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Final

PAYMENT_COMMANDS: Final = "payment-commands"
PAYMENT_EVENTS: Final = "payment-events"
PAYMENT_COMMANDS_DEAD_LETTER: Final = "payment-commands-dead-letter"
WORKER_COMMANDS_SUBSCRIPTION: Final = "payment-worker-commands"
DEAD_LETTER_SUBSCRIPTION: Final = "payment-commands-dead-letter-ops"
EVENTS_TAIL_SUBSCRIPTION: Final = "payment-events-tail"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic and how long Pub/Sub keeps its messages."""

    name: str
    retention: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """A subscription with its delivery policy."""

    name: str
    topic: str
    ack_deadline_seconds: int = 60
    ordering: bool = False
    dead_letter_topic: str | None = None
    max_delivery_attempts: int = 5
    min_backoff_seconds: int = 10
    max_backoff_seconds: int = 600
    retention: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Topology:
    """Every topic and subscription the service owns."""

    topics: tuple[TopicSpec, ...]
    subscriptions: tuple[SubscriptionSpec, ...]
    prefix: str = ""

    def name(self, base: str) -> str:
        """The real name of topic or subscription ``base`` in this topology."""
        return self.prefix + base

    def with_prefix(self, prefix: str) -> "Topology":
        """The same topology with every name prefixed (tests isolate themselves this way)."""
        return Topology(
            topics=tuple(replace(t, name=prefix + t.name) for t in self.topics),
            subscriptions=tuple(
                replace(
                    s,
                    name=prefix + s.name,
                    topic=prefix + s.topic,
                    dead_letter_topic=None
                    if s.dead_letter_topic is None
                    else prefix + s.dead_letter_topic,
                )
                for s in self.subscriptions
            ),
            prefix=self.prefix + prefix,
        )

    def subscription(self, base: str) -> SubscriptionSpec:
        """The subscription named ``base`` (before prefixing)."""
        wanted = self.name(base)
        return next(s for s in self.subscriptions if s.name == wanted)


TOPOLOGY: Final = Topology(
    topics=(
        TopicSpec(PAYMENT_COMMANDS),
        TopicSpec(PAYMENT_EVENTS),
        TopicSpec(PAYMENT_COMMANDS_DEAD_LETTER, retention=timedelta(days=31)),
    ),
    subscriptions=(
        SubscriptionSpec(
            WORKER_COMMANDS_SUBSCRIPTION,
            PAYMENT_COMMANDS,
            ordering=True,
            dead_letter_topic=PAYMENT_COMMANDS_DEAD_LETTER,
        ),
        SubscriptionSpec(
            DEAD_LETTER_SUBSCRIPTION, PAYMENT_COMMANDS_DEAD_LETTER, retention=timedelta(days=7)
        ),
        SubscriptionSpec(EVENTS_TAIL_SUBSCRIPTION, PAYMENT_EVENTS, ordering=True),
    ),
)
"""Commands arrive on ``payment-commands`` (ordering key = payment id) and are pulled by
the workers; after 5 failed deliveries Pub/Sub moves a command to the dead-letter topic,
where the worker also puts poison messages itself. Events leave on ``payment-events``
with ordering key = payment id; ``payment-events-tail`` serves dev and operators."""
