"""hesabpay-mock's vocabulary: status codes, refusals, accounts, sessions, payment attempts.

Amounts are afghani (AFN) as decimal strings, as HesabPay takes them; ``parse_item``
refuses anything else with status code 12. ``session_row`` is a session as the admin API
and the dashboard export show it.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from pydantic import JsonValue

from schemas.money import Money, MoneyError

SUCCESS: Final = 10
INSUFFICIENT_BALANCE: Final = 11
INVALID_REQUEST: Final = 12
UNAUTHORIZED: Final = 13
CANCELLED: Final = 14
WALLET_REFUSED: Final = 15
INVALID_SIGNATURE: Final = 16
INTERNAL_ERROR: Final = 50

MESSAGES: Final[Mapping[int, str]] = {
    SUCCESS: "Payment successful",
    INSUFFICIENT_BALANCE: "Insufficient balance",
    INVALID_REQUEST: "Invalid request",
    UNAUTHORIZED: "Unauthorized",
    CANCELLED: "Payment cancelled by the customer",
    WALLET_REFUSED: "Payment refused by the wallet",
    INVALID_SIGNATURE: "Invalid signature",
    INTERNAL_ERROR: "Internal server error",
}
CHECKOUT_FAILURES: Final = frozenset({INSUFFICIENT_BALANCE, CANCELLED, WALLET_REFUSED})
"""The status codes a failed checkout attempt can end with."""

CURRENCY: Final = "AFN"
MAX_ITEMS: Final = 50
ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
URL: Final = re.compile(r"https?://\S{1,2000}")


def utc_now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class MockError(Exception):
    """A refusal, answered as HesabPay's JSON: ``{"status_code", "success": false, ...}``."""

    def __init__(self, http_status: int, status_code: int, message: str) -> None:
        """Answer ``http_status`` with ``status_code`` and ``message``."""
        super().__init__(message)
        self.http_status = http_status
        self.status_code = status_code
        self.message = message


def invalid(message: str) -> MockError:
    """A 400 with status code 12 (invalid request)."""
    return MockError(400, INVALID_REQUEST, message)


@dataclass(frozen=True, slots=True)
class Account:
    """A merchant at the mock: its API key and where its webhooks go."""

    merchant_id: str
    api_key: str
    webhook_url: str | None


@dataclass(frozen=True, slots=True)
class Item:
    """One line of a checkout, as the merchant sent it."""

    id: str
    name: str
    price: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One payment attempt at the checkout page."""

    transaction_id: str
    status_code: int
    at: datetime
    sender_account: str


@dataclass(slots=True)
class Session:
    """A checkout session."""

    session_id: str
    merchant_id: str
    items: tuple[Item, ...]
    amount: Money
    created_at: datetime
    email: str | None = None
    redirect_success_url: str | None = None
    redirect_failure_url: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def paid(self) -> bool:
        """Whether an attempt succeeded."""
        return any(attempt.status_code == SUCCESS for attempt in self.attempts)


def text_field(payload: Mapping[str, JsonValue], name: str, pattern: re.Pattern[str]) -> str | None:
    """The optional string ``name`` of ``payload``; 400 unless it matches ``pattern``."""
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise invalid(f"{name} is invalid")
    return value


def parse_item(raw: JsonValue) -> Item:
    """One item of a create-session request; 400 unless id, name and AFN price are valid."""
    if not isinstance(raw, dict):
        raise invalid("each item must be an object")
    item_id, name, price = raw.get("id"), raw.get("name"), raw.get("price")
    if not isinstance(item_id, str) or not ID.fullmatch(item_id):
        raise invalid("item id must be 1-255 letters, digits or _.:-")
    if not isinstance(name, str) or not 0 < len(name) <= 255:  # noqa: PLR2004 (name length)
        raise invalid("item name must be 1-255 characters")
    if not isinstance(price, str):
        raise invalid("item price must be a decimal string such as '150.00'")
    try:
        amount = Money.from_decimal_string(price, CURRENCY)
    except MoneyError:
        raise invalid("item price must be a decimal AFN amount, at most 2 decimals") from None
    if amount.is_zero():
        raise invalid("item price must be positive")
    return Item(item_id, name, price)


def session_row(session: Session) -> dict[str, JsonValue]:
    """A session as the admin API and the dashboard export show it."""
    return {
        "session_id": session.session_id,
        "merchant_id": session.merchant_id,
        "status": "paid" if session.paid else "open",
        "amount": session.amount.to_decimal_string(),
        "currency": CURRENCY,
        "created_at": session.created_at.isoformat(),
        "items": [{"id": i.id, "name": i.name, "price": i.price} for i in session.items],
        "transactions": [
            {
                "transaction_id": a.transaction_id,
                "status_code": a.status_code,
                "success": a.status_code == SUCCESS,
                "amount": session.amount.to_decimal_string(),
                "transaction_date": a.at.isoformat(),
            }
            for a in session.attempts
        ],
    }
