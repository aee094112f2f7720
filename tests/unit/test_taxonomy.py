"""The error taxonomy: vendor conditions to outcomes, failure codes and exception types."""

from typing import get_args

import pytest

from processors import taxonomy
from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    RetryableError,
    TryNextError,
)
from processors.port import OperationKind
from processors.routing import should_try_next
from processors.taxonomy import (
    CUSTOMER_MESSAGES,
    TABLE,
    TRANSPORT,
    UNKNOWN,
    Classification,
    Outcome,
    classify,
    http_status_code,
    to_error,
)
from schemas.events import FailureCode
from schemas.processors import Processor

STRIPE, PAYPAL, HESABPAY = Processor.STRIPE, Processor.PAYPAL, Processor.HESABPAY
AUTHORIZE, CAPTURE, REFUND = OperationKind.AUTHORIZE, OperationKind.CAPTURE, OperationKind.REFUND

DOCUMENTED: dict[Outcome, type[ProcessorError]] = {
    Outcome.RETRYABLE: RetryableError,
    Outcome.IN_DOUBT: InDoubtError,
    Outcome.TERMINAL: DeclinedError,
    Outcome.TRY_NEXT: TryNextError,
}
"""The exception class each outcome is documented to become."""

RULES: list[tuple[str, Classification]] = [
    *((f"{p}/{op}/{code}", rule) for (p, op, code), rule in TABLE.items()),
    *((f"*/*/{code}", rule) for code, rule in TRANSPORT.items()),
]


@pytest.mark.parametrize(
    "rule",
    [rule for _, rule in RULES if rule.outcome is not Outcome.CUSTOMER_ACTION],
    ids=[name for name, rule in RULES if rule.outcome is not Outcome.CUSTOMER_ACTION],
)
def test_every_rule_becomes_its_documented_exception(rule: Classification) -> None:
    """Each rule's error is exactly the class documented for its outcome, with its code."""
    error = to_error(rule, "vendor said no", vendor_code="x", sent=True, retry_after=2.0)

    assert type(error) is DOCUMENTED[rule.outcome]
    assert (error.code, error.vendor_code, error.sent, error.retry_after) == (
        rule.failure_code,
        "x",
        True,
        2.0,
    )


@pytest.mark.parametrize(("name", "rule"), RULES, ids=[name for name, _ in RULES])
def test_every_rule_has_the_safe_message_of_its_code(name: str, rule: Classification) -> None:
    """A rule's customer message is the generic text of its failure code, never vendor text."""
    assert rule.customer_message == CUSTOMER_MESSAGES[rule.failure_code], name


def test_every_failure_code_has_a_customer_message() -> None:
    """Every failure code has a short customer message that fits the event's limit."""
    assert set(CUSTOMER_MESSAGES) == set(get_args(FailureCode))
    assert all(0 < len(message) <= 500 for message in CUSTOMER_MESSAGES.values())


def test_suspected_fraud_reads_as_a_plain_decline() -> None:
    """The customer is not told that fraud is suspected."""
    assert CUSTOMER_MESSAGES["fraud_suspected"] == CUSTOMER_MESSAGES["card_declined"]


@pytest.mark.parametrize(
    ("processor", "operation", "code", "outcome", "failure_code"),
    [
        (STRIPE, AUTHORIZE, "http_409", Outcome.RETRYABLE, "processor_unavailable"),
        (STRIPE, AUTHORIZE, "http_429", Outcome.RETRYABLE, "processor_unavailable"),
        (STRIPE, CAPTURE, "http_5xx", Outcome.RETRYABLE, "processor_unavailable"),
        (STRIPE, AUTHORIZE, "stored_5xx", Outcome.IN_DOUBT, "processor_error"),
        (STRIPE, AUTHORIZE, "card_declined", Outcome.TERMINAL, "card_declined"),
        (STRIPE, AUTHORIZE, "insufficient_funds", Outcome.TERMINAL, "insufficient_funds"),
        (STRIPE, AUTHORIZE, "expired_card", Outcome.TERMINAL, "expired_card"),
        (STRIPE, AUTHORIZE, "incorrect_cvc", Outcome.TERMINAL, "incorrect_cvc"),
        (STRIPE, AUTHORIZE, "fraudulent", Outcome.TERMINAL, "fraud_suspected"),
        (
            STRIPE,
            AUTHORIZE,
            "authentication_required",
            Outcome.CUSTOMER_ACTION,
            "authentication_required",
        ),
        (STRIPE, CAPTURE, "idempotency_error", Outcome.TERMINAL, "invalid_request"),
        (STRIPE, AUTHORIZE, "http_401", Outcome.TERMINAL, "not_configured"),
        (STRIPE, REFUND, "http_403", Outcome.TERMINAL, "not_configured"),
        (STRIPE, AUTHORIZE, "currency_not_supported", Outcome.TRY_NEXT, "currency_not_supported"),
        (STRIPE, AUTHORIZE, "processing_error", Outcome.TRY_NEXT, "processor_error"),
        (PAYPAL, AUTHORIZE, "INSTRUMENT_DECLINED", Outcome.TERMINAL, "card_declined"),
        (
            PAYPAL,
            AUTHORIZE,
            "PAYER_ACTION_REQUIRED",
            Outcome.CUSTOMER_ACTION,
            "authentication_required",
        ),
        (PAYPAL, CAPTURE, "PREVIOUSLY_CAPTURED", Outcome.TERMINAL, "already_settled"),
        (PAYPAL, CAPTURE, "PREVIOUSLY_VOIDED", Outcome.TERMINAL, "already_settled"),
        (PAYPAL, CAPTURE, "AUTHORIZATION_ALREADY_CAPTURED", Outcome.TERMINAL, "already_settled"),
        (PAYPAL, REFUND, "CAPTURED_AMOUNT_FULLY_REFUNDED", Outcome.TERMINAL, "already_settled"),
        (PAYPAL, AUTHORIZE, "CURRENCY_NOT_SUPPORTED", Outcome.TRY_NEXT, "currency_not_supported"),
        (PAYPAL, CAPTURE, "http_5xx", Outcome.RETRYABLE, "processor_unavailable"),
        (PAYPAL, AUTHORIZE, "http_429", Outcome.RETRYABLE, "processor_unavailable"),
        (HESABPAY, AUTHORIZE, "status_code_11", Outcome.TERMINAL, "insufficient_funds"),
        (HESABPAY, AUTHORIZE, "currency_not_supported", Outcome.TRY_NEXT, "currency_not_supported"),
    ],
)
def test_vendor_conditions_are_classified_as_documented(
    processor: Processor,
    operation: OperationKind,
    code: str,
    outcome: Outcome,
    failure_code: FailureCode,
) -> None:
    """Each vendor condition named in the vendor notes gets its documented outcome and code."""
    classification = classify(processor, operation, code)

    assert (classification.outcome, classification.failure_code) == (outcome, failure_code)


def test_operation_specific_rules_apply_to_their_operation_only() -> None:
    """A rule for refunds does not classify the same code on an authorization."""
    assert classify(STRIPE, REFUND, "charge_already_refunded").failure_code == "already_settled"
    assert classify(STRIPE, AUTHORIZE, "charge_already_refunded") is UNKNOWN


def test_processor_rules_do_not_leak_to_other_processors() -> None:
    """Stripe's 409 is retryable; a 409 from HesabPay is not known, so it is terminal."""
    assert classify(STRIPE, AUTHORIZE, "http_409").outcome is Outcome.RETRYABLE
    assert classify(HESABPAY, AUTHORIZE, "http_409") is UNKNOWN


def test_processor_rule_is_preferred_to_the_shared_transport_rule() -> None:
    """A processor's own rule for a code wins over the shared transport rule for it."""
    override = Classification(Outcome.IN_DOUBT, "processor_error", "x")
    table = {**TABLE, (STRIPE, taxonomy.ANY, "http_5xx"): override}

    assert TRANSPORT["http_5xx"].outcome is Outcome.RETRYABLE
    assert classify(STRIPE, CAPTURE, "http_5xx", rules=table) is override


def test_exact_operation_is_preferred_to_any_operation() -> None:
    """A rule for the exact operation wins over the processor's any-operation rule."""
    exact = Classification(Outcome.TRY_NEXT, "processor_error", "x")
    table = {**TABLE, (STRIPE, AUTHORIZE, "card_declined"): exact}

    assert classify(STRIPE, AUTHORIZE, "card_declined", rules=table) is exact
    assert classify(STRIPE, CAPTURE, "card_declined", rules=table).outcome is Outcome.TERMINAL


@pytest.mark.parametrize("processor", list(Processor))
def test_unknown_codes_are_terminal_processor_errors(processor: Processor) -> None:
    """A code the table does not know is a terminal ``processor_error``, never retried."""
    classification = classify(processor, CAPTURE, "something_new_2031")
    error = to_error(classification, "?", vendor_code="something_new_2031", sent=True)

    assert classification is UNKNOWN
    assert (classification.outcome, classification.failure_code) == (
        Outcome.TERMINAL,
        "processor_error",
    )
    assert type(error) is DeclinedError
    assert not should_try_next(error)


@pytest.mark.parametrize("processor", list(Processor))
def test_read_timeout_is_in_doubt_and_never_moves_on(processor: Processor) -> None:
    """A read timeout is in doubt for every processor, and never goes to another processor."""
    classification = classify(processor, AUTHORIZE, "read_timeout")
    error = to_error(classification, "read timeout", vendor_code="read_timeout", sent=True)

    assert classification.outcome is Outcome.IN_DOUBT
    assert isinstance(error, InDoubtError)
    assert not should_try_next(error)


def test_connect_error_is_retryable_and_may_move_on() -> None:
    """A refused connection sent nothing: retryable here, and another processor may be tried."""
    classification = classify(PAYPAL, AUTHORIZE, "connect_error")
    error = to_error(classification, "refused", vendor_code="connect_error", sent=False)

    assert type(error) is RetryableError
    assert should_try_next(error)


def test_customer_action_is_not_an_error() -> None:
    """Asking for the error of a customer action is refused: it is an ``ActionRequired``."""
    action = classify(STRIPE, AUTHORIZE, "authentication_required")

    with pytest.raises(ValueError, match="ActionRequired"):
        to_error(action, "3-D Secure", vendor_code="authentication_required", sent=True)


def test_in_doubt_needs_a_sent_request() -> None:
    """An in-doubt error for a request that was never sent is refused as a contradiction."""
    with pytest.raises(ValueError, match="not sent"):
        to_error(TRANSPORT["read_timeout"], "timeout", vendor_code="read_timeout", sent=False)


def test_duplicate_rules_are_refused() -> None:
    """A table with the same key twice is refused when it is built."""
    rule: taxonomy.RuleKey = (STRIPE, taxonomy.ANY, "card_declined")

    with pytest.raises(ValueError, match="duplicate"):
        taxonomy._freeze([(rule, UNKNOWN), (rule, UNKNOWN)])


@pytest.mark.parametrize(
    ("status", "code"), [(500, "http_5xx"), (503, "http_5xx"), (429, "http_429"), (401, "http_401")]
)
def test_http_status_codes(status: int, code: str) -> None:
    """Any 5xx status is one code; other statuses keep their number."""
    assert http_status_code(status) == code
