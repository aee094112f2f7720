"""The fake PayPal's objects, its error, and the parsing of request fields into them."""

import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from schemas.money import Money, MoneyError, UnknownCurrencyError

Json = dict[str, object]

_REASONS: Final = {
    400: (
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
    ),
    401: (
        "AUTHENTICATION_FAILURE",
        "Authentication failed due to invalid authentication credentials.",
    ),
    404: ("RESOURCE_NOT_FOUND", "The specified resource does not exist."),
    409: ("RESOURCE_CONFLICT", "The server has detected a conflict while processing this request."),
    422: (
        "UNPROCESSABLE_ENTITY",
        (
            "The requested action could not be performed, semantically incorrect, or failed "
            "business validation."
        ),
    ),
    429: ("RATE_LIMIT_REACHED", "Too many requests. Blocked due to rate limiting."),
    500: ("INTERNAL_SERVER_ERROR", "An internal server error has occurred."),
    503: ("SERVICE_UNAVAILABLE", "Service Unavailable."),
}


class PayPalApiError(Exception):
    """An error PayPal answers with its JSON error body (name, message, debug_id, details)."""

    def __init__(self, status: int, issue: str | None = None, description: str = "") -> None:
        """HTTP ``status`` with the detail ``issue`` (PayPal's machine-readable reason)."""
        self.status = status
        self.name, self.message = _REASONS.get(status, ("UNKNOWN_ERROR", "An error occurred."))
        self.issue = issue
        self.description = description
        super().__init__(f"{status} {self.name} {issue or ''}".strip())

    @classmethod
    def invalid(cls, issue: str, description: str) -> "PayPalApiError":
        """A 400 INVALID_REQUEST."""
        return cls(400, issue, description)

    @classmethod
    def not_found(cls, resource_id: str) -> "PayPalApiError":
        """A 404 for an id this account does not have."""
        return cls(
            404, "INVALID_RESOURCE_ID", f"Specified resource ID {resource_id[:40]} does not exist."
        )

    def body(self) -> Json:
        """PayPal's error body."""
        body: Json = {
            "name": self.name,
            "message": self.message,
            "debug_id": secrets.token_hex(7),
        }
        if self.issue is not None:
            body["details"] = [{"issue": self.issue, "description": self.description}]
        return body


def unprocessable(issue: str, description: str) -> PayPalApiError:
    """A 422 UNPROCESSABLE_ENTITY with ``issue``."""
    return PayPalApiError(422, issue, description)


@dataclass(frozen=True, slots=True)
class Decline:
    """How a request is refused.

    ``issue``: a 422 with that issue; ``response_code``: the card processor's refusal (an
    authorization DENIED, a capture DECLINED).
    """

    issue: str | None = None
    response_code: str | None = None


@dataclass(slots=True)
class Order:
    """A Orders v2 order (one purchase unit)."""

    id: str
    owner: str
    intent: str
    status: str
    amount: Money
    reference_id: str | None
    custom_id: str | None
    invoice_id: str | None
    return_url: str | None
    created: datetime
    updated: datetime
    authorizations: list[str] = field(default_factory=list)
    captures: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Authorization:
    """An authorized payment."""

    id: str
    owner: str
    order_id: str
    amount: Money
    status: str
    captured: Money
    custom_id: str | None
    invoice_id: str | None
    created: datetime
    updated: datetime
    expires: datetime
    response_code: str | None = None
    captures: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Capture:
    """A captured payment, of an authorization or of an order with intent CAPTURE."""

    id: str
    owner: str
    order_id: str
    authorization_id: str | None
    amount: Money
    refunded: Money
    final: bool
    status: str
    custom_id: str | None
    invoice_id: str | None
    created: datetime
    updated: datetime
    response_code: str | None = None
    refunds: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Refund:
    """A refund of (part of) a capture."""

    id: str
    owner: str
    capture_id: str
    amount: Money
    status: str
    custom_id: str | None
    invoice_id: str | None
    note: str | None
    created: datetime
    updated: datetime


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the transaction report (``/v1/reporting/transactions``)."""

    id: str
    owner: str
    event_code: str
    amount: Money
    negative: bool
    fee: Money | None
    at: datetime
    parent: str | None
    custom: str | None
    status: str = "S"


@dataclass(slots=True)
class Store:
    """Every object by id; lookups by owner answer 404 for another account's objects."""

    orders: dict[str, Order] = field(default_factory=dict)
    authorizations: dict[str, Authorization] = field(default_factory=dict)
    captures: dict[str, Capture] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    lines: list[Line] = field(default_factory=list)

    def order(self, owner: str, order_id: str) -> Order:
        """The order ``order_id`` of ``owner``."""
        found = self.orders.get(order_id)
        if found is None or found.owner != owner:
            raise PayPalApiError.not_found(order_id)
        return found

    def authorization(self, owner: str, auth_id: str) -> Authorization:
        """The authorization ``auth_id`` of ``owner``."""
        found = self.authorizations.get(auth_id)
        if found is None or found.owner != owner:
            raise PayPalApiError.not_found(auth_id)
        return found

    def capture(self, owner: str, capture_id: str) -> Capture:
        """The capture ``capture_id`` of ``owner``."""
        found = self.captures.get(capture_id)
        if found is None or found.owner != owner:
            raise PayPalApiError.not_found(capture_id)
        return found

    def refund(self, owner: str, refund_id: str) -> Refund:
        """The refund ``refund_id`` of ``owner``."""
        found = self.refunds.get(refund_id)
        if found is None or found.owner != owner:
            raise PayPalApiError.not_found(refund_id)
        return found


def money_of(value: object, where: str) -> Money:
    """``{"currency_code", "value"}`` as ``Money``; PayPal's 400 or 422 when it is not one."""
    if not isinstance(value, dict):
        raise PayPalApiError.invalid("MISSING_REQUIRED_PARAMETER", f"{where} is required")
    currency, amount = value.get("currency_code"), value.get("value")
    if not isinstance(currency, str) or not isinstance(amount, str):
        raise PayPalApiError.invalid("MISSING_REQUIRED_PARAMETER", f"{where} is incomplete")
    try:
        money = Money.from_decimal_string(amount, currency)
    except UnknownCurrencyError:
        raise unprocessable("CURRENCY_NOT_SUPPORTED", f"{where}: currency not supported") from None
    except MoneyError:
        raise unprocessable("DECIMAL_PRECISION", f"{where}: not a valid amount") from None
    if money.is_zero():
        raise PayPalApiError.invalid("INVALID_PARAMETER_VALUE", f"{where} must be positive")
    return money


def optional_text(body: Json, name: str, max_length: int) -> str | None:
    """An optional string field, at most ``max_length`` characters."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayPalApiError.invalid("INVALID_PARAMETER_SYNTAX", f"{name} must be a string")
    if len(value) > max_length:
        raise PayPalApiError.invalid("INVALID_STRING_MAX_LENGTH", f"{name} is too long")
    return value


_ID_ALPHABET: Final = string.ascii_uppercase + string.digits


def new_id() -> str:
    """A PayPal-style 17-character id."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


def return_url_in(body: Json) -> str | None:
    """The return URL in an order request (``application_context`` or ``experience_context``)."""
    context = body.get("application_context")
    if isinstance(context, dict) and isinstance(context.get("return_url"), str):
        return str(context["return_url"])
    source = body.get("payment_source")
    paypal = source.get("paypal") if isinstance(source, dict) else None
    experience = paypal.get("experience_context") if isinstance(paypal, dict) else None
    if isinstance(experience, dict) and isinstance(experience.get("return_url"), str):
        return str(experience["return_url"])
    return None
