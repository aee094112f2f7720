"""Which relay publishes which bucket of the outbox.

Rows are spread over 64 buckets by a hash of their ordering key. Each bucket is owned by
at most one relay at a time (a session advisory lock on the relay's lease connection), so
rows of one key are published by one relay, in order. Relays heartbeat into
``outbox_relays`` and each keeps about ``64 / live relays`` buckets: a new replica
picks up the buckets others let go of; a dead one's locks vanish with its connection.
"""

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

BUCKETS: Final = 64
LOCK_NAMESPACE: Final = 0x6F62  # advisory-lock class id of outbox buckets
_log = structlog.get_logger(__name__)


@dataclass(slots=True)
class BucketLease:
    """The buckets one relay owns, held on one dedicated connection."""

    conn: "PoolConnectionProxy[asyncpg.Record]"
    relay_id: str
    live_after_seconds: float
    owned: set[int] = field(default_factory=set)

    async def rebalance(self) -> None:
        """Heartbeat, then take or release buckets towards a fair share."""
        live: int = await self.conn.fetchval(
            "WITH beat AS ("
            " INSERT INTO payments_central.outbox_relays (relay_id, heartbeat_at)"
            " VALUES ($1, clock_timestamp())"
            " ON CONFLICT (relay_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at)"
            " SELECT count(*) + 1 FROM payments_central.outbox_relays"
            " WHERE relay_id <> $1"
            " AND heartbeat_at > clock_timestamp() - make_interval(secs => $2)",
            self.relay_id,
            self.live_after_seconds,
        )
        share = math.ceil(BUCKETS / max(live, 1))
        before = set(self.owned)
        for bucket in sorted(self.owned, reverse=True)[: max(len(self.owned) - share, 0)]:
            await self.conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_NAMESPACE, bucket)
            self.owned.discard(bucket)
        for bucket in range(BUCKETS):
            if len(self.owned) >= share:
                break
            if bucket not in self.owned and await self.conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", LOCK_NAMESPACE, bucket
            ):
                self.owned.add(bucket)
        if self.owned != before:
            _log.info(
                "outbox_buckets_rebalanced",
                relay_id=self.relay_id,
                live_relays=live,
                owned=len(self.owned),
            )

    async def release(self) -> None:
        """Let go of every bucket and remove the heartbeat."""
        await self.conn.execute("SELECT pg_advisory_unlock_all()")
        await self.conn.execute(
            "DELETE FROM payments_central.outbox_relays WHERE relay_id = $1", self.relay_id
        )
        self.owned.clear()
