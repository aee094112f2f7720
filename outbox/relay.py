"""The outbox relay: publishes committed outbox rows, in order per ordering key.

A pass claims up to ``batch_size`` unsent rows of the relay's buckets with
``FOR UPDATE SKIP LOCKED`` (ordered by id), publishes them, and marks the published ones
in the same short transaction. Rows are found by ``published_at IS NULL``, never by a
"last id seen", so a row whose transaction commits late is not skipped. A failed publish
leaves the row (and later rows of its key) unsent for the next pass; a relay that dies
mid-batch rolls back and its rows are published again, with the same ``ce-id``.
Passes are woken by NOTIFY, with polling as a fallback.
"""

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import asyncpg
import structlog
from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeter, Observation

from outbox.binding import WireMessage
from outbox.leases import LOCK_NAMESPACE, BucketLease
from outbox.transport import Outgoing, Publisher, PublishError
from schemas.topology import Topology

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

_log = structlog.get_logger(__name__)
_DATABASE_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
CHANNEL: Final = "payments_outbox"
_HELD: Final = """
SELECT coalesce(array_agg(objid::int8::int4), '{}')
  FROM pg_locks
 WHERE locktype = 'advisory' AND classid = $1::int8::oid AND objsubid = 2
   AND pid = $2 AND granted
"""
_CLAIM_BUCKETS: Final = """
INSERT INTO payments_central.outbox_claims (bucket, relay_id, claimed_until)
SELECT b, $2, clock_timestamp() + $3::interval FROM unnest($1::smallint[]) AS b
ON CONFLICT (bucket) DO UPDATE
   SET relay_id = excluded.relay_id, claimed_until = excluded.claimed_until
 WHERE outbox_claims.relay_id = excluded.relay_id
    OR outbox_claims.claimed_until <= clock_timestamp()
RETURNING bucket
"""
_PENDING: Final = """
SELECT outbox_id, topic, ordering_key, attributes, data
  FROM payments_central.outbox
 WHERE published_at IS NULL AND bucket = ANY($1::smallint[])
 ORDER BY outbox_id
 LIMIT $2
"""
_MARK: Final = """
UPDATE payments_central.outbox SET published_at = clock_timestamp()
 WHERE outbox_id = ANY($1::bigint[]) AND published_at IS NULL
"""
_FAILED: Final = """
UPDATE payments_central.outbox
   SET publish_attempts = publish_attempts + 1, last_error = $2
 WHERE outbox_id = ANY($1::bigint[])
"""
_UNCLAIM: Final = """
DELETE FROM payments_central.outbox_claims WHERE relay_id = $1 AND bucket = ANY($2::smallint[])
"""
_RELEASE: Final = """
DELETE FROM payments_central.outbox_claims WHERE relay_id = $1
"""
_OLDEST: Final = """
SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8
  FROM payments_central.outbox
 WHERE published_at IS NULL AND bucket = ANY($1::smallint[])
"""


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Tuning of one relay."""

    batch_size: int = 500
    poll_interval: float = 1.0
    heartbeat_interval: float = 2.0
    max_backoff: float = 5.0
    retention: timedelta = timedelta(days=7)
    purge_interval: float = 600.0
    claim_ttl: timedelta = timedelta(seconds=60)
    """How long a claim holds its bucket if the relay dies before marking it."""


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass did."""

    claimed: int
    published: int

    @property
    def failed(self) -> int:
        """Rows claimed but not published."""
        return self.claimed - self.published


class OutboxRelay:
    """Drains the outbox into the publisher; run several replicas for throughput or HA."""

    def __init__(  # noqa: PLR0913 (the relay's ports, its tuning, and optional identity)
        self,
        pool: "asyncpg.Pool[asyncpg.Record]",
        publisher: Publisher,
        topology: Topology,
        config: RelayConfig = RelayConfig(),
        *,
        relay_id: str | None = None,
        meter: Meter | None = None,
    ) -> None:
        """Publish rows of ``pool``'s outbox to ``topology``'s topics."""
        self._pool = pool
        self._publisher = publisher
        self._topology = topology
        self._config = config
        self.relay_id = relay_id or f"relay-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._lease: BucketLease | None = None
        self._claimed: set[int] = set()
        self._claimed_for: frozenset[int] = frozenset()
        self._renew_at = 0.0
        self.oldest_unsent_seconds = 0.0
        meter = meter or NoOpMeter("payments.outbox")
        self._published = meter.create_counter(
            "payments.outbox.published", unit="{event}", description="Events published"
        )
        self._failures = meter.create_counter(
            "payments.outbox.publish_failures", unit="{event}", description="Failed publishes"
        )
        meter.create_observable_gauge(
            "payments.outbox.oldest_unsent_age",
            callbacks=[self._observe_age],
            unit="s",
            description="Age of the oldest unpublished row in this relay's buckets",
        )

    def _observe_age(self, _: CallbackOptions) -> list[Observation]:
        return [Observation(self.oldest_unsent_seconds, {"relay_id": self.relay_id})]

    async def measure_backlog(self) -> float:
        """Refresh and return the age in seconds of the oldest unsent row of owned buckets."""
        if self._lease is None or not self._lease.owned:
            self.oldest_unsent_seconds = 0.0
            return 0.0
        async with self._pool.acquire() as conn:
            age: float | None = await conn.fetchval(_OLDEST, sorted(self._lease.owned))
        self.oldest_unsent_seconds = age or 0.0
        return self.oldest_unsent_seconds

    @property
    def owned_buckets(self) -> frozenset[int]:
        """Buckets this relay currently publishes."""
        return frozenset(self._lease.owned) if self._lease else frozenset()

    async def publish_once(self) -> PassResult:
        """Claim this relay's buckets, publish their oldest unsent rows, mark what was sent."""
        rows = await self._claim()
        if not rows:
            return PassResult(0, 0)
        results = await self._publisher.publish_batch([self._outgoing(row) for row in rows])
        ok = [r["outbox_id"] for r, res in zip(rows, results, strict=True) if isinstance(res, str)]
        errors = [
            (r, res) for r, res in zip(rows, results, strict=True) if isinstance(res, PublishError)
        ]
        # A relay that dies before this point leaves its claims to expire; whatever it sent
        # is not marked and goes out again, with the same ce-id.
        async with self._pool.acquire() as conn:
            if errors:
                async with conn.transaction():
                    await conn.execute(_MARK, ok)
                    await self._record_failures(conn, errors)
            else:
                await conn.execute(_MARK, ok)  # one statement: its own transaction
        self._published.add(len(ok))
        if errors:
            self._failures.add(len(errors))
        return PassResult(len(rows), len(ok))

    async def _claim(self) -> list[asyncpg.Record]:
        """Up to a batch of unsent rows, in id order, of the buckets this relay has claimed.

        Claims are renewed at half their lifetime, and at once when the relay's buckets
        change: only buckets whose locks the lease connection provably holds (read from
        ``pg_locks``) and that no other relay holds a live claim on. Buckets given up are
        released. A relay whose lease died renews nothing, and its claims expire.
        """
        if self._lease is None or not self._lease.owned:
            return []
        loop = asyncio.get_running_loop()
        if loop.time() >= self._renew_at or self._claimed_for != self._lease.owned:
            await self._renew_claims(loop.time())
        if not self._claimed:
            return []
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(_PENDING, sorted(self._claimed), self._config.batch_size)
        return list(rows)

    async def _renew_claims(self, now: float) -> None:
        assert self._lease is not None  # noqa: S101 (checked by the caller)
        owned = frozenset(self._lease.owned)
        lease_pid = self._lease.conn.get_server_pid()
        async with self._pool.acquire() as conn, conn.transaction():
            held = set(await conn.fetchval(_HELD, LOCK_NAMESPACE, lease_pid))
            wanted = sorted(held & owned)
            released = sorted(self._claimed - set(wanted))
            if released:
                await conn.execute(_UNCLAIM, self.relay_id, released)
            rows = await conn.fetch(_CLAIM_BUCKETS, wanted, self.relay_id, self._config.claim_ttl)
        self._claimed = {r["bucket"] for r in rows}
        self._claimed_for = owned
        half_life = self._config.claim_ttl.total_seconds() / 2
        blocked = len(self._claimed) < len(wanted)
        self._renew_at = now + (self._config.heartbeat_interval if blocked else half_life)

    def _outgoing(self, row: asyncpg.Record) -> Outgoing:
        return Outgoing(
            self._topology.name(row["topic"]),
            WireMessage(row["data"], _attributes(row["attributes"]), row["ordering_key"]),
        )

    async def _record_failures(
        self,
        conn: "PoolConnectionProxy[asyncpg.Record]",
        errors: list[tuple[asyncpg.Record, PublishError]],
    ) -> None:
        await conn.execute(_FAILED, [row["outbox_id"] for row, _ in errors], str(errors[0][1]))
        for topic, key in {(self._topology.name(r["topic"]), r["ordering_key"]) for r, _ in errors}:
            if key:
                self._publisher.resume(topic, key)
        _log.warning("outbox_publish_failed", rows=len(errors), error=str(errors[0][1]))

    async def purge_published(self) -> int:
        """Delete rows published longer ago than the retention window."""
        async with self._pool.acquire() as conn:
            status: str = await conn.execute(
                "DELETE FROM payments_central.outbox"
                " WHERE published_at < clock_timestamp() - $1::interval",
                self._config.retention,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; the current pass always completes.

        If the lease connection breaks, the relay drops its buckets at once (their locks
        died with the connection), reconnects, and takes a share again.
        """
        _log.info("outbox_relay_started", relay_id=self.relay_id)
        while not stop.is_set():
            try:
                await self._run_with_lease(stop)
            except _DATABASE_ERRORS as exc:
                _log.warning("outbox_relay_lease_lost", error=f"{type(exc).__name__}: {exc}")
                await _wait(stop, self._config.max_backoff)
        _log.info("outbox_relay_stopped", relay_id=self.relay_id)

    async def _run_with_lease(self, stop: asyncio.Event) -> None:
        async with self._pool.acquire() as lease_conn:
            self._lease = BucketLease(
                lease_conn, self.relay_id, self._config.heartbeat_interval * 3
            )
            try:
                await lease_conn.add_listener(CHANNEL, self._notified)
                await self._loop(stop)
            finally:
                lease, self._lease = self._lease, None
                lease.owned.clear()
                self._claimed, self._claimed_for, self._renew_at = set(), frozenset(), 0.0
                with contextlib.suppress(*_DATABASE_ERRORS):
                    await lease_conn.remove_listener(CHANNEL, self._notified)
                    await lease.release()
                    await lease_conn.execute(_RELEASE, self.relay_id)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_beat = next_purge = loop.time()
        backoff = 0.0
        while not stop.is_set():
            if loop.time() >= next_beat and self._lease is not None:
                await self._lease.rebalance()
                await self.measure_backlog()
                next_beat = loop.time() + self._config.heartbeat_interval
            if loop.time() >= next_purge and 0 in self.owned_buckets:
                purged = await self.purge_published()
                next_purge = loop.time() + self._config.purge_interval
                if purged:
                    _log.info("outbox_purged", rows=purged)
            self._wake.clear()
            try:
                result = await self.publish_once()
            except _DATABASE_ERRORS as exc:
                _log.warning("outbox_relay_database_error", error=f"{type(exc).__name__}: {exc}")
                result = PassResult(1, 0)
            except Exception:  # noqa: BLE001 (a bad pass must not end the relay; claims expire)
                _log.exception("outbox_relay_pass_failed")
                result = PassResult(1, 0)
            if result.failed:
                backoff = min(max(backoff * 2, 0.1), self._config.max_backoff)
                await _wait(stop, backoff)
                continue
            backoff = 0.0
            if result.claimed >= self._config.batch_size:
                continue
            await _wait_either(stop, self._wake, self._config.poll_interval)


def _attributes(raw: object) -> dict[str, str]:
    decoded = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(decoded, dict):
        raise TypeError("outbox attributes must be a JSON object")
    return {str(k): str(v) for k, v in decoded.items()}


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wait_either(stop: asyncio.Event, wake: asyncio.Event, seconds: float) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
