"""The commands the booking service sends to the gateway, as they appear on the wire.

Each command is the ``data`` of a CloudEvent on ``payment-commands``; the tenant travels in
the ``ce-tenantid`` attribute, not in the body. Every command names its payment and carries
the sender's idempotency key: a redelivered or re-sent command with the same key and body
is answered once, the same key with a different body is a conflict.
"""

import re
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StrictBool,
    StringConstraints,
    field_validator,
)

from schemas.money import Money
from schemas.processors import Processor

PaymentId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    Field(description="The booking service's id for the payment; also the ordering key."),
]
IdempotencyKey = Annotated[
    str,
    StringConstraints(pattern=r"^[!-~]{1,255}$"),
    Field(description="1-255 printable ASCII characters without whitespace."),
]
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339_only(value: object) -> object:
    """Let datetimes and RFC 3339 strings through; refuse epoch numbers and other formats."""
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("expected an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z")


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]
"""An aware date-time, written as RFC 3339 with an offset; naive times and numbers are refused.

Accepted alike from JSON text and from ``json.loads`` output.
"""

ShortText = Annotated[str, StringConstraints(min_length=1, max_length=255)]
BookingReference = Annotated[str, StringConstraints(min_length=1, max_length=64)]
VendorToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,255}$")]
EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$"),
]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]

MAX_METADATA_KEYS = 20


def _positive(amount: Money | None) -> Money | None:
    if amount is not None and amount.is_zero():
        raise ValueError("amount must be greater than zero")
    return amount


class _Command(BaseModel):
    """Fields every command carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_id: PaymentId
    idempotency_key: IdempotencyKey


class PaymentMethod(BaseModel):
    """How the customer pays: a vendor token from the browser, never card data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["card", "paypal", "wallet"]
    token: VendorToken | None = Field(
        default=None, description="The vendor's payment-method token, e.g. 'pm_...'."
    )


class AuthorizePayment(_Command):
    """Reserve ``amount`` on the customer's payment method; capture now or later."""

    amount: Money = Field(description="The amount to authorize; more than zero.")
    payment_method: PaymentMethod
    capture: Literal["manual", "automatic"] = Field(
        default="manual",
        description="'manual' holds the funds for a later CapturePayment; 'automatic' "
        "captures as soon as the authorization succeeds.",
    )
    return_url: HttpUrl | None = Field(
        default=None, description="Where the customer returns after a redirect or 3-D Secure."
    )
    processor: Processor | None = Field(
        default=None, description="A routing hint; the tenant's configuration decides."
    )
    booking_reference: BookingReference
    customer_email: EmailAddress | None = None
    description: ShortText | None = None
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=MAX_METADATA_KEYS,
        description="Up to 20 free-form string pairs, passed to the processor.",
    )

    @field_validator("amount")
    @classmethod
    def _amount_positive(cls, value: Money) -> Money:
        _positive(value)
        return value


class CapturePayment(_Command):
    """Take authorized funds: all of them, or part, possibly in several captures."""

    amount: Money | None = Field(
        default=None, description="The amount to capture; None captures the full remainder."
    )
    final: StrictBool = Field(
        default=True, description="Whether this is the last capture; the rest is released."
    )

    @field_validator("amount")
    @classmethod
    def _amount_positive(cls, value: Money | None) -> Money | None:
        return _positive(value)


class VoidPayment(_Command):
    """Release an authorization that has not been captured."""

    reason: Literal["requested_by_customer", "duplicate", "fraudulent", "abandoned"]


class RefundPayment(_Command):
    """Return captured funds to the customer: all of them, or part."""

    amount: Money | None = Field(
        default=None, description="The amount to refund; None refunds what remains captured."
    )
    reason: ShortText | None = None

    @field_validator("amount")
    @classmethod
    def _amount_positive(cls, value: Money | None) -> Money | None:
        return _positive(value)


class CancelPayment(_Command):
    """Undo the payment from whatever state it is in: void, refund, or stop the attempt."""

    reason: ShortText


Command = AuthorizePayment | CapturePayment | VoidPayment | RefundPayment | CancelPayment
"""Any command the gateway accepts."""
