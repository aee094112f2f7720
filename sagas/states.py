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


TERMINAL_STATES: Final = frozenset(
    {PaymentState.VOIDED, PaymentState.REFUNDED, PaymentState.FAILED, PaymentState.EXPIRED}
)
"""States nothing can leave: no money is held and none can move. The database refuses
any update that would take a payment out of one of these."""

SETTLED_STATES: Final = frozenset(
    {
        PaymentState.CAPTURED,
        PaymentState.VOIDED,
        PaymentState.PARTIALLY_REFUNDED,
        PaymentState.REFUNDED,
        PaymentState.FAILED,
        PaymentState.EXPIRED,
    }
)
"""States in which no vendor operation is in flight and no authorization is held.

Captured money may still be refunded from ``captured`` and ``partially_refunded``; a
``partially_captured`` payment still holds the rest of its authorization, so it is open.

A tenant can be soft-deleted only when every payment is in one of these states.
"""

OPEN_STATES: Final = frozenset(PaymentState) - SETTLED_STATES
"""States with money held or an outcome pending: they block a tenant's deletion."""
