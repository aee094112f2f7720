"""The saga timer loop: fires due timers once across all workers, and survives restarts.

Timers live in each tenant's ``saga_timers``; ``payments_central.saga_wakeups`` holds each
tenant's earliest due time, so one query finds the tenants with work. For such a tenant
the loop claims a batch of due timers in a tenant transaction (``FOR UPDATE SKIP LOCKED``,
then a lease), recomputes the tenant's wake-up time under its row lock, and fires each
timer outside that transaction:

* ``inquiry``: a status inquiry to the processor; its answer goes through the saga guard;
* ``action_timeout``: first an inquiry (the customer may have finished and the webhook be
  late), then, if still waiting, expiry;
* ``redrive`` and ``authorization_expiry``: straight to the saga.

A worker that dies after claiming leaves leases that run out; another worker fires those
timers then. A timer the saga no longer has changes nothing.
"""

import asyncio
import contextlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from handlers.executor import OperationExecutor
from sagas.messages import Declined, Message, Succeeded, TimerFired, Unresolved
from sagas.model import TimerKind
from schemas.clock import Clock
from tenancy.db import Database
from tenancy.lifecycle import SERVING_STATUSES

_log = structlog.get_logger(__name__)

_DUE_TENANTS: Final = """
SELECT w.tenant_id
  FROM payments_central.saga_wakeups AS w
  JOIN payments_central.tenant_schema_registry AS r USING (tenant_id)
 WHERE w.due_at <= $1 AND r.status = ANY($4::text[])
   AND ($3::text[] IS NULL OR w.tenant_id = ANY($3))
 ORDER BY w.due_at LIMIT $2
"""
_CLAIM: Final = """
UPDATE saga_timers AS t SET lease_until = $2
  FROM (SELECT payment_id, kind, seq FROM saga_timers
         WHERE greatest(due_at, coalesce(lease_until, due_at)) <= $1
         ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS due
 WHERE (t.payment_id, t.kind, t.seq) = (due.payment_id, due.kind, due.seq)
RETURNING t.payment_id, t.kind, t.seq, t.due_at
"""
_LOCK_WAKEUP: Final = """
SELECT due_at FROM payments_central.saga_wakeups WHERE tenant_id = $1 FOR UPDATE
"""
_NEXT_DUE: Final = """
SELECT min(greatest(due_at, coalesce(lease_until, due_at))) FROM saga_timers
"""
_SET_WAKEUP: Final = """
UPDATE payments_central.saga_wakeups SET due_at = $2 WHERE tenant_id = $1
"""
_NEVER: Final = datetime.max.replace(tzinfo=UTC)
"""The wake-up time of a tenant with no timers."""


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """How the loop polls and claims."""

    poll_seconds: float = 1.0
    tenants_per_pass: int = 20
    timers_per_claim: int = 20
    lease: timedelta = timedelta(minutes=5)
    """Longer than a pass takes: a pass fires at most ``tenants_per_pass *
    timers_per_claim`` timers, ``concurrency`` at a time, each bounded by the executor's
    retry budget."""
    concurrency: int = 20


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A claimed timer."""

    tenant_id: str
    payment_id: str
    kind: TimerKind
    seq: int
    due_at: datetime


class TimerLoop:
    """Finds due timers and fires them through the executor."""

    def __init__(
        self,
        db: Database,
        executor: OperationExecutor,
        clock: Clock,
        config: TimerConfig = TimerConfig(),
    ) -> None:
        """Wire the loop to its dependencies."""
        self._db = db
        self._executor = executor
        self._clock = clock
        self._config = config
        self._slots = asyncio.Semaphore(config.concurrency)

    async def run(self, stop: asyncio.Event) -> None:
        """Fire due timers until ``stop`` is set."""
        _log.info("timer_loop_started")
        while not stop.is_set():
            try:
                fired = await self.run_once()
            except Exception:  # noqa: BLE001 (the loop outlives a database hiccup)
                _log.exception("timer_pass_failed")
                fired = 0
            if fired == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._config.poll_seconds)
        _log.info("timer_loop_stopped")

    async def run_once(self, tenant_ids: Collection[str] | None = None) -> int:
        """One pass: claim and fire the due timers of the due tenants; returns how many.

        ``tenant_ids`` limits the pass to those tenants (an operator's targeted run).
        """
        now = self._clock()
        only = None if tenant_ids is None else list(tenant_ids)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                _DUE_TENANTS, now, self._config.tenants_per_pass, only, sorted(SERVING_STATUSES)
            )
        due: list[DueTimer] = []
        for row in rows:
            try:
                due.extend(await self._claim(row["tenant_id"]))
            except Exception:  # noqa: BLE001 (one tenant's trouble must not stop the others)
                _log.exception("timer_claim_failed", tenant_id=row["tenant_id"])
        async with asyncio.TaskGroup() as tasks:
            for timer in due:
                tasks.create_task(self._fire_guarded(timer))
        return len(due)

    async def _claim(self, tenant_id: str) -> list[DueTimer]:
        now = self._clock()
        async with self._db.tenant_transaction(tenant_id) as tx:
            rows = await tx.conn.fetch(
                _CLAIM, now, now + self._config.lease, self._config.timers_per_claim
            )
            await tx.conn.execute(_LOCK_WAKEUP, tenant_id)
            next_due = await tx.conn.fetchval(_NEXT_DUE)
            await tx.conn.execute(_SET_WAKEUP, tenant_id, next_due or _NEVER)
        return [
            DueTimer(
                tenant_id, row["payment_id"], TimerKind(row["kind"]), row["seq"], row["due_at"]
            )
            for row in rows
        ]

    async def _fire_guarded(self, timer: DueTimer) -> None:
        async with self._slots:
            with structlog.contextvars.bound_contextvars(
                tenant_id=timer.tenant_id, payment_id=timer.payment_id, timer=timer.kind.value
            ):
                try:
                    await self.fire(timer)
                except Exception:  # noqa: BLE001 (the lease runs out and the timer fires again)
                    _log.exception("timer_fire_failed")

    async def fire(self, timer: DueTimer) -> None:
        """Fire one timer: inquire if it asks for that, then let the saga decide."""
        message: Message = TimerFired(timer.kind, timer.seq, timer.due_at)
        executor = self._executor
        if timer.kind is TimerKind.INQUIRY:
            answer = await executor.inquire(timer.tenant_id, timer.payment_id, timer.seq)
            message = answer or message
        elif timer.kind is TimerKind.ACTION_TIMEOUT:
            seq = await executor.waiting_authorization(timer.tenant_id, timer.payment_id)
            answer = (
                None
                if seq is None
                else await executor.inquire(timer.tenant_id, timer.payment_id, seq)
            )
            if isinstance(answer, Unresolved):
                # The vendor cannot say whether the customer finished: ask again once the
                # lease runs out rather than expire a payment that may have been paid.
                _log.warning("action_timeout_deferred")
                return
            if isinstance(answer, Succeeded | Declined):
                message = answer
        execute = await executor.apply(
            timer.tenant_id, timer.payment_id, message, fired=(timer.kind, timer.seq)
        )
        _log.info("timer_fired", answer=type(message).__name__)
        if execute:
            await executor.run(timer.tenant_id, timer.payment_id, execute)
