"""How long things may take: vendor authorization lifetimes, inquiry and redrive delays."""

from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Final

from schemas.processors import Processor

AUTHORIZATION_LIFETIME: Final[Mapping[Processor, timedelta | None]] = MappingProxyType(
    {
        Processor.STRIPE: timedelta(days=7),
        Processor.PAYPAL: timedelta(days=29),
        Processor.HESABPAY: None,
    }
)
"""How long a processor holds an uncaptured authorization when it does not say.

Stripe cancels uncaptured PaymentIntents after 7 days (a card's ``capture_before`` may be
sooner, and wins when the vendor reports it). PayPal honours an authorization for 3 days
and lets it be captured (re-authorizing after the honour period) for 29. HesabPay charges
at once, so nothing is held.
"""

AUTO_VOID_MARGIN: Final = timedelta(hours=1)
"""Under the auto-void policy, void this long before the authorization would lapse."""

REDRIVE_AFTER: Final = timedelta(seconds=90)
"""A pending operation not resolved by then is sent again (same key): its sender died."""

INQUIRY_SCHEDULE: Final = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
)
"""Delays before each status inquiry of an in-doubt operation; after the last, operators
and reconciliation take over (the payment stays in doubt: it is never failed by default)."""
