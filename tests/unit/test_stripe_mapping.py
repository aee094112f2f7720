"""Pure Stripe mapping: our requests to Stripe parameters, Stripe's JSON to our results."""

from datetime import UTC, datetime
from typing import Any

import pytest

from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    CaptureRequest,
    Failed,
    NotFound,
    RefundRequest,
    StillPending,
    VoidRequest,
)
from processors.stripe_ledger import (
    read_refund,
    refund_inquiry,
    refund_params,
    refund_result,
    vendor_transaction,
    with_key,
)
from processors.stripe_mapping import (
    CURRENCIES,
    KEY_METADATA,
    MalformedResponseError,
    Processing,
    Refusal,
    UnsupportedAmountError,
    authorization_result,
    authorize_params,
    cancel_params,
    capture_inquiry,
    capture_params,
    capture_result,
    read_intent,
    to_stripe_amount,
    void_inquiry,
)
from schemas.money import CURRENCY_EXPONENTS, Money

USD = "USD"
CAPTURE_BEFORE = 1_800_000_000


def usd(minor: int) -> Money:
    """``minor`` cents."""
    return Money(minor=minor, currency=USD)


def intent(status: str = "requires_capture", **fields: Any) -> dict[str, Any]:  # noqa: ANN401 (JSON)
    """A PaymentIntent as Stripe renders it, with ``fields`` changed."""
    charge = {"id": "ch_1", "payment_method_details": {"card": {"capture_before": CAPTURE_BEFORE}}}
    return {
        "id": "pi_1",
        "object": "payment_intent",
        "status": status,
        "amount": 1000,
        "amount_capturable": 1000 if status == "requires_capture" else 0,
        "amount_received": 1000 if status == "succeeded" else 0,
        "currency": "usd",
        "metadata": {"payment_id": "pay_1"},
        "latest_charge": charge,
        "next_action": None,
        "last_payment_error": None,
        **fields,
    }


def authorization(**fields: Any) -> AuthorizeRequest:  # noqa: ANN401 (dataclass fields)
    """An authorization request for 10.00 USD."""
    values: dict[str, Any] = {
        "idempotency_key": "tnt_a:pay_1:authorize:1",
        "account": "acct_1",
        "payment_id": "pay_1",
        "amount": usd(1000),
        "payment_method_type": "card",
        "payment_method_token": "pm_card_visa",
        "capture": "manual",
        "return_url": "https://hotel.invalid/back",
        "booking_reference": "BK-1",
        **fields,
    }
    return AuthorizeRequest(**values)


def test_authorize_params_confirm_at_once_and_carry_our_references() -> None:
    """A create confirms at once, manual capture asks for multicapture, metadata finds it again."""
    params = authorize_params(authorization(metadata={"channel": "web"}))

    assert (params["amount"], params["currency"], params["capture_method"]) == (
        1000,
        "usd",
        "manual",
    )
    assert params["confirm"] is True
    assert params["metadata"] == {
        "channel": "web",
        "payment_id": "pay_1",
        "booking_reference": "BK-1",
        KEY_METADATA: "tnt_a:pay_1:authorize:1",
    }
    assert params["payment_method_options"] == {"card": {"request_multicapture": "if_available"}}
    assert params["return_url"] == "https://hotel.invalid/back"


def test_authorize_params_without_a_return_url_allow_no_redirects() -> None:
    """Without a return URL no redirect-based method may be offered; automatic capture is plain."""
    params = authorize_params(authorization(return_url=None, capture="automatic"))

    assert params["automatic_payment_methods"] == {"enabled": True, "allow_redirects": "never"}
    assert "payment_method_options" not in params
    assert "return_url" not in params


def test_capture_params_send_final_capture_only_when_false() -> None:
    """A final capture leaves ``final_capture`` out; a partial one keeps the rest capturable."""
    final = capture_params(CaptureRequest("k", "acct_1", "pi_1", usd(400), final=True))
    partial = capture_params(CaptureRequest("k", "acct_1", "pi_1", usd(400), final=False))

    assert "final_capture" not in final
    assert (partial["amount_to_capture"], partial["final_capture"]) == (400, False)


@pytest.mark.parametrize(
    ("reason", "sent"),
    [
        ("duplicate", "duplicate"),
        ("cancelled", "requested_by_customer"),
        ("expired", "abandoned"),
        ("whatever", "abandoned"),
    ],
)
def test_cancel_reasons_become_stripes(reason: str, sent: str) -> None:
    """Our void reasons map onto Stripe's four cancellation reasons."""
    assert cancel_params(VoidRequest("k", "acct_1", "pi_1", reason)) == {
        "cancellation_reason": sent
    }


def test_refund_params_target_the_intent_or_a_charge() -> None:
    """A refund names its PaymentIntent (or charge), carries its key, and only Stripe's reasons."""
    on_intent = refund_params(RefundRequest("k1", "acct_1", "pi_1", usd(300), "duplicate"))
    on_charge = refund_params(RefundRequest("k2", "acct_1", "ch_1", usd(300), "goodwill"))

    assert (on_intent["payment_intent"], on_intent["reason"]) == ("pi_1", "duplicate")
    assert on_intent["metadata"] == {KEY_METADATA: "k1"}
    assert on_charge["charge"] == "ch_1"
    assert "reason" not in on_charge


@pytest.mark.parametrize(
    ("money", "amount"),
    [(Money(minor=1230, currency="KWD"), 1230), (Money(minor=500, currency="JPY"), 500)],
)
def test_amounts_are_minor_units(money: Money, amount: int) -> None:
    """Stripe's amount is the minor-unit count, for zero- and three-decimal currencies alike."""
    assert to_stripe_amount(money) == amount


@pytest.mark.parametrize(
    "money", [Money(minor=1235, currency="KWD"), Money(minor=100, currency="ISK")]
)
def test_amounts_stripe_cannot_take_are_refused(money: Money) -> None:
    """A three-decimal amount not ending in 0, or a currency left out, is refused."""
    with pytest.raises(UnsupportedAmountError):
        to_stripe_amount(money)


def test_currencies_are_a_subset_of_the_table() -> None:
    """Every offered currency has an exponent in our table; AFN and USD are offered."""
    assert CURRENCY_EXPONENTS.keys() >= CURRENCIES
    assert {"AFN", "USD", "EUR", "JPY", "KWD"} <= CURRENCIES


def test_read_intent_takes_the_hold_and_the_redirect() -> None:
    """The capture deadline comes from the expanded charge; the redirect from next_action."""
    redirect = {"type": "redirect_to_url", "redirect_to_url": {"url": "https://acs.invalid/3ds"}}

    read = read_intent(intent("requires_action", next_action=redirect))

    assert read.capture_before == datetime.fromtimestamp(CAPTURE_BEFORE, tz=UTC)
    assert read.redirect_url == "https://acs.invalid/3ds"
    assert read.amount == usd(1000)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": None}, "payment_intent.status is missing"),
        ({"status": "requires_reticulation"}, "payment_intent.status is not"),
        ({"amount": True}, "payment_intent.amount is missing or not a int"),
        ({"amount": "1000"}, "payment_intent.amount is missing"),
        ({"amount_received": -5}, "payment_intent.amount_received is not a valid amount"),
        ({"currency": "xyz"}, "payment_intent.currency is not a currency we know"),
        ({"id": None}, "payment_intent.id is missing"),
        ({"object": "charge"}, "payment_intent.object"),
    ],
)
def test_malformed_intents_name_the_field(change: dict[str, Any], field: str) -> None:
    """Anything Stripe would not send raises ``MalformedResponseError`` naming the field."""
    with pytest.raises(MalformedResponseError, match=field) as malformed:
        read_intent(intent(**change))

    assert "requires_reticulation" not in str(malformed.value)


WITH_URL = {"type": "redirect_to_url", "redirect_to_url": {"url": "https://acs.invalid/x"}}
DECLINED = {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            intent(),
            Approved("pi_1", usd(1000), datetime.fromtimestamp(CAPTURE_BEFORE, tz=UTC)),
        ),
        (intent("succeeded"), Approved("pi_1", usd(1000), None, captured=True)),
        (
            intent("requires_action", next_action=WITH_URL),
            ActionRequired("pi_1", "https://acs.invalid/x", "three_ds"),
        ),
        (intent("requires_action", next_action={"type": "use_stripe_sdk"}), Refusal),
        (intent("processing"), Processing("processing")),
        (
            intent("requires_payment_method", last_payment_error=DECLINED, latest_charge=None),
            Refusal("insufficient_funds", "status requires_payment_method"),
        ),
        (
            intent("canceled", latest_charge=None),
            Refusal("payment_intent_authentication_failure", "status canceled"),
        ),
        (
            intent("canceled"),
            Approved("pi_1", usd(1000), datetime.fromtimestamp(CAPTURE_BEFORE, tz=UTC)),
        ),
    ],
    ids=[
        "authorized",
        "captured",
        "3ds",
        "3ds-no-url",
        "processing",
        "declined",
        "abandoned",
        "voided-later",
    ],
)
def test_authorization_result_by_status(data: dict[str, Any], expected: object) -> None:
    """Each PaymentIntent status reads as its authorization outcome."""
    result = authorization_result(read_intent(data))

    if expected is Refusal:
        assert isinstance(result, Refusal)
        assert result.code == "redirect_unavailable"
    else:
        assert result == expected


def test_capture_result_checks_what_was_captured() -> None:
    """A capture answered with an intent that did not take the amount is malformed."""
    captured = read_intent(intent("succeeded"))

    assert capture_result(captured, usd(1000)) == Approved("pi_1", usd(1000))
    with pytest.raises(MalformedResponseError):
        capture_result(read_intent(intent("canceled")), usd(1000))
    with pytest.raises(MalformedResponseError):
        capture_result(read_intent(intent("requires_capture", amount_received=100)), usd(400))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (intent("succeeded"), Approved("pi_1", usd(1000))),
        (intent("requires_capture"), NotFound()),
        (intent("processing"), StillPending()),
        (
            intent("canceled"),
            Failed("already_settled", "payment_intent_unexpected_state", "canceled"),
        ),
    ],
)
def test_capture_inquiry_by_totals(data: dict[str, Any], expected: object) -> None:
    """A capture is found by the intent's received total, else by its state."""
    assert capture_inquiry(read_intent(data), usd(1000)) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("canceled", Approved("pi_1", usd(1000))),
        ("requires_capture", NotFound()),
        ("succeeded", Failed("already_settled", "payment_intent_unexpected_state", "succeeded")),
    ],
)
def test_void_inquiry_by_state(status: str, expected: object) -> None:
    """A void is found by the intent being canceled."""
    assert void_inquiry(read_intent(intent(status))) == expected


def refund(status: str = "succeeded", key: str = "k1") -> dict[str, Any]:
    """A Refund as Stripe renders it."""
    return {
        "id": "re_1",
        "object": "refund",
        "amount": 300,
        "currency": "usd",
        "status": status,
        "metadata": {KEY_METADATA: key},
    }


def test_refunds_are_found_by_key_and_read_by_status() -> None:
    """A refund is matched by its key; pending counts as accepted, failed as refused."""
    found = with_key([refund(key="other"), refund(key="k1")], "k1")

    assert found is not None
    assert refund_result(read_refund(found)) == Approved("re_1", usd(300))
    assert refund_result(read_refund(refund("pending"))) == Approved("re_1", usd(300))
    assert refund_result(read_refund(refund("failed"))) == Refusal("refund_failed", "refund failed")
    assert refund_inquiry(None) == NotFound()
    assert refund_inquiry(read_refund(refund("requires_action"))) == StillPending()
    with pytest.raises(MalformedResponseError, match=r"refund\.status"):
        read_refund(refund("lost"))


def test_a_charge_line_is_known_by_its_payment_intent() -> None:
    """A captured charge's balance line carries the PaymentIntent id and our payment id."""
    source = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "metadata": {"payment_id": "pay_1"},
    }
    line = vendor_transaction(
        {
            "id": "txn_1",
            "type": "charge",
            "amount": 1000,
            "fee": 59,
            "currency": "usd",
            "status": "pending",
            "created": CAPTURE_BEFORE,
            "source": source,
        }
    )

    assert (line.kind, line.reference, line.payment_id) == ("charge", "pi_1", "pay_1")
    assert (line.amount, line.fee) == (usd(1000), usd(59))
    assert line.occurred_at == datetime.fromtimestamp(CAPTURE_BEFORE, tz=UTC)


def test_a_refund_line_is_unsigned_and_known_by_its_refund() -> None:
    """A refund's negative balance line becomes an unsigned refund line with the refund id."""
    line = vendor_transaction(
        {
            "id": "txn_2",
            "type": "refund",
            "amount": -300,
            "fee": 0,
            "currency": "usd",
            "status": "available",
            "created": CAPTURE_BEFORE,
            "source": "re_1",
        }
    )

    assert (line.kind, line.reference, line.amount) == ("refund", "re_1", usd(300))


def test_a_line_in_an_unknown_currency_is_malformed() -> None:
    """A balance line in a currency the table lacks cannot be reconciled: malformed."""
    with pytest.raises(MalformedResponseError, match="currency"):
        vendor_transaction(
            {
                "id": "txn_3",
                "type": "charge",
                "amount": 1,
                "currency": "xyz",
                "status": "pending",
                "created": 1,
            }
        )
