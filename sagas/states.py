"""Payment saga states and the groups the rest of the service reasons about."""

from enum import StrEnum
from typing import Final


class PaymentState(StrEnum):
    """Where a payment stands; the values match the CHECK constraint on ``payments.state``."""

    REQUESTED = "requested"
    AUTHORIZING = "authorizing"
    REQUIRES_ACTION = "requires_action"
    AUTHORIZED = "authorized"
    CAPTURING = "capturing"
    CAPTURED = "captured"
    PARTIALLY_CAPTURED = "partially_captured"
    VOIDING = "voiding"
    VOIDED = "voided"
    REFUNDING = "refunding"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    EXPIRED = "expired"
    IN_DOUBT = "in_doubt"
    COMPENSATION_FAILED = "compensation_failed"


SETTLED_STATES: Final = frozenset(
    {
        PaymentState.CAPTURED,
        PaymentState.PARTIALLY_CAPTURED,
        PaymentState.VOIDED,
        PaymentState.PARTIALLY_REFUNDED,
        PaymentState.REFUNDED,
        PaymentState.FAILED,
        PaymentState.EXPIRED,
    }
)
"""States in which no vendor operation is in flight and no money is held.

A tenant can be soft-deleted only when every payment is in one of these states.
"""

OPEN_STATES: Final = frozenset(PaymentState) - SETTLED_STATES
"""States with money held or an outcome pending: they block a tenant's deletion."""
