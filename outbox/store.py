"""Writing outbox rows inside the transaction that changes the state they announce.

``append`` runs on the caller's connection, inside the caller's (tenant) transaction; the
rows become visible to the relay only when that transaction commits. A row's ``event_id``
is the CloudEvent id: re-appending the same event is a no-op, and every re-publish of the
row carries the same ``ce-id``.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from outbox.binding import encode, to_cloudevent
from schemas.envelope import Envelope

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

_INSERT: Final = """
INSERT INTO payments_central.outbox (event_id, tenant_id, topic, ordering_key, attributes, data)
VALUES ($1, $2, $3, $4, $5::jsonb, $6)
ON CONFLICT (event_id) DO NOTHING
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
        wire = encode(to_cloudevent(event.envelope, event.data), event.ordering_key)
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
