"""Re-issuing published events (DEPLOYMENT_TOPOLOGY 8: "re-issued events on recovery").

Published rows stay in the outbox for the retention window (7 days). Replaying marks a
tenant's rows of a time range unsent again: the relays publish them once more, in order
per key, with their original ``ce-id`` so consumers can drop what they already have.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncpg

_REPLAY: Final = """
UPDATE payments_central.outbox
   SET published_at = NULL, replays = replays + 1
 WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND published_at IS NOT NULL
"""
_STATUS: Final = """
SELECT count(*) FILTER (WHERE published_at IS NULL) AS unsent,
       count(*) FILTER (WHERE published_at IS NOT NULL) AS kept,
       clock_timestamp() - min(created_at) FILTER (WHERE published_at IS NULL) AS oldest_unsent,
       min(created_at) AS oldest_row
  FROM payments_central.outbox
"""


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """How many rows were queued again, and how far back the outbox still reaches."""

    rows: int
    oldest_kept: datetime | None


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """The outbox at a glance."""

    unsent: int
    kept: int
    oldest_unsent_age: timedelta | None
    oldest_row: datetime | None


async def replay(
    pool: "asyncpg.Pool[asyncpg.Record]", tenant_id: str, since: datetime, until: datetime
) -> ReplayReport:
    """Queue ``tenant_id``'s events created in [since, until) for publishing again."""
    async with pool.acquire() as conn, conn.transaction():
        status: str = await conn.execute(_REPLAY, tenant_id, since, until)
        oldest: datetime | None = await conn.fetchval(
            "SELECT min(created_at) FROM payments_central.outbox WHERE tenant_id = $1", tenant_id
        )
    return ReplayReport(int(status.rsplit(" ", 1)[-1]), oldest)


async def outbox_status(pool: "asyncpg.Pool[asyncpg.Record]") -> OutboxStatus:
    """Counts and ages of the outbox."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_STATUS)
    assert row is not None  # noqa: S101 (an aggregate always returns one row)
    return OutboxStatus(row["unsent"], row["kept"], row["oldest_unsent"], row["oldest_row"])
