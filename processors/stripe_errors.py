"""Stripe's failures, translated at the boundary into ``ProcessorError`` through the taxonomy.

The vendor code asked of ``processors.taxonomy``: a card error's ``decline_code``, else the
error's ``code``, else its type (``idempotency_error``); a code the table does not know
falls back to the bare status (``http_<n>``), and an unknown decline to ``card_declined``.
``Stripe-Should-Retry: true`` makes any answer retryable; ``false`` on a 5xx means Stripe
stored the failure under the key (``stored_5xx``: in doubt). Transport failures are named
by the httpx exception behind the SDK's ``APIConnectionError``: refused or unreachable
(nothing sent, retryable) versus timed out or cut off after sending (in doubt).

``write``: whether the request could change anything at Stripe. A read (retrieve, list)
is never in doubt: what would be in doubt after a write is retryable after a read.

Messages name the operation, the status, the codes and Stripe's request id; they never
hold the API key, nor Stripe's text for an authentication failure (it echoes the key).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import httpx
import stripe

from processors import taxonomy
from processors.errors import DeclinedError, InDoubtError, ProcessorError, RetryableError
from processors.port import OperationKind
from processors.taxonomy import Classification, Outcome, classify, http_status_code, to_error
from schemas.processors import Processor

_TRANSPORT: Final[tuple[tuple[type[Exception], str], ...]] = (
    (httpx.ConnectError, "connect_error"),
    (httpx.ConnectTimeout, "connect_error"),
    (httpx.PoolTimeout, "pool_timeout"),
    (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"),
)
"""httpx failures by name; anything else after the request left is ``connection_lost``."""
_UNSENT: Final = frozenset({"connect_error", "pool_timeout"})
_SECRET_ECHOING: Final = frozenset({401, 403})


@dataclass(frozen=True, slots=True)
class Call:
    """What a failed call was: for classification, messages and logs."""

    kind: OperationKind
    label: str
    write: bool


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` in seconds, when the header gives a number."""
    value = _header(headers, "retry-after")
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


def _vendor_code(exc: stripe.StripeError) -> str:
    error = exc.error

    def detail(name: str) -> object:
        return getattr(error, name, None) if error is not None else None

    code = detail("decline_code") or exc.code or detail("code") or detail("type")
    return str(code) if code else http_status_code(exc.http_status or 0)


def _classify(call: Call, exc: stripe.StripeError, code: str) -> tuple[Classification, str]:
    status = exc.http_status or 0
    should_retry = _header(exc.headers, "stripe-should-retry")
    if should_retry == "true":
        return taxonomy.RETRY, code
    if should_retry == "false" and status >= 500:  # noqa: PLR2004 (a server error)
        return classify(Processor.STRIPE, call.kind, "stored_5xx"), "stored_5xx"
    found = classify(Processor.STRIPE, call.kind, code)
    if found is taxonomy.UNKNOWN and isinstance(exc, stripe.CardError):
        found = classify(Processor.STRIPE, call.kind, "card_declined")
    elif found is taxonomy.UNKNOWN:
        found = classify(Processor.STRIPE, call.kind, http_status_code(status))
    return found, code


def _build(
    call: Call, found: Classification, message: str, vendor_code: str, *, sent: bool = True
) -> ProcessorError:
    if found.outcome is Outcome.IN_DOUBT and not call.write:
        found = taxonomy.RETRY  # a read changed nothing: ask again
    if found.outcome is Outcome.CUSTOMER_ACTION:  # e.g. an off-session authentication_required
        return DeclinedError(message, code=found.failure_code, vendor_code=vendor_code, sent=sent)
    return to_error(found, message, vendor_code=vendor_code, sent=sent)


def translate(call: Call, exc: stripe.StripeError) -> ProcessorError:
    """The ``ProcessorError`` for a failed SDK call."""
    if isinstance(exc, stripe.APIConnectionError):
        return _transport(call, exc)
    status = exc.http_status or 0
    if 200 <= status < 300:  # noqa: PLR2004 (a 2xx whose body the SDK could not read)
        return malformed(call, "the response body is not JSON", status, exc.request_id)
    code = _vendor_code(exc)
    found, code = _classify(call, exc, code)
    detail = "" if status in _SECRET_ECHOING else f": {(exc.user_message or '')[:200]}"
    message = (
        f"stripe {call.label} failed: {type(exc).__name__} (HTTP {status}, code {code}, "
        f"request {exc.request_id or 'unknown'}){detail}"
    )
    error = _build(call, found, message, code)
    if isinstance(error, RetryableError):
        error.retry_after = retry_after(exc.headers)
    return error


def _transport(call: Call, exc: stripe.APIConnectionError) -> ProcessorError:
    cause = exc.__cause__
    code = next((name for kind, name in _TRANSPORT if isinstance(cause, kind)), "connection_lost")
    found = classify(Processor.STRIPE, call.kind, code)
    sent = code not in _UNSENT
    message = f"stripe {call.label} failed: {type(cause).__name__} ({code})"
    return _build(call, found, message, code, sent=sent)


def malformed(
    call: Call, detail: str, status: int | None, request_id: str | None
) -> ProcessorError:
    """A response Stripe would not send: in doubt after a write, retryable after a read."""
    message = (
        f"stripe {call.label}: malformed response ({detail}; HTTP {status or 'unknown'}, "
        f"request {request_id or 'unknown'})"
    )
    return _build(call, taxonomy.IN_DOUBT, message, "malformed_response")


def pending(call: Call, status: str) -> ProcessorError:
    """A write answered with an object still processing: the outcome is not known yet."""
    message = f"stripe {call.label}: the object is still {status[:40]}"
    return _build(call, taxonomy.IN_DOUBT, message, status[:40])


def refused(call: Call, code: str, detail: str) -> ProcessorError:
    """A 2xx answer that is nevertheless a refusal (a failed refund, a 3-D Secure without URL)."""
    found = classify(Processor.STRIPE, call.kind, code)
    message = f"stripe {call.label} refused: {code} ({detail[:200]})"
    return _build(call, found, message, code)


def not_sent(call: Call, code: str, detail: str) -> ProcessorError:
    """A request the adapter refused to send (an amount Stripe cannot take)."""
    found = classify(Processor.STRIPE, call.kind, code)
    return _build(
        call, found, f"stripe {call.label} not sent: {detail}", vendor_code=code, sent=False
    )


def inconclusive(call: Call, detail: str) -> InDoubtError:
    """An inquiry that could not tell: the outcome stays unknown."""
    message = f"stripe {call.label}: inconclusive ({detail})"
    return InDoubtError(message, code=taxonomy.IN_DOUBT.failure_code, vendor_code="inconclusive")
