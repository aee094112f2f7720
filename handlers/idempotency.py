"""Command idempotency and message de-duplication, inside the tenant transaction.

Two layers, as the booking service expects:

* the same message delivered again (same ``ce-source`` and ``ce-id``) is a no-op, found by
  its row in ``processed_messages``;
* the same idempotency key sent again in a new message is answered by re-emitting the
  events the first command produced (new event ids, same data), with no vendor call; the
  same key with a different command is refused with ``idempotency_conflict``.

A key is recorded only when its command was accepted: a command refused as it stood
(``invalid_state``) may be sent again, with the same key, once the payment allows it.
"""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel

from handlers.saga_store import SaveContext, save_events
from schemas.catalog import model_for, type_of
from schemas.commands import Command
from tenancy.db import TenantTransaction

KEY_RETENTION: Final = timedelta(days=7)
"""How long an idempotency key is kept at the least (longer while its payment is open)."""
MESSAGE_RETENTION: Final = timedelta(days=7)
_REPLAY_NAMESPACE: Final = uuid.UUID("5b7d3c9e-2f4a-4e8b-9c1d-7a6e5f4b3c2d")

_MARK_PROCESSED: Final = """
INSERT INTO processed_messages (message_id, payment_id, processed_at) VALUES ($1, $2, $3)
ON CONFLICT (message_id) DO NOTHING
"""
_FIND_KEY: Final = """
SELECT payment_id, command_type, request_hash FROM idempotency_keys WHERE idempotency_key = $1
"""
_RECORD_KEY: Final = """
INSERT INTO idempotency_keys (idempotency_key, payment_id, command_type, request_hash,
                              message_id, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
_ANSWERS: Final = """
SELECT event_id, version, type, data FROM payment_events
 WHERE command_key = $1 AND payment_id = $2 AND replay_of IS NULL ORDER BY version, event_id
"""


def request_hash(command: BaseModel) -> str:
    """A stable digest of a command's content (its canonical JSON)."""
    return hashlib.sha256(command.model_dump_json().encode()).hexdigest()


async def first_delivery(
    tx: TenantTransaction, message_id: str, payment_id: str | None, now: datetime
) -> bool:
    """Record ``message_id`` as processed; False if it already was."""
    status = await tx.conn.execute(_MARK_PROCESSED, message_id, payment_id, now)
    return status == "INSERT 0 1"


@dataclass(frozen=True, slots=True)
class KeyUse:
    """What an idempotency key says about a command: new, a repeat, or a conflict."""

    seen: bool
    conflict: str | None = None


async def check_key(tx: TenantTransaction, key: str, payment_id: str, command: BaseModel) -> KeyUse:
    """Whether ``key`` was used before, and if so whether with this very command."""
    row = await tx.conn.fetchrow(_FIND_KEY, key)
    if row is None:
        return KeyUse(seen=False)
    if (row["payment_id"], row["command_type"], row["request_hash"]) != (
        payment_id,
        type_of(type(command)),
        request_hash(command),
    ):
        return KeyUse(
            seen=True,
            conflict="the idempotency key was already used with a different command"
            f" (payment {row['payment_id']}, {row['command_type'].rsplit('.', 2)[-2]})",
        )
    return KeyUse(seen=True)


async def record_key(
    tx: TenantTransaction, command: Command, message_id: str, now: datetime
) -> None:
    """Remember the command's idempotency key, with a digest of the command."""
    await tx.conn.execute(
        _RECORD_KEY,
        command.idempotency_key,
        command.payment_id,
        type_of(type(command)),
        request_hash(command),
        message_id,
        now,
        now + KEY_RETENTION,
    )


async def replay(
    tx: TenantTransaction, key: str, payment_id: str, message_id: str, context: SaveContext
) -> int:
    """Re-emit the events that answered ``key``; returns how many (0 if none yet)."""
    rows = await tx.conn.fetch(_ANSWERS, key, payment_id)
    events: list[tuple[BaseModel, str | None]] = []
    ids = []
    originals = []
    for row in rows:
        model = model_for(row["type"])
        if model is None:
            continue
        events.append((model.model_validate_json(row["data"]), key))
        ids.append(str(uuid.uuid5(_REPLAY_NAMESPACE, f"{message_id}:{row['event_id']}")))
        originals.append(row["event_id"])
    version = max((row["version"] for row in rows), default=0)
    await save_events(tx, payment_id, version, events, context, ids=ids, replay_of=originals)
    return len(events)
