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
from outbox.leases import BucketLease
from outbox.transport import Outgoing, Publisher, PublishError
from schemas.topology import Topology

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

_log = structlog.get_logger(__name__)
_DATABASE_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
CHANNEL: Final = "payments_outbox"
_CLAIM: Final = """
SELECT outbox_id, topic, ordering_key, attributes, data
  FROM payments_central.outbox
 WHERE published_at IS NULL AND bucket = ANY($1::smallint[])
 ORDER BY outbox_id
 LIMIT $2
 FOR UPDATE SKIP LOCKED
"""
_MARK: Final = """
UPDATE payments_central.outbox SET published_at = clock_timestamp()
 WHERE outbox_id = ANY($1::bigint[])
"""
_OLDEST: Final = """
SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8
  FROM payments_central.outbox
 WHERE published_at IS NULL AND bucket = ANY($1::smallint[])
"""
_FAILED: Final = """
UPDATE payments_central.outbox
   SET publish_attempts = publish_attempts + 1, last_error = $2
 WHERE outbox_id = ANY($1::bigint[])
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
        """Claim, publish and mark one batch of this relay's buckets."""
        if self._lease is None or not self._lease.owned:
            return PassResult(0, 0)
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, sorted(self._lease.owned), self._config.batch_size)
            if not rows:
                return PassResult(0, 0)
            batch = [
                Outgoing(
                    self._topology.name(row["topic"]),
                    WireMessage(row["data"], _attributes(row["attributes"]), row["ordering_key"]),
                )
                for row in rows
            ]
            results = await self._publisher.publish_batch(batch)
            ok = [
                row["outbox_id"] for row, r in zip(rows, results, strict=True) if isinstance(r, str)
            ]
            await conn.execute(_MARK, ok)
            errors = [
                (row, r)
                for row, r in zip(rows, results, strict=True)
                if isinstance(r, PublishError)
            ]
            if errors:
                await self._record_failures(conn, errors)
        self._published.add(len(ok))
        if errors:
            self._failures.add(len(errors))
        return PassResult(len(rows), len(ok))

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

    async def oldest_unsent_age(self) -> timedelta | None:
        """Age of the oldest row not yet published (all buckets), or None if there is none."""
        async with self._pool.acquire() as conn:
            age: timedelta | None = await conn.fetchval(
                "SELECT clock_timestamp() - min(created_at) FROM payments_central.outbox"
                " WHERE published_at IS NULL"
            )
        return age

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
                with contextlib.suppress(*_DATABASE_ERRORS):
                    await lease_conn.remove_listener(CHANNEL, self._notified)
                    await lease.release()

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
