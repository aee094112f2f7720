"""PayPal's JSON and the gateway's values, both ways: requests, orders and payments.

Amounts cross as ``Money``; PayPal's ``{"currency_code", "value": "12.34"}`` exists only
here (``Money.to_decimal_string`` / ``from_decimal_string``, exact, never a float). A
response that lacks what we need, or has a status we do not know, is ``malformed``: a plain
``ProcessorError``, so that an operation which may have succeeded is never failed on it.

``request_id`` derives every ``PayPal-Request-Id`` (and a refund's ``custom_id``) from the
operation's idempotency key: the key itself, or ``key:suffix`` for the steps of one
operation; longer than PayPal's 108 characters, a SHA-256 of it (``h:<hex>``).
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from processors.errors import ProcessorError
from processors.port import Approved, AuthorizeRequest, Capabilities
from schemas.money import Money, MoneyError, UnknownCurrencyError

Json = dict[str, object]

CURRENCIES: Final = frozenset(
    {"AUD", "CAD", "CHF", "CZK", "DKK", "EUR", "GBP", "HKD", "ILS", "JPY"}
    | {"MXN", "NOK", "NZD", "PLN", "SEK", "SGD", "THB", "USD"}
)
"""PayPal's REST currencies that are in the money table.

Left out: HUF (PayPal takes whole forints only; the table has two decimals) and BRL, MYR,
CNY (PayPal takes them for in-country accounts only).
"""

CAPABILITIES: Final = Capabilities(
    currencies=CURRENCIES,
    payment_method_types=frozenset({"paypal", "card"}),
    manual_capture=True,
    partial_capture=True,
    refunds=True,
    void=True,
)
REQUEST_ID_MAX: Final = 108
AUTHORIZED: Final = frozenset({"CREATED", "CAPTURED", "PARTIALLY_CAPTURED", "VOIDED", "EXPIRED"})
CAPTURED: Final = frozenset({"COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"})


def request_id(key: str, *suffix: str) -> str:
    """The ``PayPal-Request-Id`` of a step of the operation with idempotency key ``key``."""
    value = ":".join((key, *suffix))
    if len(value) <= REQUEST_ID_MAX:
        return value
    return "h:" + hashlib.sha256(value.encode()).hexdigest()


def payment_id_from(custom_id: str | None) -> str | None:
    """Our payment id from a ``custom_id``: the id itself, or a derived key's payment part."""
    if not custom_id or custom_id.startswith("h:"):
        return None
    parts = custom_id.split(":")
    return parts[1] if len(parts) >= 4 else custom_id  # noqa: PLR2004 (tenant:payment:op:seq)


def malformed(what: str) -> ProcessorError:
    """A response we cannot read; the operation may still have taken effect."""
    return ProcessorError(f"malformed PayPal response: {what}", vendor_code="malformed_response")


def amount_json(money: Money) -> Json:
    """``Money`` as PayPal's amount object."""
    return {"currency_code": money.currency, "value": money.to_decimal_string()}


def order_body(request: AuthorizeRequest) -> Json:
    """The ``POST /v2/checkout/orders`` body of an authorization (intent CAPTURE if automatic)."""
    unit: Json = {
        "reference_id": request.payment_id[:256],
        "custom_id": request.payment_id[:127],
        "amount": amount_json(request.amount),
    }
    if request.booking_reference:
        unit["invoice_id"] = request.booking_reference[:127]
    if request.description:
        unit["description"] = request.description[:127]
    body: Json = {
        "intent": "AUTHORIZE" if request.capture == "manual" else "CAPTURE",
        "purchase_units": [unit],
    }
    if request.return_url:
        body["application_context"] = {
            "return_url": request.return_url,
            "cancel_url": request.return_url,
            "shipping_preference": "NO_SHIPPING",
            "user_action": "CONTINUE",
        }
    return body


def obj(data: object, where: str) -> Json:
    """``data`` if it is a JSON object."""
    if not isinstance(data, dict):
        raise malformed(f"{where} is not an object")
    return data


def text(data: Json, name: str, where: str) -> str:
    """The non-empty string ``data[name]``."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise malformed(f"{where}.{name} is missing")
    return value


def optional_text(data: Json, name: str) -> str | None:
    """``data[name]`` if it is a non-empty string."""
    value = data.get(name)
    return value if isinstance(value, str) and value else None


def objects(data: Json, name: str, where: str) -> list[Json]:
    """The list of objects ``data[name]``; empty when absent."""
    value = data.get(name, [])
    if not isinstance(value, list):
        raise malformed(f"{where}.{name} is not a list")
    return [obj(item, f"{where}.{name}[]") for item in value]


def money_in(data: Json, name: str, where: str, *, signed: bool = False) -> Money:
    """The amount object ``data[name]`` as ``Money`` (its magnitude when ``signed``)."""
    amount = obj(data.get(name), f"{where}.{name}")
    value, currency = text(amount, "value", where), text(amount, "currency_code", where)
    if signed and value.startswith("-"):
        value = value[1:]
    try:
        return Money.from_decimal_string(value, currency)
    except (MoneyError, UnknownCurrencyError) as exc:
        raise malformed(f"{where}.{name}: {exc}") from None


def time_in(data: Json, name: str) -> datetime | None:
    """The timestamp ``data[name]``, if present and readable with a time zone."""
    value = optional_text(data, name)
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def link(data: Json, rel: str) -> str | None:
    """The ``href`` of the HATEOAS link ``rel``."""
    value = data.get("links")
    links = value if isinstance(value, list) else []
    for item in links:
        if isinstance(item, dict) and item.get("rel") == rel and isinstance(item.get("href"), str):
            return str(item["href"])
    return None


@dataclass(frozen=True, slots=True)
class Payment:
    """An authorization, capture or refund as PayPal shows it."""

    id: str
    status: str
    amount: Money
    custom_id: str | None
    response_code: str | None
    expires_at: datetime | None
    parent: str | None
    """For a refund: its capture's id (the ``up`` link)."""
    order_id: str | None


def payment(data: object, where: str) -> Payment:
    """Read an authorization, capture or refund."""
    body = obj(data, where)
    response = body.get("processor_response")
    code = response.get("response_code") if isinstance(response, dict) else None
    related = body.get("supplementary_data")
    ids = related.get("related_ids") if isinstance(related, dict) else None
    up = link(body, "up")
    return Payment(
        id=text(body, "id", where),
        status=text(body, "status", where),
        amount=money_in(body, "amount", where),
        custom_id=optional_text(body, "custom_id"),
        response_code=code if isinstance(code, str) else None,
        expires_at=time_in(body, "expiration_time"),
        parent=up.rstrip("/").rsplit("/", 1)[-1] if up else None,
        order_id=optional_text(ids, "order_id") if isinstance(ids, dict) else None,
    )


@dataclass(frozen=True, slots=True)
class Order:
    """An order (one purchase unit) with its payments."""

    id: str
    intent: str
    status: str
    amount: Money
    approve_url: str | None
    authorizations: tuple[Payment, ...]
    captures: tuple[Payment, ...]
    refunds: tuple[Payment, ...]


def order(data: object) -> Order:
    """Read an order."""
    body = obj(data, "order")
    units = objects(body, "purchase_units", "order")
    if len(units) != 1:
        raise malformed("the order does not have exactly one purchase unit")
    unit = units[0]
    payments = unit.get("payments", {})
    found = obj(payments, "order.purchase_units[0].payments")

    def listed(name: str) -> tuple[Payment, ...]:
        return tuple(payment(x, f"order.{name}[]") for x in objects(found, name, "payments"))

    return Order(
        id=text(body, "id", "order"),
        intent=text(body, "intent", "order"),
        status=text(body, "status", "order"),
        amount=money_in(unit, "amount", "order.purchase_units[0]"),
        approve_url=link(body, "approve") or link(body, "payer-action"),
        authorizations=listed("authorizations"),
        captures=listed("captures"),
        refunds=listed("refunds"),
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """PayPal holds the authorization or capture for review: not yet approved or refused."""


@dataclass(frozen=True, slots=True)
class Refused:
    """The authorization was denied, or the capture declined, with this vendor code."""

    vendor_code: str


def completion(done: Order) -> Approved | Pending | Refused:
    """What authorizing (or, intent CAPTURE, capturing) the order came to."""
    authorize = done.intent == "AUTHORIZE"
    made = done.authorizations if authorize else done.captures
    if not made:
        raise malformed(
            f"completed order {done.id} has no {'authorization' if authorize else 'capture'}"
        )
    last = made[-1]
    if last.status in (AUTHORIZED if authorize else CAPTURED):
        return Approved(last.id, last.amount, expires_at=last.expires_at, captured=not authorize)
    if last.status == "PENDING":
        return Pending()
    if last.status in {"DENIED", "DECLINED", "FAILED"}:
        return Refused(last.response_code or last.status)
    raise malformed(f"unknown status {last.status[:40]} of {last.id}")
