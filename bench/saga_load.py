"""Load for bench.sagas: publishing commands, tracking answers, timing stages, sampling."""

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench.saga_common import (
    AUTHORIZE,
    AUTHORIZED,
    BOOKING,
    MAX_REJECTIONS_KEPT,
    PUBLISH_BATCH,
    PUBLISH_CHUNK,
    REJECTED,
    TICK,
    WAIT_SAMPLE_SECONDS,
    percentile,
)
from outbox.binding import encode, to_cloudevent
from outbox.pubsub import PubSubPublisher
from outbox.transport import Delivery, Outgoing, PublishError
from schemas.commands import AuthorizePayment
from schemas.envelope import TYPE_PREFIX, Envelope
from tenancy.db import Database
from tenancy.registry import get_tenant


@dataclass(slots=True)
class Tracker:
    """Publish times of commands and receipt times of their answers (wall clock, seconds)."""

    sent: dict[str, float] = field(default_factory=dict)
    received: dict[str, float] = field(default_factory=dict)
    other: Counter[str] = field(default_factory=Counter)
    rejections: list[dict[str, object]] = field(default_factory=list)
    answered: int = 0
    """How many ids have been received so far, of every phase."""

    async def on_event(self, delivery: Delivery) -> None:
        """Record an event from the events topic (by ``payment_id`` in its body)."""
        now = time.time()
        delivery.ack()
        ce_type = delivery.message.attributes.get("ce-type", "")
        if ce_type != AUTHORIZED:
            self.other[ce_type.removeprefix(TYPE_PREFIX)] += 1
            if ce_type == REJECTED and len(self.rejections) < MAX_REJECTIONS_KEPT:
                self.rejections.append(json.loads(delivery.message.data))
            return
        payment_id = json.loads(delivery.message.data)["payment_id"]
        if payment_id not in self.received:
            self.received[payment_id] = now
            self.answered += 1

    async def wait_for(self, ids: Sequence[str], within: float) -> int:
        """How many of ``ids`` were received, waiting up to ``within`` seconds for all."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(i in self.received for i in ids):
                return len(ids)
            await asyncio.sleep(0.05)
        return sum(1 for i in ids if i in self.received)

    def latencies_ms(self, ids: Sequence[str]) -> list[float]:
        """Milliseconds from publish to receipt, for the ids received."""
        return [(self.received[i] - self.sent[i]) * 1000 for i in ids if i in self.received]


def commands(topic: str, tenants: list[str], tag: str, count: int) -> list[tuple[str, Outgoing]]:
    """``count`` AuthorizePayment commands as the booking service sends them, with their ids.

    CloudEvents in binary mode with ``ce-tenantid``; the ordering key is the payment id.
    """
    out = []
    for i in range(count):
        payment_id = f"pay_{tag}_{i:06d}"
        command = AuthorizePayment.model_validate(
            {
                "payment_id": payment_id,
                "idempotency_key": f"auth-{payment_id}",
                "amount": {"minor": 1250, "currency": "USD"},
                "payment_method": {"type": "card", "token": "pm_card_visa"},
                "booking_reference": f"BK-{payment_id}",
            }
        )
        envelope = Envelope(
            id=str(uuid.uuid4()),
            source=BOOKING,
            type=AUTHORIZE,
            time=datetime.now(UTC),
            subject=payment_id,
            tenant_id=tenants[i % len(tenants)],
        )
        wire = encode(to_cloudevent(envelope, command.model_dump_json().encode()), payment_id)
        out.append((payment_id, Outgoing(topic, wire)))
    return out


async def publish(
    publisher: PubSubPublisher, tracker: Tracker, batch: list[tuple[str, Outgoing]]
) -> None:
    """Publish one batch in one request; the publish time is taken just before it."""
    now = time.time()
    for payment_id, _ in batch:
        tracker.sent[payment_id] = now
    results = await publisher.publish_batch([item for _, item in batch])
    failed = [r for r in results if isinstance(r, PublishError)]
    if failed:
        raise failed[0]


@dataclass(frozen=True, slots=True)
class Throughput:
    """A burst of commands and how fast their sagas completed."""

    sent: int
    completed: int
    per_s: float


@dataclass(frozen=True, slots=True)
class Latency:
    """Commands at a steady rate and their publish-to-receipt latency."""

    rate_per_s: float
    sent: int
    completed: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


async def throughput(
    publisher: PubSubPublisher, tracker: Tracker, batch: list[tuple[str, Outgoing]], window: int
) -> Throughput:
    """Publish as fast as answers come back, at most ``window`` unanswered; sagas/s overall.

    Completed sagas per second from the first publish to the last answer.
    """
    ids = [payment_id for payment_id, _ in batch]
    answered_before = tracker.answered
    sent = 0
    while sent < len(batch):
        room = window - (sent - (tracker.answered - answered_before))
        if room >= min(PUBLISH_CHUNK, len(batch) - sent):
            chunk = batch[sent : sent + min(room, PUBLISH_BATCH)]
            await publish(publisher, tracker, chunk)
            sent += len(chunk)
        else:
            await asyncio.sleep(TICK)
    done = await tracker.wait_for(ids, within=max(60.0, len(ids) / 20))
    first = min(tracker.sent[i] for i in ids)
    last = max((tracker.received[i] for i in ids if i in tracker.received), default=first + 1)
    return Throughput(len(ids), done, round(done / (last - first), 1))


async def paced(
    publisher: PubSubPublisher, tracker: Tracker, batch: list[tuple[str, Outgoing]], rate: float
) -> Latency:
    """Publish at ``rate``/s, every 10 ms the commands then due; received - published."""
    ids = [payment_id for payment_id, _ in batch]
    started = time.monotonic()
    sent = 0
    while sent < len(batch):
        due = min(len(batch), int((time.monotonic() - started) * rate) + 1)
        if due > sent:
            await publish(publisher, tracker, batch[sent:due])
            sent = due
        await asyncio.sleep(TICK)
    done = await tracker.wait_for(ids, within=60.0)
    latencies = tracker.latencies_ms(ids) or [float("nan")]
    return Latency(
        rate_per_s=round(rate, 1),
        sent=len(ids),
        completed=done,
        p50_ms=round(statistics.median(latencies), 1),
        p90_ms=round(percentile(latencies, 90), 1),
        p99_ms=round(percentile(latencies, 99), 1),
        max_ms=round(max(latencies), 1),
    )


_STAGES: Final = """
SELECT m.payment_id,
       extract(epoch FROM m.processed_at)::float8 AS started,
       extract(epoch FROM o.created_at)::float8 AS written,
       extract(epoch FROM o.published_at)::float8 AS relayed
  FROM "{schema}".processed_messages AS m
  JOIN payments_central.outbox AS o
    ON o.tenant_id = $1 AND o.ordering_key = m.payment_id AND o.attributes->>'ce-type' = $2
 WHERE m.payment_id = ANY($3::text[])
"""
STAGE_NAMES: Final = ("to_handler", "saga", "relay", "to_subscriber")
"""publish -> the handler's first transaction; -> the outbox row written (three transactions
and the vendor call); -> published by the relay (commit, claim, Publish, mark); -> received."""


async def stages(
    db: Database, tenants: list[str], tracker: Tracker, ids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of each stage of the sagas ``ids``, from their stored timestamps."""
    parts: dict[str, list[float]] = {name: [] for name in STAGE_NAMES}
    async with db.connection() as conn:
        for tenant in tenants:
            schema = (await get_tenant(conn, tenant)).schema_name
            query = _STAGES.format(schema=schema)  # a name from the registry, never input
            for row in await conn.fetch(query, tenant, AUTHORIZED, list(ids)):
                payment_id = row["payment_id"]
                if row["relayed"] is None or payment_id not in tracker.received:
                    continue
                marks = (
                    tracker.sent[payment_id],
                    row["started"],
                    row["written"],
                    row["relayed"],
                    tracker.received[payment_id],
                )
                for name, before, after in zip(STAGE_NAMES, marks, marks[1:], strict=False):
                    parts[name].append((after - before) * 1000)
    return {
        name: {
            "p50_ms": round(statistics.median(values), 1),
            "p99_ms": round(percentile(values, 99), 1),
        }
        for name, values in parts.items()
        if values
    }


_WAITS: Final = """
SELECT CASE WHEN state = 'idle in transaction' THEN 'in transaction, waiting for the worker'
            WHEN wait_event IS NULL THEN 'running'
            WHEN wait_event_type = 'Lock' THEN 'Lock:' || wait_event || ' in '
                 || left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 50)
            ELSE wait_event_type || ':' || wait_event END AS what,
       count(*) AS sessions
  FROM pg_stat_activity
 WHERE application_name = 'payment-gateway' AND state <> 'idle' AND pid <> pg_backend_pid()
 GROUP BY 1
"""


async def sample_waits(db: Database, stop: asyncio.Event) -> dict[str, float]:
    """Average number of the service's busy Postgres sessions in each state, until ``stop``."""
    seen: Counter[str] = Counter()
    samples = 0
    async with db.connection() as conn:
        while not stop.is_set():
            for row in await conn.fetch(_WAITS):
                seen[row["what"]] += row["sessions"]
            samples += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WAIT_SAMPLE_SECONDS)
    return {what: round(n / max(samples, 1), 2) for what, n in seen.most_common()}


Watched = dict[str, tuple[int, bool]]
"""Processes whose CPU time is counted: name -> (pid, with its descendants)."""


def cpu_seconds(watched: Watched) -> dict[str, float]:
    """CPU seconds so far of each watched process, its descendants and its reaped children.

    From /proc (Linux): user + system time, plus that of the children it has waited for.
    """
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        used[pid] = sum(int(ticks) for ticks in fields[11:15]) / tick
    totals = {}
    for name, (root, tree) in watched.items():
        members, frontier = {root}, [root]
        while tree and frontier:
            children = [pid for pid, ppid in parent.items() if ppid in frontier]
            members.update(children)
            frontier = children
        totals[name] = sum(used.get(pid, 0.0) for pid in members)
    return totals
