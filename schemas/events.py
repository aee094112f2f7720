"""The events the gateway emits on ``payment-events``, as they appear on the wire.

Each event is the ``data`` of a CloudEvent whose ``ce-subject`` and ordering key are the
payment id, so a consumer sees one payment's events in the order they happened. Every field
is always present in what we publish, optional ones as ``null``. A change that could break
a consumer gets a new type version (``.v2``) instead of an edit; see ``schemas.compat``.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StrictBool, StringConstraints

from schemas.commands import PaymentId, ShortText, Timestamp
from schemas.money import Money
from schemas.processors import Processor

FailureCode = Literal[
    "card_declined",
    "insufficient_funds",
    "expired_card",
    "incorrect_cvc",
    "authentication_required",
    "authentication_failed",
    "fraud_suspected",
    "currency_not_supported",
    "amount_too_large",
    "already_settled",
    "processor_unavailable",
    "processor_error",
    "invalid_request",
    "not_configured",
    "other",
]
"""Why a processor call failed, in the gateway's words rather than the vendor's."""

CustomerMessage = Annotated[str, StringConstraints(min_length=1, max_length=500)]
ProcessorReference = Annotated[str, StringConstraints(min_length=1, max_length=255)]

RejectionReason = Literal[
    "malformed_envelope",
    "malformed_json",
    "unknown_type",
    "schema_invalid",
    "unknown_tenant",
    "tenant_not_serving",
    "card_data",
    "idempotency_conflict",
    "invalid_state",
]
"""Why a command was refused before any money moved."""


class _Published(BaseModel):
    """What every event shares: frozen, closed, and every field present in its schema."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


class _Event(_Published):
    """Fields every payment event carries."""

    payment_id: PaymentId


class _Failure(_Event):
    """Fields every failure event carries."""

    reason_code: FailureCode
    customer_message: CustomerMessage = Field(
        description="Safe to show to the customer; never a vendor's raw text."
    )
    retryable: StrictBool = Field(description="Whether sending the same command again may succeed.")


class PaymentAuthorized(_Event):
    """The funds are reserved (and, with automatic capture, a capture follows)."""

    amount: Money
    processor: Processor
    processor_reference: ProcessorReference = Field(
        description="The vendor's id of the authorization, for reconciliation and support."
    )
    expires_at: Timestamp | None = Field(
        description="When the vendor releases an uncaptured authorization, if known."
    )


class PaymentAuthorizationFailed(_Failure):
    """The payment could not be authorized; no funds are reserved."""

    processor: Processor | None = Field(
        default=None, description="The processor that declined, if one was reached."
    )


class PaymentActionRequired(_Event):
    """The customer must act (a redirect or 3-D Secure) before the authorization completes."""

    action: Literal["redirect", "three_ds"]
    redirect_url: HttpUrl = Field(description="Send the customer's browser here.")
    expires_at: Timestamp | None = Field(
        description="After this the payment expires unless the customer has finished."
    )


class PaymentCaptured(_Event):
    """Funds were captured; ``total_captured`` sums every capture of the payment so far."""

    amount: Money
    total_captured: Money
    final: StrictBool = Field(description="Whether the rest of the authorization is released.")


class PaymentCaptureFailed(_Failure):
    """A capture failed; the authorization, if still valid, is unchanged."""

    amount: Money | None = Field(description="The amount asked for; None for the full amount.")


class PaymentVoided(_Event):
    """The authorization was released without any capture."""

    amount: Money = Field(description="The amount released.")
    reason: Literal[
        "requested_by_customer", "duplicate", "fraudulent", "abandoned", "cancelled", "expired"
    ]


class PaymentVoidFailed(_Failure):
    """A void failed; the authorization, if still valid, is unchanged."""

    amount: Money = Field(description="The amount the void would have released.")


class PaymentRefunded(_Event):
    """Captured funds were returned; ``total_refunded`` sums every refund so far."""

    amount: Money
    total_refunded: Money
    refund_id: ProcessorReference = Field(description="The vendor's id of this refund.")


class PaymentRefundFailed(_Failure):
    """A refund failed; nothing was returned."""

    amount: Money | None = Field(description="The amount asked for; None for the full amount.")


class PaymentExpired(_Event):
    """The payment lapsed: the customer never completed an action, or an authorization ran out."""

    stage: Literal["action_required", "authorized"] = Field(
        description="Where the payment was when it expired."
    )
    expired_at: Timestamp


class PaymentCancelled(_Event):
    """A CancelPayment finished: whatever was reserved or captured has been given back."""

    reason: ShortText
    voided: Money | None = Field(description="The authorization released, if any.")
    refunded: Money | None = Field(description="The captured amount given back, if any.")


class CommandRejected(_Published):
    """A command was refused before it reached a payment: nothing happened because of it."""

    payment_id: PaymentId | None = Field(
        description="The command's payment id, if it could be read and was well formed."
    )
    rejected_message_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="The ce-id of the refused command."
    )
    rejected_type: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        description="The ce-type of the refused command, if it had one."
    )
    reason: RejectionReason
    detail: Annotated[str, StringConstraints(max_length=1000)] = Field(
        description="What was wrong, for the sender's logs; never repeats card data."
    )


class TenantPaymentsReady(_Published):
    """A tenant's processors passed verification (MIGRATION_PLAN 2.3): it may take payments.

    Its ``ce-subject`` and ordering key are the tenant id; tenant-service sets the tenant's
    ``payments_ready`` flag from it.
    """

    tenant_id: Annotated[str, StringConstraints(pattern=r"^tnt_[A-Za-z0-9_]{1,48}$")]
    processors: list[Processor] = Field(
        min_length=1, description="The processors verified: authorize, void, webhook."
    )
    verified_at: Timestamp


Event = (
    PaymentAuthorized
    | PaymentAuthorizationFailed
    | PaymentActionRequired
    | PaymentCaptured
    | PaymentCaptureFailed
    | PaymentVoided
    | PaymentVoidFailed
    | PaymentRefunded
    | PaymentRefundFailed
    | PaymentExpired
    | PaymentCancelled
    | CommandRejected
    | TenantPaymentsReady
)
"""Any event the gateway emits."""
