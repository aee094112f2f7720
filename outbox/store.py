"""Writing outbox rows inside the transaction that changes the state they announce.

``append`` runs on the caller's connection, inside the caller's (tenant) transaction; the
rows become visible to the relay only when that transaction commits. Events inherit the
``traceparent`` of the span they are written in. A row's ``event_id`` is the CloudEvent
id: re-appending the same event is a no-op, and every re-publish of the row carries the
same ``ce-id``.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from outbox.binding import encode, to_cloudevent
from schemas.envelope import Envelope

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

_PROPAGATOR: Final = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, if one is being recorded."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


_INSERT: Final = """
INSERT INTO payments_central.outbox (event_id, tenant_id, topic, ordering_key, attributes, data)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (tenant_id, event_id) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event to publish on ``topic`` (a topology base name), keyed for ordering."""

    envelope: Envelope
    data: bytes
    topic: str
    ordering_key: str = ""


async def append(
    conn: "PoolConnectionProxy[asyncpg.Record]", events: Sequence[OutgoingEvent]
) -> None:
    """Insert ``events`` as outbox rows in the connection's current transaction."""
    rows = []
    for event in events:
        envelope = event.envelope
        if envelope.traceparent is None:
            envelope = replace(envelope, traceparent=current_traceparent())
        wire = encode(to_cloudevent(envelope, event.data), event.ordering_key)
        rows.append(
            (
                event.envelope.id,
                event.envelope.tenant_id,
                event.topic,
                event.ordering_key,
                json.dumps(dict(wire.attributes)),
                wire.data,
            )
        )
    if rows:
        await conn.executemany(_INSERT, rows)
