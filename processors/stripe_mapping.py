"""Pure mapping between the gateway's requests and results and Stripe's API objects.

No I/O here: our requests become Stripe parameters, and Stripe's JSON (plain dicts, as the
SDK's ``to_dict()`` gives them) becomes our results. A response that is not what Stripe
sends (a missing field, an unknown status, a currency we do not know) raises
``MalformedResponseError`` naming what was wrong; the adapter decides what that means (in
doubt after a write). An answer that is a refusal rather than a result is a ``Refusal``
carrying the vendor code the adapter classifies through the taxonomy.

Amounts: Stripe counts in the currency's minor unit, as ``Money`` does, for every
currency offered here. Three-decimal currencies (BHD, JOD, KWD, OMR, TND) must end in 0
at Stripe; ISK is left out because Stripe still counts it in hundredths.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    Capabilities,
    CaptureRequest,
    Failed,
    InquiryResult,
    NotFound,
    OperationResult,
    StillPending,
    VoidRequest,
)
from schemas.money import CURRENCY_EXPONENTS, Money, MoneyError

if TYPE_CHECKING:
    from stripe.params import (
        PaymentIntentCancelParams,
        PaymentIntentCaptureParams,
        PaymentIntentCreateParams,
    )

Json = Mapping[str, Any]
T = TypeVar("T")

_STRIPE_CURRENCIES: Final = frozenset(
    {"AED", "AFN", "AUD", "BHD", "BRL", "CAD", "CHF", "CLP", "CNY", "CZK", "DKK", "EGP"}
    | {"EUR", "GBP", "HKD", "HUF", "IDR", "ILS", "INR", "JOD", "JPY", "KRW", "KWD", "KZT"}
    | {"MXN", "MYR", "NOK", "NZD", "OMR", "PKR", "PLN", "QAR", "SAR", "SEK", "SGD", "THB"}
    | {"TJS", "TND", "TRY", "UGX", "USD", "UZS", "VND", "XAF", "XOF", "ZAR"}
)
"""Presentment currencies Stripe charges cards in (a subset of its list: the ones we know)."""
THREE_DECIMAL: Final = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
CURRENCIES: Final = frozenset(_STRIPE_CURRENCIES & CURRENCY_EXPONENTS.keys())

CAPABILITIES: Final = Capabilities(
    currencies=CURRENCIES,
    payment_method_types=frozenset({"card"}),
    manual_capture=True,
    partial_capture=True,
    refunds=True,
    void=True,
)

KEY_METADATA: Final = "idempotency_key"
"""Metadata field holding the request's idempotency key, so an inquiry can find the object."""

INTENT_STATUSES: Final = frozenset(
    {
        "requires_payment_method",
        "requires_confirmation",
        "requires_action",
        "processing",
        "requires_capture",
        "canceled",
        "succeeded",
    }
)
VOID_REASONS: Final = frozenset({"abandoned", "duplicate", "fraudulent", "requested_by_customer"})


class MalformedResponseError(ValueError):
    """A response Stripe would not send; the message names the field, never a value."""


class UnsupportedAmountError(ValueError):
    """An amount Stripe cannot take in this currency."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The vendor answered, but not with what was asked: ``code`` for the taxonomy."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Processing:
    """The object is still being processed at Stripe: the outcome is not known yet."""

    status: str


def to_stripe_amount(money: Money) -> int:
    """``money`` in Stripe's integer amount; ``UnsupportedAmountError`` if Stripe cannot."""
    if money.currency not in CURRENCIES:
        raise UnsupportedAmountError(f"Stripe does not charge in {money.currency}")
    if money.currency in THREE_DECIMAL and money.minor % 10:
        raise UnsupportedAmountError(f"Stripe needs {money.currency} amounts ending in 0")
    return money.minor


def required(data: Json, name: str, kind: type[T], where: str) -> T:
    """``data[name]`` if it is a ``kind`` (a bool is no int); else ``MalformedResponseError``."""
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedResponseError(f"{where}.{name} is missing or not a {kind.__name__}")
    return value


def optional(data: Json, name: str, kind: type[T], where: str) -> T | None:
    """``data[name]`` if present and not null, checked as ``required`` does."""
    return None if data.get(name) is None else required(data, name, kind, where)


def money_of(data: Json, name: str, currency: str, where: str) -> Money:
    """The integer amount ``data[name]`` in ``currency``."""
    amount = required(data, name, int, where)
    try:
        return Money(minor=amount, currency=currency)
    except (MoneyError, ValueError) as exc:
        raise MalformedResponseError(f"{where}.{name} is not a valid amount") from exc


def currency_of(data: Json, where: str) -> str:
    """``data["currency"]`` as our upper-case code; it must be in the currency table."""
    code = str(required(data, "currency", str, where)).upper()
    if code not in CURRENCY_EXPONENTS:
        raise MalformedResponseError(f"{where}.currency is not a currency we know")
    return code


def timestamp(value: int) -> datetime:
    """A Stripe unix timestamp as an aware UTC datetime."""
    return datetime.fromtimestamp(value, tz=UTC)


@dataclass(frozen=True, slots=True)
class Intent:
    """What the gateway reads of a PaymentIntent."""

    id: str
    status: str
    amount: Money
    amount_capturable: Money
    amount_received: Money
    metadata: Mapping[str, str]
    has_charge: bool
    capture_before: datetime | None
    redirect_url: str | None
    error_code: str | None
    error_message: str | None


def _capture_before(charge: object) -> datetime | None:
    if not isinstance(charge, Mapping):
        return None
    details = charge.get("payment_method_details") or {}
    card = details.get("card") if isinstance(details, Mapping) else None
    value = card.get("capture_before") if isinstance(card, Mapping) else None
    return timestamp(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _redirect_url(next_action: object) -> str | None:
    if not isinstance(next_action, Mapping):
        return None
    redirect = next_action.get("redirect_to_url")
    url = redirect.get("url") if isinstance(redirect, Mapping) else None
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def read_intent(data: Json) -> Intent:
    """The PaymentIntent in ``data``; ``MalformedResponseError`` if it is not one."""
    where = "payment_intent"
    if data.get("object") not in {"payment_intent", None}:
        raise MalformedResponseError(f"{where}.object is not payment_intent")
    status = required(data, "status", str, where)
    if status not in INTENT_STATUSES:
        raise MalformedResponseError(f"{where}.status is not a PaymentIntent status")
    currency = currency_of(data, where)
    error = data.get("last_payment_error")
    error = error if isinstance(error, Mapping) else {}
    metadata = data.get("metadata") or {}
    charge = data.get("latest_charge")
    return Intent(
        id=required(data, "id", str, where),
        status=status,
        amount=money_of(data, "amount", currency, where),
        amount_capturable=money_of(data, "amount_capturable", currency, where),
        amount_received=money_of(data, "amount_received", currency, where),
        metadata={str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, Mapping)
        else {},
        has_charge=charge is not None,
        capture_before=_capture_before(charge),
        redirect_url=_redirect_url(data.get("next_action")),
        error_code=error.get("decline_code") or error.get("code"),
        error_message=error.get("message"),
    )


def authorize_params(request: AuthorizeRequest) -> "PaymentIntentCreateParams":
    """``POST /v1/payment_intents``: confirmed at once, with metadata to find it again.

    Manual capture asks for multicapture where the account has it, so that a partial
    capture with ``final_capture=false`` leaves the rest capturable (without it Stripe
    releases the rest at the first capture, and a second capture is refused).
    """
    metadata = {
        **request.metadata,
        "payment_id": request.payment_id,
        "booking_reference": request.booking_reference,
        KEY_METADATA: request.idempotency_key,
    }
    params: PaymentIntentCreateParams = {
        "amount": to_stripe_amount(request.amount),
        "currency": request.amount.currency.lower(),
        "capture_method": request.capture,
        "confirm": True,
        "metadata": {key: value for key, value in metadata.items() if value},
        "expand": ["latest_charge"],
    }
    if request.capture == "manual":
        params["payment_method_options"] = {"card": {"request_multicapture": "if_available"}}
    if request.payment_method_token is not None:
        params["payment_method"] = request.payment_method_token
    if request.return_url:
        params["return_url"] = request.return_url
    else:  # without a way back, no redirect-based method may be offered
        params["automatic_payment_methods"] = {"enabled": True, "allow_redirects": "never"}
    if request.description:
        params["description"] = request.description
    if request.customer_email:
        params["receipt_email"] = request.customer_email
    return params


def capture_params(request: CaptureRequest) -> "PaymentIntentCaptureParams":
    """``POST /v1/payment_intents/{id}/capture``; ``final_capture`` only when it is false."""
    params: PaymentIntentCaptureParams = {
        "amount_to_capture": to_stripe_amount(request.amount),
        "expand": ["latest_charge"],
    }
    if not request.final:
        params["final_capture"] = False
    return params


def cancel_params(request: VoidRequest) -> "PaymentIntentCancelParams":
    """``POST /v1/payment_intents/{id}/cancel``; a reason Stripe does not know is ``abandoned``."""
    reason = {"cancelled": "requested_by_customer"}.get(request.reason, request.reason)
    return {"cancellation_reason": reason if reason in VOID_REASONS else "abandoned"}


def _refusal_of(intent: Intent, default: str) -> Refusal:
    return Refusal(intent.error_code or default, intent.error_message or f"status {intent.status}")


def authorization_result(intent: Intent) -> OperationResult | Refusal | Processing:  # noqa: PLR0911 (one return per status)
    """What a create (or a status inquiry about one) says about the authorization."""
    match intent.status:
        case "requires_capture":
            return Approved(intent.id, intent.amount, intent.capture_before, captured=False)
        case "succeeded":
            return Approved(intent.id, intent.amount, None, captured=True)
        case "requires_action" if intent.redirect_url is not None:
            return ActionRequired(intent.id, intent.redirect_url, "three_ds")
        case "requires_action":
            return Refusal("redirect_unavailable", "3-D Secure needs a return_url to redirect")
        case "processing" | "requires_confirmation":
            return Processing(intent.status)
        case "canceled" if intent.has_charge:  # authorized, then voided: the authorization held
            return Approved(intent.id, intent.amount, intent.capture_before, captured=False)
        case "canceled":
            return _refusal_of(intent, "payment_intent_authentication_failure")
        case _:  # requires_payment_method: the confirmation failed
            return _refusal_of(intent, "card_declined")


def capture_result(intent: Intent, amount: Money) -> Approved:
    """The capture of ``amount`` that Stripe answered with ``intent``."""
    if intent.status not in {"requires_capture", "succeeded"}:
        raise MalformedResponseError("payment_intent.status after a capture is not captured")
    if intent.amount_received.minor < amount.minor:
        raise MalformedResponseError("payment_intent.amount_received is less than captured")
    return Approved(intent.id, amount)


def void_result(intent: Intent) -> Approved:
    """The release Stripe answered with ``intent``."""
    if intent.status != "canceled":
        raise MalformedResponseError("payment_intent.status after a cancel is not canceled")
    return Approved(intent.id, intent.amount)


def capture_inquiry(intent: Intent, amount: Money) -> InquiryResult:
    """Whether a capture of ``amount`` took effect on ``intent`` (by its totals)."""
    if intent.amount_received.minor >= amount.minor > 0:
        return Approved(intent.id, amount)
    if intent.status == "processing":
        return StillPending()
    if intent.status in {"canceled", "succeeded"}:
        return Failed("already_settled", "payment_intent_unexpected_state", intent.status)
    return NotFound()


def void_inquiry(intent: Intent) -> InquiryResult:
    """Whether the authorization ``intent`` was released."""
    if intent.status == "canceled":
        return Approved(intent.id, intent.amount)
    if intent.status == "processing":
        return StillPending()
    if intent.status == "succeeded":
        return Failed("already_settled", "payment_intent_unexpected_state", intent.status)
    return NotFound()
