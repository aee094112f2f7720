"""Stripe webhooks: the signature checked with the SDK, the event mapped to a ``Notification``.

``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``; the expected signature is the hex
HMAC-SHA256 of ``"{t}.{raw body}"`` keyed with the whole ``whsec_`` secret, and any ``v1``
may match (several during a secret rotation). The SDK's ``WebhookSignature.verify_header``
checks the signature; the age check is ours, against the injected clock, both ways
(``TOLERANCE``), so that tests need no real time and a future timestamp is refused too.

Event types map to notification kinds (anything else is ``ignored``)::

    payment_intent.amount_capturable_updated  authorized            amount_capturable
    payment_intent.succeeded                  captured              amount_received
    payment_intent.canceled                   voided                amount
    payment_intent.payment_failed             authorization_failed  amount
    payment_intent.requires_action            action_required       amount
    charge.refunded                           refunded              amount_refunded (the
                                              charge's total so far; reference: the charge,
                                              authorization_reference: its PaymentIntent)

``payment_id`` comes from the object's metadata; ``account`` from the event (Connect).
"""

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import stripe
from pydantic import ValidationError

from processors.errors import WebhookRejected
from processors.stripe_mapping import CURRENCIES, timestamp
from schemas.money import Money
from schemas.notifications import Notification, NotificationKind
from schemas.processors import Processor

SIGNATURE_HEADER: Final = "stripe-signature"
TOLERANCE: Final = timedelta(seconds=300)

KINDS: Final[Mapping[str, NotificationKind]] = {
    "payment_intent.amount_capturable_updated": "authorized",
    "payment_intent.succeeded": "captured",
    "payment_intent.canceled": "voided",
    "payment_intent.payment_failed": "authorization_failed",
    "payment_intent.requires_action": "action_required",
    "charge.refunded": "refunded",
}
_AMOUNT_FIELDS: Final[Mapping[NotificationKind, str]] = {
    "authorized": "amount_capturable",
    "captured": "amount_received",
    "refunded": "amount_refunded",
}


def _signed_at(header: str) -> int:
    stamps = [part[2:] for part in header.split(",") if part.startswith("t=")]
    return int(stamps[0])


def verify(body: bytes, header: str | None, secret: str, now: datetime) -> None:
    """Check the signature, then the age; ``WebhookRejected`` if either fails."""
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        raise WebhookRejected("bad_signature", "no Stripe-Signature v1 matches") from None
    except UnicodeDecodeError:
        raise WebhookRejected("malformed", "the body is not UTF-8") from None
    signed_at = _signed_at(header or "")
    if abs(now.timestamp() - signed_at) > TOLERANCE.total_seconds():
        raise WebhookRejected("stale", "the signature's timestamp is outside the tolerance")


def _amount(obj: Mapping[str, Any], name: str) -> Money | None:
    value, currency = obj.get(name), obj.get("currency")
    if not isinstance(value, int) or isinstance(value, bool) or not isinstance(currency, str):
        return None
    if currency.upper() not in CURRENCIES or value < 0:
        return None
    return Money(minor=value, currency=currency.upper())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def to_notification(event: object) -> Notification:
    """The notification a verified event makes; ``WebhookRejected("malformed")`` if none."""
    if not isinstance(event, Mapping):
        raise WebhookRejected("malformed", "the event is not a JSON object")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    event_type, created = event.get("type"), event.get("created")
    if not isinstance(obj, Mapping) or not isinstance(event_type, str):
        raise WebhookRejected("malformed", "the event lacks its type or data.object")
    if not isinstance(created, int) or isinstance(created, bool):
        raise WebhookRejected("malformed", "the event lacks its creation time")
    kind = KINDS.get(event_type, "ignored")
    metadata = obj.get("metadata")
    is_charge = obj.get("object") == "charge"
    try:
        return Notification(
            processor=Processor.STRIPE,
            event_id=event.get("id"),
            vendor_type=event_type[:100],
            kind=kind,
            reference=_text(obj.get("id")),
            authorization_reference=_text(obj.get("payment_intent")) if is_charge else None,
            payment_id=_text(metadata.get("payment_id")) if isinstance(metadata, Mapping) else None,
            amount=None if kind == "ignored" else _amount(obj, _AMOUNT_FIELDS.get(kind, "amount")),
            account=_text(event.get("account")),
            occurred_at=timestamp(created),
        )
    except ValidationError as exc:
        raise WebhookRejected(
            "malformed", f"not a usable event: {exc.error_count()} errors"
        ) from None


def parse(body: bytes, header: str | None, secret: str, now: datetime) -> Notification:
    """Verify a webhook and normalize it."""
    verify(body, header, secret, now)
    try:
        event = json.loads(body)
    except ValueError:
        raise WebhookRejected("malformed", "the body is not JSON") from None
    return to_notification(event)
