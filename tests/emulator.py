"""Helpers for tests on the Pub/Sub emulator: paths, topology variants, synchronous pulls."""

import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final, TypeVar

from google.pubsub_v1.types import ReceivedMessage

from schemas.topology import Topology

PROJECT: Final = "payments-test"
"""The project every Pub/Sub test uses; the emulator accepts any project id."""
POLL_INTERVAL_S: Final = 0.1
T = TypeVar("T")


def topic_path(name: str, project: str = PROJECT) -> str:
    """The full resource name of topic ``name``."""
    return f"projects/{project}/topics/{name}"


def subscription_path(name: str, project: str = PROJECT) -> str:
    """The full resource name of subscription ``name``."""
    return f"projects/{project}/subscriptions/{name}"


def with_subscription(topology: Topology, base: str, **changes: Any) -> Topology:  # noqa: ANN401 (field values of any type)
    """``topology`` with the subscription named ``base`` (before prefixing) changed."""
    target = topology.subscription(base)
    return replace(
        topology,
        subscriptions=tuple(
            replace(s, **changes) if s is target else s for s in topology.subscriptions
        ),
    )


def pull_now(subscriber: Any, subscription: str) -> list[ReceivedMessage]:  # noqa: ANN401 (untyped client)
    """The messages deliverable right now (no server-side wait), without client retries.

    ``return_immediately`` is deprecated for production pull loops, but it keeps the test
    in control of waiting: a long poll cut by the client deadline would leave the emulator
    answering a cancelled call.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The return_immediately flag", DeprecationWarning)
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 10, "return_immediately": True},
            retry=None,
            timeout=10,
        )
    return list(response.received_messages)


def nack(subscriber: Any, subscription: str, messages: list[ReceivedMessage]) -> None:  # noqa: ANN401 (untyped client)
    """Hand ``messages`` back for redelivery at once (ack deadline 0)."""
    if messages:
        subscriber.modify_ack_deadline(
            request={
                "subscription": subscription,
                "ack_ids": [m.ack_id for m in messages],
                "ack_deadline_seconds": 0,
            }
        )


def ack(subscriber: Any, subscription: str, messages: list[ReceivedMessage]) -> None:  # noqa: ANN401 (untyped client)
    """Acknowledge ``messages``."""
    if messages:
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [m.ack_id for m in messages]}
        )


def poll(check: Callable[[], T | None], *, within: float, what: str) -> T:
    """Call ``check`` until it returns something other than None, or fail after ``within`` s."""
    deadline = time.monotonic() + within
    while (result := check()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        time.sleep(POLL_INTERVAL_S)
    return result


def nack_until_dead_lettered(
    subscriber: Any,  # noqa: ANN401 (untyped client)
    source: str,
    dead_letter: str,
    *,
    within: float,
) -> tuple[list[int], list[ReceivedMessage]]:
    """Nack everything ``source`` delivers until ``dead_letter`` receives something.

    Returns the delivery attempts seen on ``source`` and the dead-lettered messages (acked).
    """
    attempts: list[int] = []

    def step() -> list[ReceivedMessage] | None:
        delivered = pull_now(subscriber, source)
        attempts.extend(m.delivery_attempt for m in delivered)
        nack(subscriber, source, delivered)
        arrived = pull_now(subscriber, dead_letter)
        ack(subscriber, dead_letter, arrived)
        return arrived or None

    try:
        arrived = poll(step, within=within, what="dead-lettering")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; delivery attempts seen: {attempts}") from exc
    return attempts, arrived
