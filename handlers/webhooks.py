"""Webhook ingress: verify a vendor's webhook and store it in the central inbox.

``payment-api`` calls ``WebhookIngress.receive`` with the raw request. Nothing here
touches a payment: a webhook is checked (the tenant exists and is served, the processor
is attached, the signature verifies through the tenant's own adapter and secret) and its
normalized ``Notification`` is inserted into ``payments_central.webhook_inbox``, unique
per processor and vendor event id, so a redelivery stores nothing. The worker's inbox
appliers (``handlers.inbox``) take it from there.

What the endpoint answers follows from what is raised here:

* ``IngestionPausedError``: an operator paused ingestion (DEPLOYMENT_TOPOLOGY 8): 503
* ``UnknownTenantError`` / ``NotAttachedError``: no such (served) tenant or processor: 404
* ``WebhookRejected``: the signature, age or content failed: 400, nothing stored
* ``IngressUnavailableError``: verification or the inbox could not be reached: 503, so
  the vendor retries; nothing is lost

Only the normalized notification is stored (typed ids, amounts, times), never the raw
body: what the vendor sent beyond that never reaches the database or the logs.
"""

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import asyncpg
import structlog

from handlers.ports import TenantPorts
from processors.errors import ProcessorError, WebhookRejected
from processors.port import WebhookRequest
from schemas.cards import find_card_number
from schemas.clock import Clock
from schemas.ids import InvalidTenantIdError, validate_tenant_id
from schemas.notifications import Notification
from schemas.processors import Processor, VendorEnv
from tenancy.db import Database
from tenancy.errors import SecretError, UnknownTenantError
from tenancy.lifecycle import Operation, TenantStatus, allows
from tenancy.registry import ServedTenants

_log = structlog.get_logger(__name__)

PAUSE_SWITCH: Final = "webhook_ingestion_paused"
SWITCH_TTL: Final = timedelta(seconds=1)
_ACCOUNT: Final = re.compile(r"acct_[A-Za-z0-9]{1,64}")
"""A Stripe account id; nothing else from an unverified body is used or logged."""
_INSERT: Final = """
INSERT INTO payments_central.webhook_inbox
    (processor, vendor_event_id, tenant_id, event_type, payload, status, payment_id,
     received_at, next_attempt_at, settled_at)
SELECT b.processor, b.event_id, b.tenant_id, b.event_type, b.payload::jsonb, b.status,
       b.payment_id, b.received_at, b.received_at,
       CASE WHEN b.status = 'ignored' THEN b.received_at END
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::timestamptz[])
       AS b (processor, event_id, tenant_id, event_type, payload, status, payment_id,
             received_at)
  JOIN payments_central.tenant_schema_registry r ON r.tenant_id = b.tenant_id
 WHERE r.status = ANY($9::text[])
   FOR SHARE OF r
ON CONFLICT (processor, vendor_event_id, tenant_id) DO NOTHING
RETURNING processor, vendor_event_id, tenant_id, inbox_id
"""
_STORED_BEFORE: Final = """
SELECT i.processor, i.vendor_event_id, i.tenant_id
  FROM payments_central.webhook_inbox i
  JOIN unnest($1::text[], $2::text[], $3::text[]) AS k (processor, event_id, tenant_id)
    ON (i.processor, i.vendor_event_id, i.tenant_id) = (k.processor, k.event_id, k.tenant_id)
"""
_TAKES_WEBHOOKS: Final = [s.value for s in TenantStatus if allows(s, Operation.WEBHOOK)]
_SWITCH: Final = "SELECT reason FROM payments_central.service_switches WHERE name = $1"
_CONNECT_ACCOUNT: Final = """
SELECT tenant_id FROM payments_central.vendor_attachments
 WHERE processor = 'stripe' AND env = $1 AND account_ref = $2 AND enabled
 ORDER BY tenant_id
"""
_STORE_ERRORS: Final = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class IngestionPausedError(Exception):
    """Webhook ingestion is paused; the vendor should retry later."""

    def __init__(self, reason: str) -> None:
        """Paused for ``reason`` (an operator's words)."""
        super().__init__(f"webhook ingestion is paused: {reason}")
        self.reason = reason


class IngressUnavailableError(Exception):
    """The webhook could not be verified or stored now; the vendor should retry."""


@dataclass(frozen=True, slots=True)
class _InboxRow:
    processor: str
    event_id: str
    tenant_id: str
    event_type: str
    payload: str
    status: str
    payment_id: str | None
    received_at: datetime

    @property
    def key(self) -> tuple[str, str, str]:
        return self.processor, self.event_id, self.tenant_id


_Waiter = tuple[_InboxRow, "asyncio.Future[int | None]"]


class InboxWriter:
    """Inserts inbox rows, many per statement: concurrent webhooks share a round trip.

    A row waits only while earlier batches are being written (at most ``FLUSHERS`` at
    once); whatever queued meanwhile goes in the next statement, so one commit serves
    many webhooks. Each caller learns its row's id, or None when the tenant stored the
    event before (an earlier delivery, or a copy in the same batch). The statement holds
    the tenant's registry row (FOR SHARE) and stores nothing for a tenant that no longer
    takes webhooks (offboarding waits for it, then sees the rows to anonymize); such a
    caller gets ``UnknownTenantError``.
    """

    FLUSHERS: Final = 2
    MAX_BATCH: Final = 256

    def __init__(self, db: Database) -> None:
        """Write through ``db``."""
        self._db = db
        self._queue: list[_Waiter] = []
        self._flushing = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def insert(self, row: _InboxRow) -> int | None:
        """Store ``row``; its inbox id, or None if the event was already stored."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._flushing < self.FLUSHERS:
            self._flushing += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.MAX_BATCH]
                del self._queue[: self.MAX_BATCH]
                try:
                    await self._write(batch)
                except BaseException as exc:
                    # Whatever went wrong, no caller of this batch may wait forever.
                    stopped = IngressUnavailableError("the inbox writer stopped")
                    self._fail(batch, exc if isinstance(exc, Exception) else stopped)
                    raise
        finally:
            self._flushing -= 1

    async def _write(self, batch: list[_Waiter]) -> None:
        unique: dict[tuple[str, str, str], _InboxRow] = {}
        for row, _ in batch:
            unique.setdefault(row.key, row)
        rows = sorted(unique.values(), key=lambda r: r.key)  # one lock order for all batches
        try:
            inserted = await self._insert(rows)
            missing = [row for row in rows if row.key not in inserted]
            before = await self._stored_before(missing) if missing else set()
        except asyncpg.PostgresError as exc:
            if len(rows) == 1:
                self._fail(batch, exc)
                return
            # One row the database refuses must not fail its neighbours: one by one.
            for row in rows:
                await self._write([w for w in batch if w[0].key == row.key])
            return
        except _STORE_ERRORS as exc:
            self._fail(batch, exc)
            return
        answered: set[tuple[str, str, str]] = set()
        for row, future in batch:
            if future.done():
                continue
            if row.key in inserted and row.key not in answered:
                answered.add(row.key)
                future.set_result(inserted[row.key])
            elif row.key in inserted or row.key in before:
                future.set_result(None)  # a copy of a row this batch stored, or stored before
            else:
                future.set_exception(UnknownTenantError(f"tenant {row.tenant_id} is not served"))

    async def _insert(self, rows: list[_InboxRow]) -> dict[tuple[str, str, str], int]:
        async with self._db.connection() as conn:
            records = await conn.fetch(
                _INSERT,
                [r.processor for r in rows],
                [r.event_id for r in rows],
                [r.tenant_id for r in rows],
                [r.event_type for r in rows],
                [r.payload for r in rows],
                [r.status for r in rows],
                [r.payment_id for r in rows],
                [r.received_at for r in rows],
                _TAKES_WEBHOOKS,
            )
        return {
            (r["processor"], r["vendor_event_id"], r["tenant_id"]): r["inbox_id"] for r in records
        }

    async def _stored_before(self, rows: list[_InboxRow]) -> set[tuple[str, str, str]]:
        async with self._db.connection() as conn:
            records = await conn.fetch(
                _STORED_BEFORE,
                [r.processor for r in rows],
                [r.event_id for r in rows],
                [r.tenant_id for r in rows],
            )
        return {(r["processor"], r["vendor_event_id"], r["tenant_id"]) for r in records}

    @staticmethod
    def _fail(batch: list[_Waiter], exc: BaseException) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)


class Stored(StrEnum):
    """What became of an accepted webhook."""

    STORED = "stored"
    """A new inbox row, for the appliers."""
    IGNORED = "ignored"
    """A verified event the gateway does not act on, kept (status ``ignored``) for records."""
    DUPLICATE = "duplicate"
    """The vendor delivered this event before; nothing was inserted."""
    UNROUTED = "unrouted"
    """A Stripe Connect event for an account no tenant has attached; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """The answer to an accepted webhook."""

    outcome: Stored
    tenant_id: str | None = None
    event_id: str | None = None
    inbox_id: int | None = None


@dataclass(slots=True)
class _Cached:
    value: str | None
    read_at: datetime


class WebhookIngress:
    """Verifies webhooks through the tenants' adapters and stores them in the inbox."""

    def __init__(self, db: Database, ports: TenantPorts, clock: Clock, env: VendorEnv) -> None:
        """Verify with the adapters ``ports`` builds; attachments of ``env`` only."""
        self._db = db
        self._ports = ports
        self._clock = clock
        self._env = env
        self._switch: _Cached | None = None
        self._tenants = ServedTenants(db, clock)
        self._writer = InboxWriter(db)

    async def paused(self) -> str | None:
        """Why ingestion is paused, or None; read at most once per ``SWITCH_TTL``."""
        now = self._clock()
        cached = self._switch
        if cached is not None and now - cached.read_at < SWITCH_TTL:
            return cached.value
        try:
            reason = await ingestion_pause(self._db)
        except _STORE_ERRORS as exc:
            raise IngressUnavailableError("the ingestion switch could not be read") from exc
        self._switch = _Cached(reason, now)
        return reason

    async def receive(
        self, processor: Processor, tenant_id: str, webhook: WebhookRequest
    ) -> Receipt:
        """Verify ``webhook`` for the tenant's ``processor`` and store it once."""
        reason = await self.paused()
        if reason is not None:
            raise IngestionPausedError(reason)
        await self._check_tenant(tenant_id)
        try:
            bound = await self._ports.bound(tenant_id, processor)
        except _STORE_ERRORS as exc:
            raise IngressUnavailableError("the tenant's attachments could not be read") from exc
        try:
            notification = await bound.port.parse_webhook(webhook)
        except WebhookRejected as exc:
            _log.info(
                "webhook_rejected", processor=processor, tenant_id=tenant_id, reason=exc.reason
            )
            raise
        except ProcessorError as exc:
            _log.warning(
                "webhook_unverified", processor=processor, tenant_id=tenant_id, error=exc.code
            )
            raise IngressUnavailableError("the signature could not be verified now") from exc
        except SecretError as exc:
            _log.error(
                "webhook_secret_unavailable",
                processor=processor,
                tenant_id=tenant_id,
                error=type(exc).__name__,
            )
            raise IngressUnavailableError("the tenant's webhook secret could not be read") from exc
        except _STORE_ERRORS as exc:
            raise IngressUnavailableError("the verification state could not be read") from exc
        if notification.processor is not processor:
            raise WebhookRejected("mismatch", "the event belongs to another processor")
        card_at = find_card_number(notification.model_dump(mode="json"))
        if card_at is not None:  # invariant 8: never stored, never logged
            _log.warning("webhook_card_data_refused", processor=processor, tenant_id=tenant_id)
            raise WebhookRejected("malformed", f"card number found at {card_at}")
        return await self._store(tenant_id, notification)

    async def receive_connect(self, webhook: WebhookRequest) -> Receipt:
        """A Stripe Connect platform event: routed to the tenant whose account it names."""
        reason = await self.paused()
        if reason is not None:
            raise IngestionPausedError(reason)
        account = _connect_account(webhook.body)
        try:
            async with self._db.connection() as conn:
                rows = await conn.fetch(_CONNECT_ACCOUNT, self._env.value, account)
        except _STORE_ERRORS as exc:
            raise IngressUnavailableError("the attachments could not be read") from exc
        if not rows:
            _log.info(
                "webhook_unrouted", processor=Processor.STRIPE
            )  # account unverified: not logged
            return Receipt(Stored.UNROUTED)
        if len(rows) > 1:
            _log.warning("stripe_account_shared", tenant_id=rows[0]["tenant_id"], tenants=len(rows))
        return await self.receive(Processor.STRIPE, rows[0]["tenant_id"], webhook)

    async def _check_tenant(self, tenant_id: str) -> None:
        """``UnknownTenantError`` unless the tenant exists and takes webhooks."""
        try:
            validate_tenant_id(tenant_id)
        except InvalidTenantIdError as exc:
            raise UnknownTenantError("not a tenant id") from exc
        try:
            refusal = await self._tenants.refusal(tenant_id)
        except _STORE_ERRORS as exc:
            raise IngressUnavailableError("the tenant registry could not be read") from exc
        if refusal is not None:
            raise UnknownTenantError(f"tenant {tenant_id} is {refusal}")

    async def _store(self, tenant_id: str, notification: Notification) -> Receipt:
        status = "ignored" if notification.kind == "ignored" else "pending"
        row = _InboxRow(
            notification.processor.value,
            notification.event_id,
            tenant_id,
            notification.vendor_type,
            notification.model_dump_json(),
            status,
            notification.payment_id,
            self._clock(),
        )
        try:
            inbox_id = await self._writer.insert(row)
        except UnknownTenantError:
            self._tenants.forget(tenant_id)
            raise
        except Exception as exc:
            _log.error("webhook_store_failed", tenant_id=tenant_id, error=type(exc).__name__)
            raise IngressUnavailableError("the webhook inbox could not be written") from exc
        log = _log.bind(
            processor=notification.processor,
            tenant_id=tenant_id,
            event_id=notification.event_id,
            kind=notification.kind,
        )
        if inbox_id is None:
            log.info("webhook_duplicate")
            return Receipt(Stored.DUPLICATE, tenant_id, notification.event_id)
        log.info("webhook_stored", inbox_id=inbox_id)
        outcome = Stored.IGNORED if status == "ignored" else Stored.STORED
        return Receipt(outcome, tenant_id, notification.event_id, inbox_id)


def _connect_account(body: bytes) -> str:
    """The ``account`` a Connect event names (unverified: it only picks the secret)."""
    try:
        event = json.loads(body)
    except ValueError:
        raise WebhookRejected("malformed", "the body is not JSON") from None
    account = event.get("account") if isinstance(event, Mapping) else None
    if not isinstance(account, str) or not _ACCOUNT.fullmatch(account):
        raise WebhookRejected("malformed", "a Connect event names its acct_ account")
    return account


async def pause_ingestion(db: Database, reason: str, by: str) -> bool:
    """Turn the pause switch on (True if it was off); every pod sees it within a second."""
    async with db.connection() as conn:
        inserted = await conn.fetchval(
            "INSERT INTO payments_central.service_switches (name, reason, set_by)"
            " VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING true",
            PAUSE_SWITCH,
            reason,
            by,
        )
    _log.warning("webhook_ingestion_paused", reason=reason, by=by)
    return bool(inserted)


async def resume_ingestion(db: Database, by: str) -> bool:
    """Turn the pause switch off (True if it was on)."""
    async with db.connection() as conn:
        deleted = await conn.fetchval(
            "DELETE FROM payments_central.service_switches WHERE name = $1 RETURNING true",
            PAUSE_SWITCH,
        )
    _log.warning("webhook_ingestion_resumed", by=by)
    return bool(deleted)


async def ingestion_pause(db: Database) -> str | None:
    """Why ingestion is paused, or None, read now."""
    async with db.connection() as conn:
        reason: str | None = await conn.fetchval(_SWITCH, PAUSE_SWITCH)
    return reason
