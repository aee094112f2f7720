"""Vendor webhooks, normalized: what a processor told us, in the gateway's words.

An adapter verifies a webhook's signature and turns it into a ``Notification``; the
webhook endpoint stores it in the central inbox (unique per processor and vendor event
id) and the worker applies it to its payment through the same saga guard as commands.
Amounts are ``Money``; a vendor's own decimal strings never leave its adapter.
"""

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.money import Money
from schemas.processors import Processor

VendorId = Annotated[str, StringConstraints(min_length=1, max_length=255)]

NotificationKind = Literal[
    "authorized",
    "action_required",
    "approved",
    "authorization_failed",
    "captured",
    "capture_failed",
    "voided",
    "refunded",
    "refund_failed",
    "expired",
    "ignored",
]
"""What happened. ``approved``: the customer finished the action an authorization waited
for (the gateway then asks the processor to go on); ``ignored``: a verified event the
gateway does not act on."""


class Notification(BaseModel):
    """One verified vendor event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    processor: Processor
    event_id: VendorId = Field(description="The vendor's id of the event (its dedupe key).")
    vendor_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    kind: NotificationKind
    reference: VendorId | None = Field(
        description="The vendor's id of the object the event is about (intent, "
        "authorization, capture, refund, transaction)."
    )
    authorization_reference: VendorId | None = Field(
        default=None, description="The authorization a capture or refund belongs to."
    )
    payment_id: VendorId | None = Field(
        default=None, description="Our payment id, when the vendor echoes it back."
    )
    amount: Money | None = None
    account: VendorId | None = Field(
        default=None, description="The connected account (Stripe Connect) it came from."
    )
    occurred_at: AwareDatetime


class VendorTransaction(BaseModel):
    """One line of a processor's transaction list, for daily reconciliation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    processor: Processor
    reference: VendorId
    kind: Literal["charge", "capture", "refund", "fee", "payout", "adjustment", "other"]
    amount: Money
    fee: Money | None = None
    status: Annotated[str, StringConstraints(min_length=1, max_length=50)]
    occurred_at: AwareDatetime
    payment_id: VendorId | None = None
