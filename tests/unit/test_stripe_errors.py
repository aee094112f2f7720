"""Stripe SDK failures translated into ``ProcessorError`` through the taxonomy, no network."""

import httpx
import pytest
import stripe

from processors.errors import DeclinedError, InDoubtError, ProcessorError, RetryableError
from processors.port import OperationKind
from processors.stripe_errors import Call, malformed, translate

WRITE = Call(OperationKind.AUTHORIZE, "payment_intents.create", write=True)
READ = Call(OperationKind.AUTHORIZE, "payment_intents.retrieve", write=False)
KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def card_error(code: str, decline_code: str | None = None) -> stripe.CardError:
    """A 402 card error as the SDK raises it."""
    body: dict[str, object] = {"type": "card_error", "code": code, "message": "declined"}
    if decline_code is not None:
        body["decline_code"] = decline_code
    # the SDK leaves its exception constructors unannotated
    return stripe.CardError("declined", None, code, None, 402, {"error": body}, {})  # type: ignore[no-untyped-call]


def api_error(status: int, headers: dict[str, str] | None = None, **error: str) -> stripe.APIError:
    """A non-card API error with Stripe's error body."""
    body = {"error": {"type": "api_error", "message": "boom", **error}}
    return stripe.APIError("boom", None, status, body, headers or {"request-id": "req_1"})


def connection_error(cause: Exception) -> stripe.APIConnectionError:
    """The SDK's connection error, raised from the httpx failure ``cause``."""
    error = stripe.APIConnectionError("network", should_retry=True)  # type: ignore[no-untyped-call]
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "code", "vendor_code"),
    [
        (
            card_error("card_declined", "insufficient_funds"),
            "insufficient_funds",
            "insufficient_funds",
        ),
        (card_error("expired_card"), "expired_card", "expired_card"),
        (card_error("card_declined", "new_kind_of_no"), "card_declined", "new_kind_of_no"),
        (
            card_error("card_declined", "authentication_required"),
            "authentication_required",
            "authentication_required",
        ),
    ],
    ids=["decline-code", "code", "unknown-decline", "off-session-3ds"],
)
def test_card_errors_are_terminal_declines(
    error: stripe.CardError, code: str, vendor_code: str
) -> None:
    """A card error is a terminal decline; an unknown decline code reads as card_declined."""
    translated = translate(WRITE, error)

    assert type(translated) is DeclinedError
    assert (translated.code, translated.vendor_code) == (code, vendor_code)


def test_rate_limit_keeps_retry_after() -> None:
    """A 429 is retryable and carries Retry-After."""
    error = stripe.RateLimitError(
        "slow down",
        None,
        429,
        {"error": {"type": "invalid_request_error", "code": "rate_limit"}},
        {"Retry-After": "3"},
    )

    translated = translate(WRITE, error)

    assert isinstance(translated, RetryableError)
    assert (translated.vendor_code, translated.retry_after) == ("rate_limit", 3.0)


@pytest.mark.parametrize(
    ("error", "call", "kind", "vendor_code"),
    [
        (api_error(503), WRITE, RetryableError, "api_error"),
        (api_error(500, {"Stripe-Should-Retry": "false"}), WRITE, InDoubtError, "stored_5xx"),
        (api_error(500, {"Stripe-Should-Retry": "false"}), READ, RetryableError, "stored_5xx"),
        (
            api_error(
                409,
                {"Stripe-Should-Retry": "true"},
                type="invalid_request_error",
                code="idempotency_key_in_use",
            ),
            WRITE,
            RetryableError,
            "idempotency_key_in_use",
        ),
        (
            api_error(400, {"Stripe-Should-Retry": "true"}, code="lock_timeout"),
            WRITE,
            RetryableError,
            "lock_timeout",
        ),
        (
            stripe.APIError("Invalid response body from API: {", "{", 200, None, {}),
            WRITE,
            InDoubtError,
            "malformed_response",
        ),
        (
            stripe.APIError("Invalid response body from API: {", "{", 200, None, {}),
            READ,
            RetryableError,
            "malformed_response",
        ),
    ],
    ids=["503", "stored-500", "stored-500-read", "409", "should-retry", "bad-200", "bad-200-read"],
)
def test_server_side_failures(
    error: stripe.StripeError, call: Call, kind: type[ProcessorError], vendor_code: str
) -> None:
    """5xx and 409 retry; a stored 500 or an unreadable 200 is in doubt after a write only."""
    translated = translate(call, error)

    assert type(translated) is kind
    assert translated.vendor_code == vendor_code
    assert translated.sent


def test_idempotency_error_is_our_bug() -> None:
    """Reusing a key with other parameters is a terminal invalid request."""
    error = stripe.IdempotencyError(
        "Keys for idempotent requests can only be used with the same parameters",
        None,
        400,
        {"error": {"type": "idempotency_error", "message": "x"}},
        {},
    )

    translated = translate(WRITE, error)

    assert type(translated) is DeclinedError
    assert (translated.code, translated.vendor_code) == ("invalid_request", "idempotency_error")


@pytest.mark.parametrize("error_type", [stripe.AuthenticationError, stripe.PermissionError])
def test_authentication_failures_are_configuration_and_hide_the_echoed_key(
    error_type: type[stripe.StripeError],
) -> None:
    """A 401 or 403 is ``not_configured``, and Stripe's text (which echoes the key) is left out."""
    status = 401 if error_type is stripe.AuthenticationError else 403
    message = f"Invalid API Key provided: {KEY}"
    error = error_type(
        message, None, status, {"error": {"type": "invalid_request_error", "message": message}}, {}
    )

    translated = translate(WRITE, error)

    assert (type(translated), translated.code) == (DeclinedError, "not_configured")
    assert KEY not in str(translated)
    assert KEY[-4:] not in str(translated)


def test_unknown_codes_fall_back_to_the_status() -> None:
    """A code the table lacks is classified by its HTTP status (a 404 is an invalid request)."""
    error = stripe.InvalidRequestError(  # type: ignore[no-untyped-call]
        "No such payment_intent",
        "intent",
        "resource_missing",
        None,
        404,
        {"error": {"type": "invalid_request_error", "code": "resource_missing"}},
        {},
    )

    translated = translate(WRITE, error)

    assert (translated.code, translated.vendor_code) == ("invalid_request", "resource_missing")


@pytest.mark.parametrize(
    ("cause", "call", "kind", "vendor_code", "sent"),
    [
        (httpx.ConnectError("refused"), WRITE, RetryableError, "connect_error", False),
        (httpx.ConnectTimeout("slow"), WRITE, RetryableError, "connect_error", False),
        (httpx.PoolTimeout("busy"), WRITE, RetryableError, "pool_timeout", False),
        (httpx.ReadTimeout("late"), WRITE, InDoubtError, "read_timeout", True),
        (httpx.WriteTimeout("half"), WRITE, InDoubtError, "write_timeout", True),
        (httpx.RemoteProtocolError("cut"), WRITE, InDoubtError, "connection_lost", True),
        (httpx.ReadTimeout("late"), READ, RetryableError, "read_timeout", True),
    ],
    ids=["refused", "connect-timeout", "pool", "read-timeout", "write-timeout", "cut", "read"],
)
def test_transport_failures_split_on_whether_the_request_left(
    cause: Exception, call: Call, kind: type[ProcessorError], vendor_code: str, *, sent: bool
) -> None:
    """Before sending is retryable and unsent; after sending a write is in doubt."""
    translated = translate(call, connection_error(cause))

    assert type(translated) is kind
    assert (translated.vendor_code, translated.sent) == (vendor_code, sent)


def test_malformed_names_the_call_the_status_and_the_request() -> None:
    """A malformed answer's message carries what support needs to find the request."""
    error = malformed(WRITE, "payment_intent.status is missing", 200, "req_9")

    assert isinstance(error, InDoubtError)
    assert "payment_intents.create" in error.message
    assert "HTTP 200" in error.message
    assert "req_9" in error.message
