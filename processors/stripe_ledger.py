"""Refunds, lists and the balance ledger of Stripe, mapped to the gateway's values.

Pure functions, as in ``processors.stripe_mapping``: Stripe's JSON in, our results out,
``MalformedResponseError`` for anything Stripe would not send.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from processors.port import Approved, InquiryResult, NotFound, RefundRequest, StillPending
from processors.stripe_mapping import (
    KEY_METADATA,
    Json,
    MalformedResponseError,
    Refusal,
    currency_of,
    money_of,
    optional,
    required,
    timestamp,
    to_stripe_amount,
)
from schemas.money import Money
from schemas.notifications import VendorTransaction
from schemas.processors import Processor

if TYPE_CHECKING:
    from stripe.params import RefundCreateParams

REFUND_REASONS: Final = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
REFUND_STATUSES: Final = frozenset(
    {"pending", "requires_action", "succeeded", "failed", "canceled"}
)


def refund_params(request: RefundRequest) -> "RefundCreateParams":
    """``POST /v1/refunds`` against a PaymentIntent (or a charge), with the key in metadata."""
    params: RefundCreateParams = {
        "amount": to_stripe_amount(request.amount),
        "metadata": {KEY_METADATA: request.idempotency_key},
    }
    if request.reference.startswith("ch_"):
        params["charge"] = request.reference
    else:
        params["payment_intent"] = request.reference
    if request.reason in REFUND_REASONS:
        params["reason"] = request.reason
    return params


@dataclass(frozen=True, slots=True)
class RefundView:
    """What the gateway reads of a Refund."""

    id: str
    status: str
    amount: Money
    metadata: Mapping[str, str]


def read_refund(data: Json) -> RefundView:
    """The Refund in ``data``; ``MalformedResponseError`` if it is not one."""
    where = "refund"
    status = required(data, "status", str, where)
    if status not in REFUND_STATUSES:
        raise MalformedResponseError(f"{where}.status is not a Refund status")
    metadata = data.get("metadata") or {}
    return RefundView(
        id=required(data, "id", str, where),
        status=status,
        amount=money_of(data, "amount", currency_of(data, where), where),
        metadata={str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, Mapping)
        else {},
    )


def refund_result(refund: RefundView) -> Approved | Refusal:
    """A created refund: accepted (succeeded, or pending at the card network) or refused."""
    if refund.status in {"failed", "canceled"}:
        return Refusal(f"refund_{refund.status}", f"refund {refund.status}")
    return Approved(refund.id, refund.amount)


def refund_inquiry(refund: RefundView | None) -> InquiryResult | Refusal:
    """What became of the refund found by its key (None: never created)."""
    if refund is None:
        return NotFound()
    if refund.status == "requires_action":
        return StillPending()
    return refund_result(refund)


def list_page(data: Json, where: str) -> tuple[list[Json], bool]:
    """The items of a list object and whether more pages follow."""
    items = required(data, "data", list, where)
    if not all(isinstance(item, Mapping) for item in items):
        raise MalformedResponseError(f"{where}.data holds something that is not an object")
    return items, bool(data.get("has_more"))


def with_key(items: list[Json], key: str) -> Json | None:
    """The first object whose metadata carries the idempotency ``key``."""
    for item in items:
        metadata = item.get("metadata")
        if isinstance(metadata, Mapping) and metadata.get(KEY_METADATA) == key:
            return item
    return None


_LINE_KINDS: Final[Mapping[str, Literal["charge", "refund", "fee", "payout", "adjustment"]]] = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "payout": "payout",
    "stripe_fee": "fee",
    "application_fee": "fee",
    "adjustment": "adjustment",
}


def _source_reference(source: object) -> tuple[str | None, str | None]:
    """The reference our records know for a balance transaction's source, and our payment id.

    A charge is known by its PaymentIntent (our authorization reference), a refund by its
    own id (our refund reference); an unexpanded source by its bare id.
    """
    if isinstance(source, str):
        return source, None
    if not isinstance(source, Mapping):
        return None, None
    metadata = source.get("metadata")
    payment_id = metadata.get("payment_id") if isinstance(metadata, Mapping) else None
    if source.get("object") == "charge" and isinstance(source.get("payment_intent"), str):
        return source["payment_intent"], payment_id
    source_id = source.get("id")
    return (source_id if isinstance(source_id, str) else None), payment_id


def vendor_transaction(data: Json) -> VendorTransaction:
    """A balance transaction as a reconciliation line; amounts unsigned, ``kind`` says which way."""
    where = "balance_transaction"
    currency = currency_of(data, where)
    amount = required(data, "amount", int, where)
    fee = optional(data, "fee", int, where)
    reference, payment_id = _source_reference(data.get("source"))
    try:
        return VendorTransaction(
            processor=Processor.STRIPE,
            reference=reference or required(data, "id", str, where),
            kind=_LINE_KINDS.get(str(data.get("type")), "other"),
            amount=Money(minor=abs(amount), currency=currency),
            fee=None if fee is None else Money(minor=abs(fee), currency=currency),
            status=required(data, "status", str, where),
            occurred_at=timestamp(required(data, "created", int, where)),
            payment_id=payment_id if isinstance(payment_id, str) and payment_id else None,
        )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise MalformedResponseError(f"{where} does not make a transaction line") from exc
