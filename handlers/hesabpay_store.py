"""The HesabPay adapter's records in the tenant's schema, shared by the endpoint and the worker.

``PostgresCheckoutSessions`` keeps each ``CheckoutSession`` whole as jsonb: a change reads
the row ``FOR UPDATE``, applies the session's own pure method and writes the result back,
in one tenant transaction. ``PostgresReplayStore`` keeps one row per webhook signature and
deletes those older than the retention as it goes. Both answer exactly as the in-memory
stores of ``processors.hesabpay_sessions`` do.
"""

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Final

import asyncpg

from processors.hesabpay_sessions import (
    REPLAY_RETENTION,
    CheckoutPayment,
    CheckoutSession,
    Sighting,
)
from schemas.money import Money
from tenancy.db import Conn, Database

__all__ = ["PostgresCheckoutSessions", "PostgresReplayStore"]

_RESERVE: Final = """
INSERT INTO hesabpay_checkouts
       (session_id, idempotency_key, payment_id, status, payment_days, state, created_at,
        updated_at)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, now())
ON CONFLICT (idempotency_key) DO NOTHING
"""
_BY_ID: Final = "SELECT state::text FROM hesabpay_checkouts WHERE session_id = $1"
_BY_KEY: Final = "SELECT state::text FROM hesabpay_checkouts WHERE idempotency_key = $1"
_LOCK: Final = "SELECT state::text FROM hesabpay_checkouts WHERE session_id = $1 FOR UPDATE"
_WRITE: Final = """
UPDATE hesabpay_checkouts
   SET status = $2, payment_days = $3, state = $4::jsonb, updated_at = now()
 WHERE session_id = $1
"""
_PAID_ON: Final = """
SELECT state::text FROM hesabpay_checkouts WHERE payment_days @> ARRAY[$1::date]
 ORDER BY created_at, session_id
"""
_FORGET: Final = "DELETE FROM hesabpay_webhook_sightings WHERE signed_at < $1"
_SIGHT: Final = """
INSERT INTO hesabpay_webhook_sightings (signature, transaction_id, signed_at)
VALUES ($1, $2, $3)
ON CONFLICT (signature) DO NOTHING
RETURNING signature
"""
_SEEN: Final = "SELECT transaction_id FROM hesabpay_webhook_sightings WHERE signature = $1"


def _dump(session: CheckoutSession) -> str:
    payments = [
        {
            "transaction_id": p.transaction_id,
            "succeeded": p.succeeded,
            "amount": p.amount.model_dump(),
            "status_code": p.status_code,
            "at": p.at.isoformat(),
        }
        for p in session.payments
    ]
    return json.dumps(
        {
            "session_id": session.session_id,
            "idempotency_key": session.idempotency_key,
            "payment_id": session.payment_id,
            "amount": session.amount.model_dump(),
            "created_at": session.created_at.isoformat(),
            "status": session.status,
            "url": session.url,
            "vendor_code": session.vendor_code,
            "transaction_id": session.transaction_id,
            "payments": payments,
        }
    )


def _load(text: str) -> CheckoutSession:
    row = json.loads(text)
    payments = tuple(
        CheckoutPayment(
            transaction_id=p["transaction_id"],
            succeeded=p["succeeded"],
            amount=Money.model_validate(p["amount"]),
            status_code=p["status_code"],
            at=datetime.fromisoformat(p["at"]),
        )
        for p in row["payments"]
    )
    return CheckoutSession(
        session_id=row["session_id"],
        idempotency_key=row["idempotency_key"],
        payment_id=row["payment_id"],
        amount=Money.model_validate(row["amount"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        status=row["status"],
        url=row["url"],
        vendor_code=row["vendor_code"],
        transaction_id=row["transaction_id"],
        payments=payments,
    )


def _payment_days(session: CheckoutSession) -> list[date]:
    """The days ``payments_on`` must find the session on (as the in-memory store counts them)."""
    return sorted({p.at.date() for p in session.payments if p.succeeded})


class PostgresCheckoutSessions:
    """``CheckoutSessions`` in the tenant's ``hesabpay_checkouts`` table."""

    def __init__(self, db: Database, tenant_id: str) -> None:
        """Keep the sessions of ``tenant_id`` in its schema on ``db``."""
        self._db = db
        self._tenant_id = tenant_id

    async def reserve(self, session: CheckoutSession) -> CheckoutSession:
        """Store ``session`` unless one exists for its idempotency key; return the stored one."""
        async with self._db.tenant_transaction(self._tenant_id) as tx:
            try:
                await tx.conn.execute(
                    _RESERVE,
                    session.session_id,
                    session.idempotency_key,
                    session.payment_id,
                    session.status,
                    _payment_days(session),
                    _dump(session),
                    session.created_at,
                )
            except asyncpg.UniqueViolationError as exc:
                raise ValueError("session id already used by another idempotency key") from exc
            stored = await tx.conn.fetchval(_BY_KEY, session.idempotency_key)
        return _load(stored)

    async def get(self, session_id: str) -> CheckoutSession | None:
        """The session ``session_id``, if there is one."""
        return await self._one(_BY_ID, session_id)

    async def for_key(self, idempotency_key: str) -> CheckoutSession | None:
        """The session created for ``idempotency_key``, if there is one."""
        return await self._one(_BY_KEY, idempotency_key)

    async def open(self, session_id: str, url: str) -> CheckoutSession:
        """Record the checkout URL (the first one recorded wins)."""
        return await self._update(session_id, lambda session: session.opened(url))

    async def refuse(self, session_id: str, vendor_code: str) -> CheckoutSession:
        """Record HesabPay's refusal to create the checkout."""
        return await self._update(session_id, lambda session: session.refused(vendor_code))

    async def abandon(self, session_id: str) -> CheckoutSession:
        """Record that the gateway voided the checkout."""
        return await self._update(session_id, CheckoutSession.abandoned)

    async def record_payment(self, session_id: str, payment: CheckoutPayment) -> CheckoutSession:
        """Apply a verified webhook outcome."""
        return await self._update(session_id, lambda session: session.with_payment(payment))

    async def payments_on(self, day: date) -> list[tuple[CheckoutSession, CheckoutPayment]]:
        """Every successful payment recorded with a time on ``day`` (UTC)."""
        async with self._db.tenant_transaction(self._tenant_id) as tx:
            rows = await tx.conn.fetch(_PAID_ON, day)
        sessions = [_load(row[0]) for row in rows]
        return [
            (session, payment)
            for session in sessions
            for payment in session.payments
            if payment.succeeded and payment.at.date() == day
        ]

    async def _one(self, query: str, value: str) -> CheckoutSession | None:
        async with self._db.tenant_transaction(self._tenant_id) as tx:
            stored = await tx.conn.fetchval(query, value)
        return None if stored is None else _load(stored)

    async def _update(
        self, session_id: str, change: Callable[[CheckoutSession], CheckoutSession]
    ) -> CheckoutSession:
        async with self._db.tenant_transaction(self._tenant_id) as tx:
            stored = await tx.conn.fetchval(_LOCK, session_id)
            if stored is None:
                raise KeyError(session_id)
            session = _load(stored)
            updated = change(session)
            if updated != session:
                await _write(tx.conn, updated)
        return updated


async def _write(conn: Conn, session: CheckoutSession) -> None:
    await conn.execute(
        _WRITE, session.session_id, session.status, _payment_days(session), _dump(session)
    )


class PostgresReplayStore:
    """``ReplayStore`` in the tenant's ``hesabpay_webhook_sightings`` table."""

    def __init__(
        self, db: Database, tenant_id: str, retention: timedelta = REPLAY_RETENTION
    ) -> None:
        """Keep the sightings of ``tenant_id`` for ``retention`` after their signing time."""
        self._db = db
        self._tenant_id = tenant_id
        self._retention = retention

    async def sight(self, signature: str, transaction_id: str, signed_at: datetime) -> Sighting:
        """Record the pair and say whether this signature was seen before, and with what."""
        async with self._db.tenant_transaction(self._tenant_id) as tx:
            await tx.conn.execute(_FORGET, signed_at - self._retention)
            if await tx.conn.fetchval(_SIGHT, signature, transaction_id, signed_at) is not None:
                return "new"
            seen = await tx.conn.fetchval(_SEEN, signature)
        return "replayed" if seen == transaction_id else "conflict"
