"""What the HesabPay adapter remembers, since HesabPay offers no lookup: checkouts and replays.

HesabPay has no idempotency header, no status lookup and no transaction list, so the
adapter keeps its own record:

- ``CheckoutSessions``: the checkout created for each idempotency key (our session id,
  the payment, the amount, the checkout URL) and the verified webhook outcomes that
  settled it. Inquiries, capture, void and the daily transaction list read it.
- ``ReplayStore``: the (signature, transaction id) pairs of verified webhooks, because
  HesabPay's signature does not cover the body and an old webhook could be sent again.

A session moves ``creating -> open -> paid | failed``; ``refused`` when HesabPay refused to
create it, ``abandoned`` when the gateway voided it. A payment always wins: a success
settles a failed or abandoned session too (money moved, so it must show), while a failure
never downgrades a paid one. The transitions are pure methods of ``CheckoutSession``; a
store only persists them. The in-memory stores serve tests and dev mode; production needs
Postgres stores in the tenant schema (unique idempotency key and session id, guarded
updates, replay rows garbage-collected after ``REPLAY_RETENTION``).
"""

import threading
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Final, Literal, Protocol

from schemas.money import Money

__all__ = [
    "REPLAY_RETENTION",
    "CheckoutPayment",
    "CheckoutSession",
    "CheckoutSessions",
    "InMemoryCheckoutSessions",
    "InMemoryReplayStore",
    "ReplayStore",
    "SessionStatus",
    "Sighting",
]

SessionStatus = Literal["creating", "open", "refused", "paid", "failed", "abandoned"]
Sighting = Literal["new", "replayed", "conflict"]
"""A webhook signature seen for the first time, again with the same transaction, or again
with another transaction (a body altered around a captured signature)."""

REPLAY_RETENTION: Final = timedelta(minutes=10)
"""How long a sighting is kept: twice the timestamp tolerance; an older webhook is stale."""


@dataclass(frozen=True, slots=True)
class CheckoutPayment:
    """One verified webhook outcome: a checkout attempt that succeeded or failed."""

    transaction_id: str
    succeeded: bool
    amount: Money
    status_code: int
    at: datetime


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    """A hosted checkout the gateway created at HesabPay for one idempotency key.

    ``session_id`` is ours (derived from the key), sent as the item id and echoed by
    the webhook. ``transaction_id`` is the payment that settled it; ``payments`` keeps
    every verified outcome, a second payment included.
    """

    session_id: str
    idempotency_key: str
    payment_id: str
    amount: Money
    created_at: datetime
    status: SessionStatus = "creating"
    url: str | None = None
    vendor_code: str | None = None
    transaction_id: str | None = None
    payments: tuple[CheckoutPayment, ...] = ()

    def opened(self, url: str) -> "CheckoutSession":
        """HesabPay created the checkout at ``url``; the first URL recorded wins."""
        if self.status != "creating":
            return self
        return replace(self, status="open", url=url)

    def refused(self, vendor_code: str) -> "CheckoutSession":
        """HesabPay refused to create the checkout."""
        if self.status != "creating":
            return self
        return replace(self, status="refused", vendor_code=vendor_code)

    def abandoned(self) -> "CheckoutSession":
        """The gateway gave up on the checkout (a void); a paid one stays paid."""
        if self.status == "paid":
            return self
        return replace(self, status="abandoned")

    def with_payment(self, payment: CheckoutPayment) -> "CheckoutSession":
        """A verified webhook outcome: a success settles it, a failure never undoes one."""
        if any(seen.transaction_id == payment.transaction_id for seen in self.payments) and (
            not payment.succeeded or self.transaction_id == payment.transaction_id
        ):
            return self
        payments = (*self.payments, payment)
        if payment.succeeded and self.status != "paid":
            return replace(
                self, status="paid", transaction_id=payment.transaction_id, payments=payments
            )
        if payment.succeeded or self.status == "paid":
            return replace(self, payments=payments)
        return replace(
            self,
            status="failed",
            vendor_code=f"status_code_{payment.status_code}",
            payments=payments,
        )


class CheckoutSessions(Protocol):
    """The checkouts of one tenant's HesabPay account."""

    async def reserve(self, session: CheckoutSession) -> CheckoutSession:
        """Store ``session`` unless one exists for its idempotency key; return the stored one."""
        ...

    async def get(self, session_id: str) -> CheckoutSession | None:
        """The session ``session_id``, if there is one."""
        ...

    async def for_key(self, idempotency_key: str) -> CheckoutSession | None:
        """The session created for ``idempotency_key``, if there is one."""
        ...

    async def open(self, session_id: str, url: str) -> CheckoutSession:
        """Record the checkout URL HesabPay answered (the first one recorded wins)."""
        ...

    async def refuse(self, session_id: str, vendor_code: str) -> CheckoutSession:
        """Record that HesabPay refused to create the checkout, with its code."""
        ...

    async def abandon(self, session_id: str) -> CheckoutSession:
        """Record that the gateway voided the checkout (a paid one stays paid)."""
        ...

    async def record_payment(self, session_id: str, payment: CheckoutPayment) -> CheckoutSession:
        """Apply a verified webhook outcome; return the session as it now stands."""
        ...

    async def payments_on(self, day: date) -> list[tuple[CheckoutSession, CheckoutPayment]]:
        """Every successful payment recorded with a time on ``day`` (UTC)."""
        ...


class ReplayStore(Protocol):
    """The signatures of verified HesabPay webhooks, with their transaction ids."""

    async def sight(self, signature: str, transaction_id: str, signed_at: datetime) -> Sighting:
        """Record the pair and say whether this signature was seen before, and with what."""
        ...


class InMemoryCheckoutSessions:
    """``CheckoutSessions`` in a dict; thread-safe, for tests and dev mode."""

    def __init__(self) -> None:
        """Start with no session."""
        self._lock = threading.Lock()
        self._sessions: dict[str, CheckoutSession] = {}
        self._by_key: dict[str, str] = {}

    async def reserve(self, session: CheckoutSession) -> CheckoutSession:
        """Store ``session`` unless one exists for its idempotency key; return the stored one."""
        with self._lock:
            existing = self._by_key.get(session.idempotency_key)
            if existing is not None:
                return self._sessions[existing]
            if session.session_id in self._sessions:
                raise ValueError("session id already used by another idempotency key")
            self._sessions[session.session_id] = session
            self._by_key[session.idempotency_key] = session.session_id
            return session

    async def get(self, session_id: str) -> CheckoutSession | None:
        """The session ``session_id``, if there is one."""
        with self._lock:
            return self._sessions.get(session_id)

    async def for_key(self, idempotency_key: str) -> CheckoutSession | None:
        """The session created for ``idempotency_key``, if there is one."""
        with self._lock:
            session_id = self._by_key.get(idempotency_key)
            return None if session_id is None else self._sessions[session_id]

    async def open(self, session_id: str, url: str) -> CheckoutSession:
        """Record the checkout URL (the first one recorded wins)."""
        return self._update(session_id, lambda session: session.opened(url))

    async def refuse(self, session_id: str, vendor_code: str) -> CheckoutSession:
        """Record HesabPay's refusal to create the checkout."""
        return self._update(session_id, lambda session: session.refused(vendor_code))

    async def abandon(self, session_id: str) -> CheckoutSession:
        """Record that the gateway voided the checkout."""
        return self._update(session_id, CheckoutSession.abandoned)

    async def record_payment(self, session_id: str, payment: CheckoutPayment) -> CheckoutSession:
        """Apply a verified webhook outcome."""
        return self._update(session_id, lambda session: session.with_payment(payment))

    async def payments_on(self, day: date) -> list[tuple[CheckoutSession, CheckoutPayment]]:
        """Every successful payment recorded with a time on ``day`` (UTC)."""
        with self._lock:
            return [
                (session, payment)
                for session in self._sessions.values()
                for payment in session.payments
                if payment.succeeded and payment.at.date() == day
            ]

    def _update(self, session_id: str, change: "_Change") -> CheckoutSession:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise KeyError(session_id)
            self._sessions[session_id] = updated = change(session)
            return updated


class _Change(Protocol):
    def __call__(self, session: CheckoutSession, /) -> CheckoutSession: ...


class InMemoryReplayStore:
    """``ReplayStore`` in a dict; forgets sightings older than ``REPLAY_RETENTION``."""

    def __init__(self) -> None:
        """Start with no sighting."""
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[str, datetime]] = {}

    async def sight(self, signature: str, transaction_id: str, signed_at: datetime) -> Sighting:
        """Record the pair and say whether this signature was seen before, and with what."""
        with self._lock:
            horizon = signed_at - REPLAY_RETENTION
            self._seen = {sig: seen for sig, seen in self._seen.items() if seen[1] >= horizon}
            seen = self._seen.get(signature)
            if seen is None:
                self._seen[signature] = (transaction_id, signed_at)
                return "new"
            return "replayed" if seen[0] == transaction_id else "conflict"
