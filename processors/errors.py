"""Processor errors: what the caller may do is part of the exception's type.

::

    ProcessorError                  a vendor call did not succeed
    ├── RetryableError              nothing took effect; retry with the same key (5xx, 429,
    │                               connection refused, Stripe 409)
    │   └── ProcessorUnavailable    the circuit breaker is open: nothing was sent
    ├── InDoubtError                the request may have taken effect (read timeout after
    │                               sending); resolve by inquiry, never by a retry elsewhere
    └── DeclinedError               terminal for this request: declines, invalid requests,
        │                           configuration (401/403), wrong state
        └── TryNextError            terminal here, but another processor may succeed

Every error carries the gateway's ``FailureCode``, the vendor's own code for support, and
``sent``: whether the request may have reached the vendor. Messages never contain a
credential or a customer's payment details.
"""

from typing import Literal

from schemas.events import FailureCode


class ProcessorError(Exception):
    """A vendor call that did not succeed."""

    code: FailureCode = "processor_error"

    def __init__(
        self,
        message: str,
        *,
        code: FailureCode | None = None,
        vendor_code: str = "",
        sent: bool = True,
        retry_after: float | None = None,
    ) -> None:
        """Describe the failure; ``message`` is for logs and operators."""
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.vendor_code = vendor_code
        self.sent = sent
        self.retry_after = retry_after


class RetryableError(ProcessorError):
    """Nothing took effect; the same request with the same key may succeed later."""

    code: FailureCode = "processor_unavailable"


class ProcessorUnavailable(RetryableError):  # noqa: N818 (a state, named as the breaker reports it)
    """The circuit breaker for this tenant and processor is open; nothing was sent."""


class InDoubtError(ProcessorError):
    """The request may have taken effect: the outcome is unknown."""


class DeclinedError(ProcessorError):
    """The vendor refused this request; repeating it will not change the answer."""

    code: FailureCode = "card_declined"


class TryNextError(DeclinedError):
    """Refused by this processor in a way another processor might not refuse."""

    code: FailureCode = "processor_error"


WebhookRejection = Literal["bad_signature", "stale", "replayed", "malformed", "mismatch"]


class WebhookRejected(Exception):  # noqa: N818 (a verdict on a request, not our failure)
    """A webhook that must not be stored: the endpoint answers 400 and keeps nothing.

    ``reason`` is for logs and metrics; the message never repeats a secret or the body.
    """

    def __init__(self, reason: WebhookRejection, message: str) -> None:
        """Reject for ``reason``."""
        super().__init__(message)
        self.reason = reason
