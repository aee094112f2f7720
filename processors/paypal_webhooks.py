"""PayPal webhooks: the signature checked offline (or by PayPal), the event normalized.

Offline check, as PayPal documents it: the message
``"{transmission_id}|{transmission_time}|{webhook_id}|{crc32(raw body) as unsigned decimal}"``
(``webhook_id``: OUR id for the endpoint) must carry ``PAYPAL-TRANSMISSION-SIG``, a base64
RSASSA-PKCS1-v1_5 SHA-256 signature, made with the key of the X.509 certificate at
``PAYPAL-CERT-URL``. The certificate is fetched only from an https URL on an allowlisted
host (PayPal's; plus, in sandbox mode only, the local sandbox's own origin over http),
never following a redirect, and cached by URL; its common name must end in
``.paypal.com`` and it must be valid now. When it cannot be fetched, PayPal is asked
instead (``/v1/notifications/verify-webhook-signature``). A transmission more than
``TOLERANCE`` away from now is refused as stale.

A verified event becomes a ``Notification``: ``event_id`` is the event's id (PayPal's
redeliveries keep it), ``payment_id`` comes from ``custom_id`` when present.
"""

import base64
import json
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final

import httpx
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from processors.errors import ProcessorError, WebhookRejected
from processors.paypal_mapping import money_in, obj, optional_text, payment_id_from, time_in
from processors.port import WebhookRequest
from schemas.clock import Clock
from schemas.notifications import Notification, NotificationKind
from schemas.processors import Processor

Json = dict[str, object]
OnlineCheck = Callable[[Json], Awaitable[bool]]

DEFAULT_CERT_HOSTS: Final = frozenset(
    {"api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"}
)
TOLERANCE: Final = timedelta(seconds=300)
_MAX_CERT_BYTES: Final = 64 * 1024
_HEADERS: Final = (
    "paypal-transmission-id",
    "paypal-transmission-time",
    "paypal-transmission-sig",
    "paypal-cert-url",
    "paypal-auth-algo",
)
_KINDS: Final[dict[str, NotificationKind]] = {
    "PAYMENT.AUTHORIZATION.CREATED": "authorized",
    "PAYMENT.AUTHORIZATION.VOIDED": "voided",
    "PAYMENT.CAPTURE.COMPLETED": "captured",
    "PAYMENT.CAPTURE.DECLINED": "capture_failed",
    "PAYMENT.CAPTURE.DENIED": "capture_failed",
    "PAYMENT.CAPTURE.REFUNDED": "refunded",
    "CHECKOUT.ORDER.APPROVED": "approved",
}
"""Events the gateway acts on; every other verified event is ``ignored``. On
CHECKOUT.ORDER.APPROVED the gateway inquires about the waiting authorization, which
authorizes the approved order."""

_log = structlog.get_logger(__name__)


def crc32(body: bytes) -> int:
    """CRC32 of ``body`` as an unsigned integer, as PayPal's signed message has it."""
    return zlib.crc32(body) & 0xFFFFFFFF


class WebhookVerifier:
    """Checks PayPal's signatures; caches certificates by URL."""

    def __init__(  # noqa: PLR0913 (the verifier's dependencies, named at the call site)
        self,
        *,
        http: httpx.AsyncClient,
        clock: Clock,
        cert_hosts: frozenset[str],
        sandbox_origin: str | None,
        timeout_s: float,
        online: OnlineCheck,
    ) -> None:
        """Fetch certificates with ``http`` from ``cert_hosts`` (and ``sandbox_origin``)."""
        self._http = http
        self._clock = clock
        self._cert_hosts = cert_hosts
        self._sandbox = httpx.URL(sandbox_origin) if sandbox_origin else None
        self._timeout = httpx.Timeout(timeout_s)
        self._online = online
        self._certs: dict[str, x509.Certificate] = {}

    async def verify(self, webhook: WebhookRequest, webhook_id: str) -> None:
        """Return if ``webhook`` is PayPal's, fresh and for ``webhook_id``; else reject it."""
        headers = {name: webhook.headers.get(name, "") for name in _HEADERS}
        missing = [name for name, value in headers.items() if not value]
        if missing:
            raise WebhookRejected("bad_signature", f"missing header {missing[0]}")
        if headers["paypal-auth-algo"] != "SHA256withRSA":
            raise WebhookRejected("bad_signature", "unsupported PAYPAL-AUTH-ALGO")
        sent_at = _time(headers["paypal-transmission-time"])
        if abs(self._clock() - sent_at) > TOLERANCE:
            raise WebhookRejected("stale", "the transmission time is outside the tolerance")
        url = headers["paypal-cert-url"]
        if not self._allowed(url):
            raise WebhookRejected("bad_signature", "PAYPAL-CERT-URL is not an allowed PayPal host")
        certificate = await self._certificate(url)
        if certificate is None:
            await self._verify_online(headers, webhook, webhook_id)
            return
        self._check_certificate(certificate)
        message = "|".join(
            (
                headers["paypal-transmission-id"],
                headers["paypal-transmission-time"],
                webhook_id,
                str(crc32(webhook.body)),
            )
        )
        _check_signature(certificate, message.encode(), headers["paypal-transmission-sig"])

    def _allowed(self, url: str) -> bool:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            return False
        if parsed.userinfo:
            return False
        if parsed.scheme == "https" and parsed.host in self._cert_hosts:
            return True
        sandbox = self._sandbox
        return sandbox is not None and (parsed.scheme, parsed.host, parsed.port) == (
            sandbox.scheme,
            sandbox.host,
            sandbox.port,
        )

    async def _certificate(self, url: str) -> x509.Certificate | None:
        """The certificate at ``url``, cached; None when it cannot be had now."""
        if (cached := self._certs.get(url)) is not None:
            return cached
        try:
            response = await self._http.get(url, timeout=self._timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            _log.warning("paypal_certificate_unavailable", error=type(exc).__name__)
            return None
        if response.status_code != 200 or len(response.content) > _MAX_CERT_BYTES:  # noqa: PLR2004 (HTTP 200)
            _log.warning("paypal_certificate_unavailable", status=response.status_code)
            return None
        try:
            certificate = x509.load_pem_x509_certificate(response.content)
        except ValueError:
            _log.warning("paypal_certificate_unreadable")
            return None
        self._certs[url] = certificate
        return certificate

    def _check_certificate(self, certificate: x509.Certificate) -> None:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = names[0].value if names else ""
        if not isinstance(common_name, str) or not common_name.endswith(".paypal.com"):
            raise WebhookRejected("bad_signature", "the certificate is not PayPal's")
        now = self._clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise WebhookRejected("bad_signature", "the certificate is not valid now")

    async def _verify_online(
        self, headers: dict[str, str], webhook: WebhookRequest, webhook_id: str
    ) -> None:
        try:
            event = json.loads(webhook.body)
        except ValueError:
            raise WebhookRejected("malformed", "the body is not JSON") from None
        request: Json = {
            "auth_algo": headers["paypal-auth-algo"],
            "cert_url": headers["paypal-cert-url"],
            "transmission_id": headers["paypal-transmission-id"],
            "transmission_sig": headers["paypal-transmission-sig"],
            "transmission_time": headers["paypal-transmission-time"],
            "webhook_id": webhook_id,
            "webhook_event": event,
        }
        try:
            verified = await self._online(request)
        except ProcessorError as exc:
            _log.warning("paypal_online_verification_failed", error=exc.vendor_code)
            raise WebhookRejected(
                "bad_signature", "the certificate is unavailable and PayPal could not be asked"
            ) from None
        if not verified:
            raise WebhookRejected("bad_signature", "PayPal did not verify the signature")


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise WebhookRejected("bad_signature", "unreadable PAYPAL-TRANSMISSION-TIME") from None
    if parsed.tzinfo is None:
        raise WebhookRejected("bad_signature", "PAYPAL-TRANSMISSION-TIME has no time zone")
    return parsed


def _check_signature(certificate: x509.Certificate, message: bytes, signature: str) -> None:
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRejected("bad_signature", "the certificate's key is not RSA")
    try:
        key.verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (ValueError, InvalidSignature):
        raise WebhookRejected("bad_signature", "the signature does not match") from None


def notification(body: bytes) -> Notification:
    """The verified event ``body`` in the gateway's words; ``WebhookRejected`` if unreadable."""
    try:
        event = obj(json.loads(body), "event")
        return _notification(event)
    except (ValueError, ValidationError, ProcessorError) as exc:
        raise WebhookRejected("malformed", f"not a PayPal event: {type(exc).__name__}") from None


def _notification(event: Json) -> Notification:
    event_type = optional_text(event, "event_type") or ""
    resource = obj(event.get("resource"), "event.resource")
    occurred = time_in(event, "create_time")
    kind = _KINDS.get(event_type, "ignored")
    if event_type == "PAYMENT.AUTHORIZATION.VOIDED" and _expired(resource, occurred):
        kind = "expired"  # PayPal voids an authorization at the end of its validity
    related = resource.get("supplementary_data")
    ids = related.get("related_ids") if isinstance(related, dict) else None
    authorization = optional_text(ids, "authorization_id") if isinstance(ids, dict) else None
    source = resource
    if event_type.startswith("CHECKOUT.ORDER."):
        units = resource.get("purchase_units")
        source = obj(units[0], "purchase_units[0]") if isinstance(units, list) and units else {}
    if event_type.startswith("PAYMENT.AUTHORIZATION."):
        authorization = optional_text(resource, "id")
    return Notification(
        processor=Processor.PAYPAL,
        event_id=optional_text(event, "id") or "",
        vendor_type=event_type,
        kind=kind,
        reference=optional_text(resource, "id"),
        authorization_reference=authorization,
        payment_id=payment_id_from(optional_text(source, "custom_id")),
        amount=money_in(source, "amount", "resource") if "amount" in source else None,
        occurred_at=occurred,
    )


def _expired(resource: Json, occurred: datetime | None) -> bool:
    expires = time_in(resource, "expiration_time")
    return expires is not None and occurred is not None and occurred >= expires
