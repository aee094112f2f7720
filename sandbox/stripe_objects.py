"""The objects the fake Stripe keeps, and their JSON as Stripe's API renders them.

Amounts are integers in the currency's smallest unit as Stripe counts it; currencies are
lower-case, as Stripe sends them. Only the fields the gateway and the SDK read are kept,
plus enough of the rest that a response looks like Stripe's.
"""

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Final

from sandbox.stripe_wire import Params, StripeApiError, as_int, as_metadata, as_str, new_id

HOLD_SECONDS: Final = 7 * 24 * 3600
"""How long Stripe keeps an uncaptured card authorization (``capture_before``)."""
FEE_PERCENT_BP: Final = 290
"""The sandbox's card fee: 2.9 % (in basis points) plus ``FEE_FIXED``."""
FEE_FIXED: Final = 30


def fee_of(amount: int) -> int:
    """The fee the sandbox takes on a captured ``amount``."""
    return amount * FEE_PERCENT_BP // 10_000 + FEE_FIXED


@dataclass(slots=True)
class Charge:
    """The charge a confirmed PaymentIntent made."""

    id: str
    intent_id: str
    amount: int
    currency: str
    created: int
    metadata: dict[str, str]
    amount_captured: int = 0
    amount_refunded: int = 0
    captured: bool = False
    status: str = "succeeded"
    capture_before: int | None = None


@dataclass(slots=True)
class Intent:
    """A PaymentIntent."""

    id: str
    account: str | None
    amount: int
    currency: str
    capture_method: str
    status: str
    metadata: dict[str, str]
    created: int
    payment_method: str | None
    return_url: str | None
    amount_capturable: int = 0
    amount_received: int = 0
    charge: Charge | None = None
    last_payment_error: Params | None = None
    next_action: Params | None = None
    cancellation_reason: str | None = None
    canceled_at: int | None = None


@dataclass(slots=True)
class Refund:
    """A refund of (part of) a PaymentIntent's charge."""

    id: str
    intent_id: str
    charge_id: str
    amount: int
    currency: str
    created: int
    metadata: dict[str, str]
    reason: str | None
    status: str = "succeeded"


@dataclass(slots=True)
class BalanceTransaction:
    """A movement of the account's balance: a captured charge or a refund."""

    id: str
    amount: int
    fee: int
    currency: str
    created: int
    type: str
    source: str
    status: str = "pending"


@dataclass(slots=True)
class Event:
    """A webhook event: what happened to which object, in which connected account."""

    id: str
    type: str
    created: int
    account: str | None
    object: Params
    object_id: str
    request: Params = field(default_factory=dict)


def charge_json(charge: Charge) -> Params:
    """A charge as ``GET /v1/charges/{id}`` renders it."""
    card: Params = {"brand": "visa", "network": "visa", "capture_before": charge.capture_before}
    return {
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_captured": charge.amount_captured,
        "amount_refunded": charge.amount_refunded,
        "captured": charge.captured,
        "currency": charge.currency,
        "created": charge.created,
        "livemode": False,
        "metadata": dict(charge.metadata),
        "paid": charge.status == "succeeded",
        "payment_intent": charge.intent_id,
        "refunded": charge.amount_refunded == charge.amount_captured > 0,
        "status": charge.status,
        "payment_method_details": {"type": "card", "card": card},
    }


def intent_json(intent: Intent, *, expand_charge: bool = False) -> Params:
    """A PaymentIntent as the API renders it; ``latest_charge`` inline when expanded."""
    charge = intent.charge
    latest: object = None
    if charge is not None:
        latest = charge_json(charge) if expand_charge else charge.id
    return {
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": intent.amount_capturable,
        "amount_received": intent.amount_received,
        "canceled_at": intent.canceled_at,
        "cancellation_reason": intent.cancellation_reason,
        "capture_method": intent.capture_method,
        "client_secret": f"{intent.id}_secret_sandbox",
        "confirmation_method": "automatic",
        "created": intent.created,
        "currency": intent.currency,
        "last_payment_error": intent.last_payment_error,
        "latest_charge": latest,
        "livemode": False,
        "metadata": dict(intent.metadata),
        "next_action": intent.next_action,
        "payment_method": intent.payment_method,
        "payment_method_types": ["card"],
        "status": intent.status,
    }


def refund_json(refund: Refund) -> Params:
    """A refund as the API renders it."""
    return {
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "charge": refund.charge_id,
        "created": refund.created,
        "currency": refund.currency,
        "metadata": dict(refund.metadata),
        "payment_intent": refund.intent_id,
        "reason": refund.reason,
        "status": refund.status,
    }


def balance_transaction_json(txn: BalanceTransaction, source: Params | None = None) -> Params:
    """A balance transaction; ``source`` inline when expanded, else its id."""
    category = "refund" if txn.type == "refund" else "charge"
    return {
        "id": txn.id,
        "object": "balance_transaction",
        "amount": txn.amount,
        "available_on": txn.created + 2 * 24 * 3600,
        "created": txn.created,
        "currency": txn.currency,
        "description": None,
        "fee": txn.fee,
        "net": txn.amount - txn.fee,
        "reporting_category": category,
        "source": source if source is not None else txn.source,
        "status": txn.status,
        "type": txn.type,
    }


def event_json(event: Event) -> Params:
    """An event as delivered to a webhook endpoint."""
    body: Params = {
        "id": event.id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": event.created,
        "data": {"object": event.object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": event.request or {"id": None, "idempotency_key": None},
        "type": event.type,
    }
    if event.account is not None:
        body["account"] = event.account
    return body


def page(items: list[Params], *, url: str, limit: int, starting_after: str | None) -> Params:
    """One page of a list, newest first, after the object ``starting_after``."""
    if starting_after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(starting_after) + 1 :] if starting_after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": url}


def new_intent(
    params: Params, account: str | None, now: int, methods: Collection[str], *, confirm: bool
) -> Intent:
    """A PaymentIntent from ``POST /v1/payment_intents`` parameters; 400 if they are invalid."""
    amount = as_int(params, "amount", required=True) or 0
    currency = (as_str(params, "currency", required=True) or "").lower()
    if amount < 1:
        raise StripeApiError.invalid("Amount must be at least 1.", param="amount")
    if len(currency) != 3 or not currency.isalpha():  # noqa: PLR2004 (ISO 4217 length)
        raise StripeApiError.invalid(f"Invalid currency: {currency[:10]}.", param="currency")
    capture_method = as_str(params, "capture_method") or "automatic"
    if capture_method not in {"automatic", "automatic_async", "manual"}:
        raise StripeApiError.invalid("Invalid capture_method.", param="capture_method")
    method = as_str(params, "payment_method")
    if confirm and method is None:
        raise StripeApiError.invalid(
            "You must provide a payment_method to confirm.", param="payment_method"
        )
    if method is not None and method not in methods:
        raise StripeApiError.missing("PaymentMethod", method, "payment_method")
    return Intent(
        id=new_id("pi"),
        account=account,
        amount=amount,
        currency=currency,
        capture_method=capture_method,
        status="requires_confirmation" if method else "requires_payment_method",
        metadata=as_metadata(params),
        created=now,
        payment_method=method,
        return_url=as_str(params, "return_url"),
    )


def unexpected_state(intent: Intent, action: str, allowed: str) -> StripeApiError:
    """400 ``payment_intent_unexpected_state``: ``action`` needs one of ``allowed``."""
    return StripeApiError(
        400,
        "invalid_request_error",
        f"This PaymentIntent could not be {action} because it has a status of "
        f"{intent.status}. Only a PaymentIntent with one of the following statuses may be "
        f"acted upon: {allowed}.",
        code="payment_intent_unexpected_state",
        payment_intent=intent_json(intent),
    )
