"""What hesabpay-mock holds: merchant accounts, checkout sessions, their payment attempts.

A webhook is signed with HMAC-SHA256 over ``"<transaction_id>|<timestamp>"`` with the
mock's own secret, which no client ever learns: a signature is checked by asking the mock
(``verify``). A session stays open after a failed attempt (the customer may try again) and
is paid by its first successful one. One lock guards everything: tests look in from
another thread.
"""

import hashlib
import hmac
import re
import secrets
import threading
from datetime import date
from typing import Final

from pydantic import JsonValue

from sandbox.hesabpay_mock_model import (
    CHECKOUT_FAILURES,
    CURRENCY,
    ID,
    INVALID_REQUEST,
    MAX_ITEMS,
    MESSAGES,
    SUCCESS,
    UNAUTHORIZED,
    URL,
    Account,
    Attempt,
    MockError,
    Session,
    invalid,
    parse_item,
    session_row,
    text_field,
    utc_now,
)
from schemas.clock import Clock
from schemas.money import Money

_UNIX_SECONDS: Final = re.compile(r"[0-9]{1,12}")
_SIGNATURE: Final = re.compile(r"[0-9a-fA-F]{64}")


class HesabPayMockState:
    """The mock's accounts and sessions."""

    def __init__(self, signing_secret: str, *, clock: Clock = utc_now) -> None:
        """Sign webhooks with ``signing_secret``; stamp times with ``clock``."""
        self._secret = signing_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._sessions: dict[str, Session] = {}
        self.deliveries: list[dict[str, JsonValue]] = []

    def add_account(self, merchant_id: str, api_key: str, webhook_url: str | None) -> None:
        """Create or replace the merchant ``merchant_id``."""
        if not ID.fullmatch(merchant_id) or not api_key:
            raise invalid("merchant_id and api_key are required")
        if webhook_url is not None and not URL.fullmatch(webhook_url):
            raise invalid("webhook_url must be an http(s) URL")
        with self._lock:
            others = {k: a for k, a in self._accounts.items() if a.merchant_id != merchant_id}
            self._accounts = {**others, api_key: Account(merchant_id, api_key, webhook_url)}

    def account_for(self, authorization: str | None) -> Account:
        """The merchant whose ``Authorization: API-KEY <key>`` header this is; 401 otherwise."""
        scheme, _, key = (authorization or "").partition(" ")
        with self._lock:
            account = self._accounts.get(key.strip()) if scheme == "API-KEY" else None
        if account is None:
            raise MockError(401, UNAUTHORIZED, MESSAGES[UNAUTHORIZED])
        return account

    def webhook_url(self, merchant_id: str) -> str | None:
        """Where the merchant's webhooks go, if anywhere."""
        with self._lock:
            urls = [a.webhook_url for a in self._accounts.values() if a.merchant_id == merchant_id]
        return urls[0] if urls else None

    def create_session(self, account: Account, payload: JsonValue) -> Session:
        """A new checkout for ``payload`` (items, email, redirect URLs); 400 if invalid."""
        if not isinstance(payload, dict):
            raise invalid("the body must be a JSON object")
        raw_items = payload.get("items")
        if not isinstance(raw_items, list) or not 0 < len(raw_items) <= MAX_ITEMS:
            raise invalid(f"items must be a list of 1-{MAX_ITEMS} items")
        items = tuple(parse_item(raw) for raw in raw_items)
        total = Money.zero(CURRENCY)
        for item in items:
            total += Money.from_decimal_string(item.price, CURRENCY)
        email = payload.get("email")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise invalid("email is invalid")
        session = Session(
            session_id=f"cs_{secrets.token_hex(12)}",
            merchant_id=account.merchant_id,
            items=items,
            amount=total,
            created_at=self._clock(),
            email=email,
            redirect_success_url=text_field(payload, "redirect_success_url", URL),
            redirect_failure_url=text_field(payload, "redirect_failure_url", URL),
        )
        with self._lock:
            self._sessions[session.session_id] = session
        return session

    def session(self, session_id: str) -> Session:
        """The session ``session_id``; 404 if there is none."""
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise MockError(404, INVALID_REQUEST, "no such checkout session")
        return session

    def attempt(self, session_id: str, status_code: int) -> Attempt:
        """The customer tries to pay: ``status_code`` 10 pays, 11, 14 or 15 fail; 409 if paid."""
        if status_code != SUCCESS and status_code not in CHECKOUT_FAILURES:
            raise invalid(f"a checkout ends with 10 or one of {sorted(CHECKOUT_FAILURES)}")
        session = self.session(session_id)
        attempt = Attempt(
            transaction_id=f"hp_txn_{secrets.token_hex(10)}",
            status_code=status_code,
            at=self._clock(),
            sender_account=f"07{secrets.randbelow(10**8):08d}",
        )
        with self._lock:
            if session.paid:
                raise MockError(409, INVALID_REQUEST, "the checkout is already paid")
            session.attempts.append(attempt)
        return attempt

    def sign(self, transaction_id: str, timestamp: str, secret: str | None = None) -> str:
        """The webhook signature: hex HMAC-SHA256 of ``"<transaction_id>|<timestamp>"``."""
        key = (secret if secret is not None else self._secret).encode()
        return hmac.new(key, f"{transaction_id}|{timestamp}".encode(), hashlib.sha256).hexdigest()

    def webhook(
        self,
        session_id: str,
        transaction_id: str | None = None,
        *,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> dict[str, JsonValue]:
        """The signed webhook about an attempt (the latest by default), signed now or then."""
        session = self.session(session_id)
        with self._lock:
            attempts = [a for a in session.attempts if transaction_id in {None, a.transaction_id}]
        if not attempts:
            raise MockError(409, INVALID_REQUEST, "no such payment attempt on this checkout")
        attempt = attempts[-1]
        stamp = str(timestamp if timestamp is not None else int(self._clock().timestamp()))
        return {
            "status_code": attempt.status_code,
            "success": attempt.status_code == SUCCESS,
            "message": MESSAGES[attempt.status_code],
            "sender_account": attempt.sender_account,
            "transaction_id": attempt.transaction_id,
            "amount": session.amount.to_decimal_string(),
            "memo": session.items[0].id,
            "signature": self.sign(attempt.transaction_id, stamp, secret),
            "timestamp": stamp,
            "transaction_date": attempt.at.isoformat(),
            "items": [{"id": i.id, "name": i.name, "price": i.price} for i in session.items],
            "email": session.email or "",
        }

    def verify(self, account: Account, payload: JsonValue) -> bool:
        """Whether ``{"signature", "timestamp"}`` signs one of the merchant's transactions."""
        if not isinstance(payload, dict):
            raise invalid("the body must be a JSON object")
        signature, timestamp = payload.get("signature"), payload.get("timestamp")
        if not isinstance(signature, str) or not _SIGNATURE.fullmatch(signature):
            raise invalid("signature must be 64 hex digits")
        if not isinstance(timestamp, str) or not _UNIX_SECONDS.fullmatch(timestamp):
            raise invalid("timestamp must be unix seconds as a string")
        with self._lock:
            transactions = [
                attempt.transaction_id
                for session in self._sessions.values()
                if session.merchant_id == account.merchant_id
                for attempt in session.attempts
            ]
        return any(
            hmac.compare_digest(self.sign(tid, timestamp), signature.lower())
            for tid in transactions
        )

    def export(
        self, *, merchant_id: str | None, item_id: str | None, day: date | None
    ) -> list[dict[str, JsonValue]]:
        """Sessions as a dashboard export lists them, oldest first, filtered as asked."""
        with self._lock:
            sessions = sorted(self._sessions.values(), key=lambda s: s.created_at)
        return [
            session_row(session)
            for session in sessions
            if merchant_id in {None, session.merchant_id}
            and (item_id is None or any(item.id == item_id for item in session.items))
            and (day is None or any(a.at.date() == day for a in session.attempts))
        ]

    def record_delivery(self, entry: dict[str, JsonValue]) -> None:
        """Log one webhook delivery attempt."""
        with self._lock:
            self.deliveries.append(entry)
