"""Webhooks of the fake processor: signed like Stripe's, parsed into ``Notification``.

The signature header is ``fake-signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`` with
the fake's secret; events older than ``TOLERANCE`` are refused as stale.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from pydantic import ValidationError

from processors.errors import WebhookRejected
from processors.port import WebhookRequest
from schemas.notifications import Notification

SIGNATURE_HEADER: Final = "fake-signature"
TOLERANCE: Final = timedelta(minutes=5)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(notification: Notification, secret: str, at: datetime) -> WebhookRequest:
    """The webhook request that announces ``notification``, signed at ``at``."""
    body = notification.model_dump_json().encode()
    timestamp = int(at.timestamp())
    header = f"t={timestamp},v1={_digest(secret, timestamp, body)}"
    return WebhookRequest({SIGNATURE_HEADER: header, "content-type": "application/json"}, body, at)


def _parts(headers: Mapping[str, str]) -> tuple[int, list[str]]:
    raw = headers.get(SIGNATURE_HEADER)
    if raw is None:
        raise WebhookRejected("bad_signature", f"missing {SIGNATURE_HEADER} header")
    fields = [item.split("=", 1) for item in raw.split(",") if "=" in item]
    stamps = [value for key, value in fields if key == "t"]
    signatures = [value for key, value in fields if key == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise WebhookRejected("bad_signature", f"malformed {SIGNATURE_HEADER} header")
    return int(stamps[0]), signatures


def verify(webhook: WebhookRequest, secret: str, now: datetime) -> Notification:
    """Check the signature and freshness, then parse; ``WebhookRejected`` otherwise."""
    timestamp, signatures = _parts(webhook.headers)
    expected = _digest(secret, timestamp, webhook.body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookRejected("bad_signature", "no signature matches")
    if abs(now.timestamp() - timestamp) > TOLERANCE.total_seconds():
        raise WebhookRejected("stale", "the signature's timestamp is outside the tolerance")
    try:
        return Notification.model_validate(json.loads(webhook.body))
    except (ValueError, ValidationError) as exc:
        raise WebhookRejected("malformed", f"not a notification: {type(exc).__name__}") from exc
