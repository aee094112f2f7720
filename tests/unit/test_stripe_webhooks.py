"""Stripe webhook verification (with the VENDORS.md test vector) and event mapping."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from processors.errors import WebhookRejected
from processors.stripe_webhooks import to_notification, verify
from sandbox.stripe_wire import signature
from schemas.money import Money

SECRET = "whsec_test_secret"
SIGNED_AT = 1_700_000_000
BODY = b'{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}'
VECTOR = "67da5088c63e080c71bd2bb0cb5c03d85a8fc6a21ce3aaf484df809654745b92"
HEADER = f"t={SIGNED_AT},v1={VECTOR}"


def _at(offset_s: float) -> datetime:
    return datetime.fromtimestamp(SIGNED_AT, tz=UTC) + timedelta(seconds=offset_s)


def test_the_vendors_md_vector_verifies() -> None:
    """The documented header, secret and body verify shortly after the signing time."""
    verify(BODY, HEADER, SECRET, _at(10))


def test_the_vector_is_what_the_sandbox_signs() -> None:
    """The sandbox's signing function reproduces the documented signature."""
    assert signature(SECRET, SIGNED_AT, BODY) == VECTOR


def test_any_of_several_v1_signatures_may_match() -> None:
    """During a secret rotation one matching v1 among several is enough."""
    header = f"t={SIGNED_AT},v1={'0' * 64},v0=ignored,v1={VECTOR}"

    verify(BODY, header, SECRET, _at(0))


@pytest.mark.parametrize("offset_s", [301, -301, 3600])
def test_a_timestamp_outside_five_minutes_is_stale(offset_s: float) -> None:
    """A signature more than 300 s old, or from the future, is refused as stale."""
    with pytest.raises(WebhookRejected) as rejected:
        verify(BODY, HEADER, SECRET, _at(offset_s))

    assert rejected.value.reason == "stale"


def test_the_edge_of_the_tolerance_is_accepted() -> None:
    """A signature exactly 300 s old is still accepted."""
    verify(BODY, HEADER, SECRET, _at(300))


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (BODY, HEADER, "whsec_other"),
        (BODY.replace(b"evt_1", b"evt_2"), HEADER, SECRET),
        (BODY, None, SECRET),
        (BODY, "garbage", SECRET),
        (BODY, f"t={SIGNED_AT}", SECRET),
        (BODY, f"t={SIGNED_AT},v0={VECTOR}", SECRET),
    ],
    ids=["other-secret", "changed-body", "no-header", "garbage", "no-v1", "only-v0"],
)
def test_anything_but_a_matching_v1_is_a_bad_signature(
    body: bytes, header: str | None, secret: str
) -> None:
    """Another secret, a changed body or a header without a matching v1 is a bad signature."""
    with pytest.raises(WebhookRejected) as rejected:
        verify(body, header, secret, _at(0))

    assert rejected.value.reason == "bad_signature"
    assert SECRET not in str(rejected.value)


def _event(event_type: str, obj: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "id": "evt_42",
        "object": "event",
        "type": event_type,
        "created": SIGNED_AT,
        "data": {"object": obj},
        **extra,
    }


INTENT: dict[str, object] = {
    "id": "pi_1",
    "object": "payment_intent",
    "amount": 1000,
    "amount_capturable": 1000,
    "amount_received": 600,
    "currency": "usd",
    "metadata": {"payment_id": "pay_1"},
}


@pytest.mark.parametrize(
    ("event_type", "kind", "minor"),
    [
        ("payment_intent.amount_capturable_updated", "authorized", 1000),
        ("payment_intent.succeeded", "captured", 600),
        ("payment_intent.canceled", "voided", 1000),
        ("payment_intent.payment_failed", "authorization_failed", 1000),
        ("payment_intent.requires_action", "action_required", 1000),
    ],
)
def test_payment_intent_events_map_to_their_kind(event_type: str, kind: str, minor: int) -> None:
    """Each PaymentIntent event becomes its kind, with the amount that event is about."""
    notification = to_notification(_event(event_type, INTENT, account="acct_1"))

    assert notification.kind == kind
    assert notification.amount == Money(minor=minor, currency="USD")
    assert (notification.reference, notification.payment_id) == ("pi_1", "pay_1")
    assert (notification.event_id, notification.account) == ("evt_42", "acct_1")
    assert notification.occurred_at == _at(0)


def test_charge_refunded_points_at_its_payment_intent() -> None:
    """A refunded charge names its PaymentIntent and the total refunded so far."""
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount_refunded": 250,
        "currency": "eur",
        "payment_intent": "pi_1",
        "metadata": {"payment_id": "pay_1"},
    }

    notification = to_notification(_event("charge.refunded", charge))

    assert (notification.kind, notification.reference) == ("refunded", "ch_1")
    assert notification.authorization_reference == "pi_1"
    assert notification.amount == Money(minor=250, currency="EUR")
    assert notification.account is None


def test_other_events_are_ignored_but_kept() -> None:
    """An event type the gateway does not act on is verified and marked ignored."""
    notification = to_notification(_event("customer.created", {"id": "cus_1"}))

    assert (notification.kind, notification.reference, notification.amount) == (
        "ignored",
        "cus_1",
        None,
    )


def test_an_unknown_currency_leaves_the_amount_out() -> None:
    """An amount in a currency the gateway does not know is dropped, not refused."""
    intent = {**INTENT, "currency": "xyz"}

    notification = to_notification(_event("payment_intent.succeeded", intent))

    assert notification.amount is None


@pytest.mark.parametrize(
    "event",
    [
        json.loads(BODY),
        {"id": "evt_1", "type": "payment_intent.succeeded", "created": 1, "data": {}},
        {"id": "evt_1", "type": 5, "created": 1, "data": {"object": {}}},
        {"type": "payment_intent.succeeded", "created": 1, "data": {"object": {}}},
        {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {}}},
        ["not", "an", "object"],
    ],
    ids=["vector", "no-object", "bad-type", "no-id", "no-created", "list"],
)
def test_events_without_their_parts_are_malformed(event: object) -> None:
    """An event lacking its id, type, creation time or object is refused as malformed."""
    with pytest.raises(WebhookRejected) as rejected:
        to_notification(event)

    assert rejected.value.reason == "malformed"
