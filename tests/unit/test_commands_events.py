"""Commands and events: valid examples pass, malformed input is refused with a clear error."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    RefundPayment,
    VoidPayment,
)
from schemas.events import (
    CommandRejected,
    PaymentActionRequired,
    PaymentAuthorizationFailed,
    PaymentAuthorized,
    PaymentCancelled,
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentExpired,
    PaymentRefunded,
    PaymentRefundFailed,
    PaymentVoided,
)
from schemas.money import Money
from schemas.processors import Processor

IDS = {"payment_id": "pay_01HX-abc", "idempotency_key": "key:2024-01-01/abc"}
USD = {"minor": 12500, "currency": "USD"}


def authorize(**changes: Any) -> dict[str, Any]:  # noqa: ANN401 - JSON of any shape
    """A valid AuthorizePayment body with ``changes`` applied (None removes a field)."""
    body: dict[str, Any] = {
        **IDS,
        "amount": USD,
        "payment_method": {"type": "card", "token": "pm_1NfJd2LkdIwHu7ix"},
        "capture": "manual",
        "return_url": "https://book.example.com/return?b=BK1",
        "processor": "stripe",
        "booking_reference": "BK-2024-000123",
        "customer_email": "guest@example.com",
        "description": "Room 1204, 2 nights",
        "metadata": {"hotel": "kabul-serena", "nights": "2"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


VALID_COMMANDS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (AuthorizePayment, authorize()),
    (
        AuthorizePayment,
        {**IDS, "amount": USD, "payment_method": {"type": "paypal"}, "booking_reference": "B"},
    ),
    (CapturePayment, {**IDS}),
    (CapturePayment, {**IDS, "amount": USD, "final": False}),
    (VoidPayment, {**IDS, "reason": "abandoned"}),
    (RefundPayment, {**IDS, "amount": {"minor": 5, "currency": "USD"}, "reason": "late cancel"}),
    (RefundPayment, {**IDS}),
    (CancelPayment, {**IDS, "reason": "booking cancelled by hotel"}),
]


@pytest.mark.parametrize(("model", "body"), VALID_COMMANDS)
def test_valid_commands_validate_from_json(model: type[BaseModel], body: dict[str, Any]) -> None:
    """Each well-formed command parses from its JSON text and dumps back to the same data."""
    parsed = model.model_validate_json(json.dumps(body))
    again = model.model_validate_json(parsed.model_dump_json())
    assert again == parsed


def test_authorize_defaults() -> None:
    """Capture is manual unless asked, metadata is empty, hints are absent."""
    command = AuthorizePayment.model_validate(
        {
            **IDS,
            "amount": USD,
            "payment_method": {"type": "wallet", "token": "w_1"},
            "booking_reference": "BK1",
        }
    )
    assert command.capture == "manual"
    assert command.metadata == {}
    assert command.processor is None
    assert command.return_url is None


def refused(model: type[BaseModel], body: dict[str, Any]) -> str:
    """The validation error text for ``body``, failing the test if it was accepted."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(json.dumps(body))
    return str(caught.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": {"minor": 125.0, "currency": "USD"}}, "valid integer"),
        ({"amount": {"minor": "12500", "currency": "USD"}}, "valid integer"),
        ({"amount": {"minor": 0, "currency": "USD"}}, "greater than zero"),
        ({"amount": {"minor": 100, "currency": "XXX"}}, "unknown currency"),
        ({"payment_id": "pay 1"}, "payment_id"),
        ({"payment_id": "p" * 65}, "payment_id"),
        ({"payment_id": "pay/../1"}, "payment_id"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"idempotency_key": "ключ"}, "idempotency_key"),
        ({"payment_method": {"type": "cash"}}, "payment_method.type"),
        ({"payment_method": {"type": "card", "number": "4242424242424242"}}, "Extra inputs"),
        ({"payment_method": {"type": "card", "token": "pm 1"}}, "payment_method.token"),
        ({"capture": "later"}, "capture"),
        ({"return_url": "javascript:alert(1)"}, "return_url"),
        ({"processor": "visa"}, "processor"),
        ({"booking_reference": ""}, "booking_reference"),
        ({"booking_reference": "B" * 65}, "booking_reference"),
        ({"customer_email": "not-an-email"}, "customer_email"),
        ({"description": "d" * 256}, "description"),
        ({"metadata": {f"k{i}": "v" for i in range(21)}}, "metadata"),
        ({"metadata": {"k" * 41: "v"}}, "metadata"),
        ({"metadata": {"k": "v" * 501}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata"),
        ({"tenant_id": "tnt_a"}, "Extra inputs"),
    ],
)
def test_malformed_authorize_is_refused(changes: dict[str, Any], message: str) -> None:
    """Floats, unknown currencies, bad ids, long metadata and extra fields are all refused."""
    assert message in refused(AuthorizePayment, authorize(**changes))


def test_missing_required_fields_are_named() -> None:
    """A command without its payment id or amount names the missing field."""
    body = authorize()
    del body["amount"]
    assert "amount\n  Field required" in refused(AuthorizePayment, body)
    assert "payment_id" in refused(VoidPayment, {"idempotency_key": "k", "reason": "duplicate"})


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        (CapturePayment, {**IDS, "final": "yes"}, "valid boolean"),
        (CapturePayment, {**IDS, "amount": {"minor": 0, "currency": "USD"}}, "greater than zero"),
        (VoidPayment, {**IDS, "reason": "changed_mind"}, "reason"),
        (RefundPayment, {**IDS, "amount": {"minor": -5, "currency": "USD"}}, "greater than"),
        (CancelPayment, {**IDS}, "reason"),
        (CancelPayment, {**IDS, "reason": ""}, "reason"),
    ],
)
def test_malformed_other_commands_are_refused(
    model: type[BaseModel], body: dict[str, Any], message: str
) -> None:
    """Capture, void, refund and cancel refuse bad flags, amounts and reasons."""
    assert message in refused(model, body)


NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PAY = {"payment_id": "pay_1"}
MONEY = Money(minor=1000, currency="EUR")
FAILURE = {
    "reason_code": "card_declined",
    "customer_message": "Your card was declined.",
    "retryable": False,
}

VALID_EVENTS: list[BaseModel] = [
    PaymentAuthorized(
        **PAY,
        amount=MONEY,
        processor=Processor.STRIPE,
        processor_reference="pi_3Nab",
        expires_at=NOW,
    ),
    PaymentAuthorizationFailed(**PAY, **FAILURE),
    PaymentActionRequired(
        **PAY, action="three_ds", redirect_url="https://hooks.stripe.com/3ds/x", expires_at=None
    ),
    PaymentCaptured(**PAY, amount=MONEY, total_captured=MONEY, final=True),
    PaymentCaptureFailed(**PAY, **FAILURE, amount=None),
    PaymentVoided(**PAY, amount=MONEY, reason="cancelled"),
    PaymentRefunded(**PAY, amount=MONEY, total_refunded=MONEY, refund_id="re_1"),
    PaymentRefundFailed(**PAY, **FAILURE, amount=MONEY),
    PaymentExpired(**PAY, stage="authorized", expired_at=NOW),
    PaymentCancelled(**PAY, reason="guest cancelled", voided=MONEY, refunded=None),
    CommandRejected(
        payment_id=None,
        rejected_message_id="m-1",
        rejected_type=None,
        reason="malformed_json",
        detail="Expecting value: line 1 column 1",
    ),
]


@pytest.mark.parametrize("event", VALID_EVENTS, ids=lambda e: type(e).__name__)
def test_events_round_trip_through_json(event: BaseModel) -> None:
    """Every event dumps to JSON with every field present and parses back equal."""
    dumped = json.loads(event.model_dump_json())
    assert set(dumped) == set(type(event).model_fields)
    assert type(event).model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(
    "value", ["2024-05-01T12:00:00", "2024-05-01", 1714564800, "1714564800", 1714564800.0]
)
def test_naive_and_numeric_datetimes_are_refused(value: object) -> None:
    """Event times need an offset; naive times, dates and epoch numbers are refused."""
    body = {**PAY, "stage": "authorized", "expired_at": value}
    assert "expired_at" in refused(PaymentExpired, body)
    with pytest.raises(ValidationError, match="expired_at"):
        PaymentExpired.model_validate(body)


def test_datetimes_parse_from_json_text_and_from_loaded_json() -> None:
    """An RFC 3339 string is accepted both by model_validate_json and by model_validate."""
    body = {**PAY, "stage": "action_required", "expired_at": "2024-05-01T16:30:00+04:30"}
    from_text = PaymentExpired.model_validate_json(json.dumps(body))
    assert from_text == PaymentExpired.model_validate(body)
    assert from_text.expired_at == NOW


def test_naive_datetime_objects_are_refused() -> None:
    """A Python datetime without tzinfo is refused too."""
    with pytest.raises(ValidationError, match="timezone"):
        PaymentExpired(**PAY, stage="authorized", expired_at=datetime(2024, 5, 1))  # noqa: DTZ001


def test_event_fields_are_typed() -> None:
    """Unknown failure codes, rejection reasons and non-http redirects are refused."""
    unknown_code = {**PAY, **FAILURE, "reason_code": "nope"}
    assert "reason_code" in refused(PaymentAuthorizationFailed, unknown_code)
    rejected = {
        "payment_id": None,
        "rejected_message_id": "m",
        "rejected_type": None,
        "reason": "bored",
        "detail": "",
    }
    assert "reason" in refused(CommandRejected, rejected)
    too_long = {**rejected, "reason": "card_data", "detail": "x" * 1001}
    assert "detail" in refused(CommandRejected, too_long)
    action = {**PAY, "action": "redirect", "redirect_url": "ftp://x.example", "expires_at": None}
    assert "redirect_url" in refused(PaymentActionRequired, action)
    stringly = {**PAY, **FAILURE, "retryable": "false"}
    assert "retryable" in refused(PaymentAuthorizationFailed, stringly)


@pytest.mark.parametrize("event", VALID_EVENTS[:2], ids=lambda e: type(e).__name__)
def test_models_are_frozen(event: BaseModel) -> None:
    """Neither events nor commands can be modified once built."""
    with pytest.raises(ValidationError, match="frozen"):
        event.payment_id = "other"  # type: ignore[attr-defined]
    command = CancelPayment(payment_id="p", idempotency_key="k", reason="r")
    with pytest.raises(ValidationError, match="frozen"):
        command.reason = "changed"  # type: ignore[misc]


def test_extra_fields_are_refused_on_events() -> None:
    """An event carrying a field the contract does not have is refused."""
    body = {**PAY, "stage": "authorized", "expired_at": "2024-05-01T12:00:00Z", "extra": 1}
    assert "Extra inputs" in refused(PaymentExpired, body)
