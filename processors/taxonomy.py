"""The error taxonomy as data: (processor, operation, vendor code) -> what the gateway does.

Adapters do not decide retryability in code. They name the condition with a vendor code and
ask ``classify``; ``to_error`` then builds the ``ProcessorError`` whose type carries the
decision. The codes an adapter passes:

- Stripe: the card error's ``decline_code`` when present, else the error's ``code``, else
  the error type (``idempotency_error``); a bare status becomes ``http_<status>``.
- PayPal: the first ``details[].issue``, else the error ``name``; a bare status as above.
- HesabPay: ``status_code_<n>`` from the response body (see the assumptions below).
- Every processor: transport conditions, named in ``TRANSPORT``.

Lookup order: the exact operation, then ``"*"`` (any operation) for the processor, then the
transport rules, then ``UNKNOWN``. An unknown code is TERMINAL ``processor_error``: the
vendor did answer, so the outcome is not in doubt; retrying a refusal we do not understand
would repeat it, and failing over on it could charge twice if the code meant something had
taken effect. Callers should alert on ``UNKNOWN`` so the table grows. IN_DOUBT is never a
reason to try another processor: only a status inquiry, a webhook or reconciliation
resolves it. CUSTOMER_ACTION is not an error: adapters return ``ActionRequired`` for it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    RetryableError,
    TryNextError,
)
from processors.port import OperationKind
from schemas.events import FailureCode
from schemas.processors import Processor


class Outcome(StrEnum):
    """What the gateway does about a failed vendor call."""

    RETRYABLE = "retryable"
    IN_DOUBT = "in_doubt"
    TERMINAL = "terminal"
    CUSTOMER_ACTION = "customer_action"
    TRY_NEXT = "try_next"


@dataclass(frozen=True, slots=True)
class Classification:
    """The gateway's reading of one vendor condition."""

    outcome: Outcome
    failure_code: FailureCode
    customer_message: str


ANY: Final = "*"
Operation = OperationKind | Literal["*"]
RuleKey = tuple[Processor, Operation, str]

CUSTOMER_MESSAGES: Final[Mapping[FailureCode, str]] = MappingProxyType(
    {
        "card_declined": "Your payment was declined. Please use a different payment method.",
        "insufficient_funds": "Your payment was declined for insufficient funds.",
        "expired_card": "Your card has expired. Please use a different card.",
        "incorrect_cvc": "The card's security code is incorrect. Please check it and retry.",
        "authentication_required": "Your bank asks you to confirm this payment.",
        "authentication_failed": "The payment could not be confirmed with your bank.",
        "fraud_suspected": "Your payment was declined. Please use a different payment method.",
        "currency_not_supported": "This payment method cannot be used for this currency.",
        "amount_too_large": "The amount is more than this payment allows.",
        "already_settled": "This payment has already been completed or cancelled.",
        "processor_unavailable": "Payments are briefly unavailable. Please try again shortly.",
        "processor_error": "We could not process your payment. Please try again later.",
        "invalid_request": "We could not process your payment. Please contact the property.",
        "not_configured": "Payments are unavailable for this property. Please contact it.",
        "other": "We could not process your payment. Please try again later.",
    }
)
"""Safe texts per failure code; a vendor's raw text never reaches a customer.

A suspected fraud reads as a plain decline, as the card networks ask.
"""


def _rule(outcome: Outcome, code: FailureCode) -> Classification:
    return Classification(outcome, code, CUSTOMER_MESSAGES[code])


RETRY = _rule(Outcome.RETRYABLE, "processor_unavailable")
IN_DOUBT = _rule(Outcome.IN_DOUBT, "processor_error")
UNKNOWN: Final = _rule(Outcome.TERMINAL, "processor_error")
"""The fallback for a code the table does not know."""

TRANSPORT: Final[Mapping[str, Classification]] = MappingProxyType(
    {
        "connect_error": RETRY,  # refused or unreachable: nothing was sent
        "pool_timeout": RETRY,  # no connection was free: nothing was sent
        "read_timeout": IN_DOUBT,  # sent, no answer: it may have been applied
        "write_timeout": IN_DOUBT,  # part of the request may have reached the vendor
        "connection_lost": IN_DOUBT,  # dropped after sending, before the answer
        "http_5xx": RETRY,  # the vendor failed; the same key is safe to resend
        "http_429": RETRY,  # rate limited: back off, honour Retry-After
        "http_400": _rule(Outcome.TERMINAL, "invalid_request"),
        "http_401": _rule(Outcome.TERMINAL, "not_configured"),  # credentials: alert
        "http_403": _rule(Outcome.TERMINAL, "not_configured"),  # permissions: alert
        "http_404": _rule(Outcome.TERMINAL, "invalid_request"),
    }
)
"""Conditions every processor shares, consulted after the processor's own rules."""

_S, _P, _H = Processor.STRIPE, Processor.PAYPAL, Processor.HESABPAY
_CAPTURE, _REFUND = OperationKind.CAPTURE, OperationKind.REFUND

_RULES: Final[tuple[tuple[RuleKey, Classification], ...]] = (
    # Stripe. 409: a concurrent request with the same key is still running.
    ((_S, ANY, "http_409"), RETRY),
    ((_S, ANY, "idempotency_key_in_use"), RETRY),
    ((_S, ANY, "lock_timeout"), RETRY),
    ((_S, ANY, "rate_limit"), RETRY),
    # A 5xx sent with ``Stripe-Should-Retry: false`` is stored by Stripe's idempotency layer
    # and would be replayed; Stripe documents such 500s as indeterminate.
    ((_S, ANY, "stored_5xx"), IN_DOUBT),
    ((_S, ANY, "card_declined"), _rule(Outcome.TERMINAL, "card_declined")),
    ((_S, ANY, "generic_decline"), _rule(Outcome.TERMINAL, "card_declined")),
    ((_S, ANY, "do_not_honor"), _rule(Outcome.TERMINAL, "card_declined")),
    ((_S, ANY, "insufficient_funds"), _rule(Outcome.TERMINAL, "insufficient_funds")),
    ((_S, ANY, "expired_card"), _rule(Outcome.TERMINAL, "expired_card")),
    ((_S, ANY, "incorrect_cvc"), _rule(Outcome.TERMINAL, "incorrect_cvc")),
    ((_S, ANY, "fraudulent"), _rule(Outcome.TERMINAL, "fraud_suspected")),
    ((_S, ANY, "lost_card"), _rule(Outcome.TERMINAL, "fraud_suspected")),
    ((_S, ANY, "stolen_card"), _rule(Outcome.TERMINAL, "fraud_suspected")),
    (
        (_S, ANY, "authentication_required"),
        _rule(Outcome.CUSTOMER_ACTION, "authentication_required"),
    ),
    ((_S, ANY, "idempotency_error"), _rule(Outcome.TERMINAL, "invalid_request")),  # our bug
    ((_S, ANY, "amount_too_large"), _rule(Outcome.TERMINAL, "amount_too_large")),
    ((_S, ANY, "payment_intent_unexpected_state"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_S, _REFUND, "charge_already_refunded"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_S, _CAPTURE, "charge_already_captured"), _rule(Outcome.TERMINAL, "already_settled")),
    # Refusals another processor may not share: this card or currency, or Stripe's side.
    ((_S, ANY, "currency_not_supported"), _rule(Outcome.TRY_NEXT, "currency_not_supported")),
    ((_S, ANY, "card_not_supported"), _rule(Outcome.TRY_NEXT, "card_declined")),
    ((_S, ANY, "processing_error"), _rule(Outcome.TRY_NEXT, "processor_error")),
    # 3-D Secure failed or was abandoned (the intent's last_payment_error).
    (
        (_S, ANY, "payment_intent_authentication_failure"),
        _rule(Outcome.TERMINAL, "authentication_failed"),
    ),
    # Raised by our adapter: 3-D Secure asked for a redirect the request gave no return_url for.
    ((_S, ANY, "redirect_unavailable"), _rule(Outcome.TERMINAL, "invalid_request")),
    # PayPal (Orders v2 / Payments v2 issues).
    ((_P, ANY, "INSTRUMENT_DECLINED"), _rule(Outcome.TERMINAL, "card_declined")),
    ((_P, ANY, "PAYER_ACTION_REQUIRED"), _rule(Outcome.CUSTOMER_ACTION, "authentication_required")),
    ((_P, ANY, "PREVIOUSLY_CAPTURED"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_P, ANY, "PREVIOUSLY_VOIDED"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_P, ANY, "AUTHORIZATION_ALREADY_CAPTURED"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_P, _REFUND, "CAPTURED_AMOUNT_FULLY_REFUNDED"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_P, _CAPTURE, "MAX_CAPTURE_AMOUNT_EXCEEDED"), _rule(Outcome.TERMINAL, "amount_too_large")),
    ((_P, _REFUND, "REFUND_AMOUNT_EXCEEDED"), _rule(Outcome.TERMINAL, "amount_too_large")),
    ((_P, ANY, "PAYEE_ACCOUNT_RESTRICTED"), _rule(Outcome.TERMINAL, "not_configured")),
    ((_P, ANY, "CURRENCY_NOT_SUPPORTED"), _rule(Outcome.TRY_NEXT, "currency_not_supported")),
    ((_P, ANY, "RATE_LIMIT_REACHED"), RETRY),
    ((_P, ANY, "INTERNAL_SERVER_ERROR"), RETRY),
    # Concurrent duplicates of one PayPal-Request-Id may fail; resending the id is safe.
    ((_P, ANY, "http_409"), RETRY),
    ((_P, ANY, "ORDER_NOT_APPROVED"), _rule(Outcome.CUSTOMER_ACTION, "authentication_required")),
    ((_P, ANY, "CARD_EXPIRED"), _rule(Outcome.TERMINAL, "expired_card")),
    # An authorization DENIED (a capture DECLINED) by the card processor: its response code
    # (processor_response.response_code), else the status itself.
    ((_P, ANY, "5120"), _rule(Outcome.TERMINAL, "insufficient_funds")),
    ((_P, ANY, "5400"), _rule(Outcome.TERMINAL, "expired_card")),
    ((_P, ANY, "DENIED"), _rule(Outcome.TERMINAL, "card_declined")),
    ((_P, ANY, "DECLINED"), _rule(Outcome.TERMINAL, "card_declined")),
    # Raised by our adapter: PayPal replayed the answer to an earlier request with this
    # PayPal-Request-Id whose parameters differ (our bug, as Stripe's idempotency_error).
    ((_P, ANY, "idempotency_mismatch"), _rule(Outcome.TERMINAL, "invalid_request")),
    # HesabPay publishes no list of failure status codes. ASSUMPTION: these placeholders
    # stand until hesabpay-mock or HesabPay's support confirms the real ones.
    ((_H, ANY, "status_code_11"), _rule(Outcome.TERMINAL, "insufficient_funds")),
    ((_H, ANY, "status_code_12"), _rule(Outcome.TERMINAL, "invalid_request")),
    ((_H, ANY, "status_code_13"), _rule(Outcome.TERMINAL, "not_configured")),
    ((_H, ANY, "status_code_50"), RETRY),
    # Raised by our adapter before sending: HesabPay takes AFN only.
    ((_H, ANY, "currency_not_supported"), _rule(Outcome.TRY_NEXT, "currency_not_supported")),
    # hesabpay-mock answers exactly the codes 11, 12, 13 and 50 above and 14, 15 below (its
    # module docstring has the table); they remain ASSUMPTIONS about the real HesabPay.
    ((_H, ANY, "status_code_14"), _rule(Outcome.TERMINAL, "authentication_failed")),  # cancelled
    ((_H, ANY, "status_code_15"), _rule(Outcome.TERMINAL, "card_declined")),  # wallet refused
    # A 2xx we cannot read (an HTML page, truncated JSON): it arrived, its effect is unknown.
    ((_H, ANY, "malformed_response"), IN_DOUBT),
    # Refused by our adapter: what HesabPay cannot do, or what does not fit the checkout.
    ((_H, ANY, "idempotency_error"), _rule(Outcome.TERMINAL, "invalid_request")),
    ((_H, ANY, "payment_method_not_supported"), _rule(Outcome.TRY_NEXT, "invalid_request")),
    ((_H, ANY, "amount_too_small"), _rule(Outcome.TERMINAL, "invalid_request")),
    ((_H, ANY, "unknown_session"), _rule(Outcome.TERMINAL, "invalid_request")),
    ((_H, ANY, "currency_mismatch"), _rule(Outcome.TERMINAL, "invalid_request")),
    ((_H, ANY, "checkout_closed"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_H, ANY, "checkout_paid"), _rule(Outcome.TERMINAL, "already_settled")),
    ((_H, _CAPTURE, "checkout_open"), _rule(Outcome.TERMINAL, "invalid_request")),
    ((_H, _CAPTURE, "amount_exceeds_payment"), _rule(Outcome.TERMINAL, "amount_too_large")),
    ((_H, _CAPTURE, "partial_capture_not_supported"), _rule(Outcome.TERMINAL, "invalid_request")),
    ((_H, _REFUND, "refund_not_supported"), _rule(Outcome.TERMINAL, "invalid_request")),
)


def _freeze(rows: Iterable[tuple[RuleKey, Classification]]) -> Mapping[RuleKey, Classification]:
    table: dict[RuleKey, Classification] = {}
    for key, classification in rows:
        if key in table:
            raise ValueError(f"duplicate taxonomy rule {key}")
        table[key] = classification
    return MappingProxyType(table)


TABLE: Final = _freeze(_RULES)
"""Processor-specific rules: (processor, operation or ``"*"``, vendor code) -> classification."""

_SERVER_ERRORS: Final = range(500, 600)


def http_status_code(status: int) -> str:
    """The taxonomy code of a bare HTTP status: ``http_5xx`` for any 5xx, else ``http_<n>``."""
    return "http_5xx" if status in _SERVER_ERRORS else f"http_{status}"


def classify(
    processor: Processor,
    operation: OperationKind,
    code: str,
    *,
    rules: Mapping[RuleKey, Classification] = TABLE,
) -> Classification:
    """How the gateway treats ``code`` from ``processor`` for ``operation`` under ``rules``."""
    return (
        rules.get((processor, operation, code))
        or rules.get((processor, ANY, code))
        or TRANSPORT.get(code)
        or UNKNOWN
    )


_ERRORS: Final[Mapping[Outcome, type[ProcessorError]]] = MappingProxyType(
    {
        Outcome.RETRYABLE: RetryableError,
        Outcome.IN_DOUBT: InDoubtError,
        Outcome.TERMINAL: DeclinedError,
        Outcome.TRY_NEXT: TryNextError,
    }
)


def to_error(
    classification: Classification,
    message: str,
    *,
    vendor_code: str,
    sent: bool,
    retry_after: float | None = None,
) -> ProcessorError:
    """The exception for a failure; CUSTOMER_ACTION is an ``ActionRequired`` result instead.

    Raises ``ValueError`` for CUSTOMER_ACTION, and for IN_DOUBT with ``sent=False``: a
    request that never left cannot have taken effect.
    """
    if classification.outcome is Outcome.CUSTOMER_ACTION:
        raise ValueError("customer action is a result (ActionRequired), not an error")
    if classification.outcome is Outcome.IN_DOUBT and not sent:
        raise ValueError("a request that was not sent cannot be in doubt")
    error_type = _ERRORS[classification.outcome]
    return error_type(
        message,
        code=classification.failure_code,
        vendor_code=vendor_code,
        sent=sent,
        retry_after=retry_after,
    )
