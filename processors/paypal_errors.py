"""PayPal's failures as the gateway's errors, through ``processors.taxonomy``.

A refusal is classified by its first ``details[].issue``, else its ``name`` (or OAuth's
``error``), else its HTTP status: the first of these the table knows, as the taxonomy's
notes for PayPal say. A transport failure is classified by its condition. ``Call`` records
whether a POST of the operation may have reached PayPal, and every error made for the call
says so (``sent``). Messages name the request and PayPal's ``debug_id``, never a
credential.
"""

import re
from dataclasses import dataclass
from typing import Final

import httpx

from processors.errors import DeclinedError, ProcessorError
from processors.port import OperationKind
from processors.taxonomy import (
    UNKNOWN,
    Classification,
    Outcome,
    classify,
    http_status_code,
    to_error,
)
from schemas.processors import Processor

_PAYPAL: Final = Processor.PAYPAL
_REFERENCE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PayerActionNeededError(DeclinedError):
    """PayPal wants the payer first (an order not approved); the adapter makes it a result."""

    code = "authentication_required"


@dataclass(slots=True)
class Call:
    """One operation's requests: whether any POST of it may have reached PayPal."""

    op: OperationKind
    posted: bool = False


def condition_of(exc: httpx.TransportError) -> str:
    """The taxonomy's name for a transport failure."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect_error"
    if isinstance(exc, httpx.PoolTimeout):
        return "pool_timeout"
    if isinstance(exc, httpx.ReadTimeout):
        return "read_timeout"
    if isinstance(exc, httpx.WriteTimeout):
        return "write_timeout"
    return "connection_lost"


def transport_error(call: Call, what: str, condition: str) -> ProcessorError:
    """The error for a POST that failed on the way (``call.posted`` already updated)."""
    return to_error(
        classify(_PAYPAL, call.op, condition),
        f"PayPal {what}: {condition}",
        vendor_code=condition,
        sent=call.posted,
    )


def read_failed(call: Call, what: str, condition: str) -> ProcessorError:
    """A read (GET, token) that failed changed nothing: retryable, whatever the condition."""
    return to_error(
        classify(_PAYPAL, call.op, "connect_error"),
        f"PayPal {what}: {condition}",
        vendor_code=condition,
        sent=call.posted,
    )


def not_configured(call: Call, message: str, vendor_code: str) -> ProcessorError:
    """The credentials are refused: a configuration problem to alert on."""
    return to_error(
        classify(_PAYPAL, call.op, "http_401"), message, vendor_code=vendor_code, sent=call.posted
    )


def refusal(call: Call, what: str, response: httpx.Response) -> tuple[ProcessorError, str | None]:
    """The error for PayPal's error answer, and the answer's ``debug_id``."""
    issue, name, debug_id = _error_fields(response)
    codes = [c for c in (issue, name, http_status_code(response.status_code)) if c]
    classification, code = _known(call.op, codes)
    message = f"PayPal refused {what}: {response.status_code} {code}"
    if debug_id:
        message += f" (debug_id {debug_id})"
    if classification.outcome is Outcome.CUSTOMER_ACTION:
        return PayerActionNeededError(message, vendor_code=code, sent=call.posted), debug_id
    error = to_error(
        classification,
        message,
        vendor_code=code,
        sent=call.posted,
        retry_after=_retry_after(response),
    )
    return error, debug_id


def refused(call: Call, vendor_code: str) -> ProcessorError:
    """The error for a refusal PayPal reported as a status (an authorization DENIED, ...)."""
    return to_error(
        classify(_PAYPAL, call.op, vendor_code),
        f"PayPal refused the {call.op}: {vendor_code}",
        vendor_code=vendor_code,
        sent=call.posted,
    )


def mismatch(call: Call) -> ProcessorError:
    """PayPal replayed the answer to an earlier request with our id but other parameters."""
    return to_error(
        classify(_PAYPAL, call.op, "idempotency_mismatch"),
        "PayPal-Request-Id reused with other parameters: PayPal answered the first request",
        vendor_code="idempotency_mismatch",
        sent=call.posted,
    )


def segment(reference: str, call: Call) -> str:
    """``reference`` as a URL path segment; refused unless it looks like a PayPal id."""
    if _REFERENCE.fullmatch(reference) is None:
        raise to_error(
            classify(_PAYPAL, call.op, "http_400"),
            "not a PayPal id",
            vendor_code="invalid_reference",
            sent=call.posted,
        )
    return reference


def _known(op: OperationKind, codes: list[str]) -> tuple[Classification, str]:
    """The first of ``codes`` the taxonomy knows, or UNKNOWN with the first code."""
    for code in codes:
        classification = classify(_PAYPAL, op, code)
        if classification is not UNKNOWN:
            return classification, code
    return UNKNOWN, codes[0]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    """PayPal's error body: (first ``details[].issue``, ``name``, ``debug_id``), as present."""
    try:
        body = response.json()
    except ValueError:
        return None, None, None
    if not isinstance(body, dict):
        return None, None, None
    details = body.get("details")
    first = details[0] if isinstance(details, list) and details else None
    issue = first.get("issue") if isinstance(first, dict) else None
    name = body.get("name") or body.get("error")
    debug_id = body.get("debug_id")
    return (
        issue if isinstance(issue, str) else None,
        name if isinstance(name, str) else None,
        debug_id[:40] if isinstance(debug_id, str) else None,
    )
