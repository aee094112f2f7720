"""The fake PayPal's webhooks: signed as PayPal signs them, and delivered over HTTP.

Signature (PayPal's scheme): RSASSA-PKCS1-v1_5 with SHA-256 over
``"{transmission_id}|{transmission_time}|{webhook_id}|{crc32(body) as unsigned decimal}"``,
base64 in ``PAYPAL-TRANSMISSION-SIG``; the certificate is at ``PAYPAL-CERT-URL``. This fake
makes a self-signed RSA 2048 certificate (CN ``*.sandbox.paypal.com``) when it starts and
serves it at ``/_sandbox/certs/<name>.pem``; ``rotate`` makes a new one (old ones stay
served, as PayPal keeps old certificate URLs working).

Events go to every registered webhook (url, webhook id), each signed with its own id, from
a background thread with a few retries. Every transmission is remembered, so that the
online check (``/v1/notifications/verify-webhook-signature``) can be answered.
"""

import asyncio
import base64
import json
import secrets
import threading
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sandbox.paypal_render import stamp

Json = dict[str, object]
DELIVERY_ATTEMPTS: Final = 3
_DELIVERY_BACKOFF_S: Final = 0.2
_RESOURCE_TYPES: Final = {
    "PAYMENT.AUTHORIZATION": "authorization",
    "PAYMENT.CAPTURE": "capture",
    "CHECKOUT.ORDER": "checkout-order",
}


def crc32(body: bytes) -> int:
    """CRC32 of ``body`` as an unsigned integer."""
    return zlib.crc32(body) & 0xFFFFFFFF


def signed_message(transmission_id: str, time: str, webhook_id: str, body: bytes) -> bytes:
    """The text PayPal signs for one transmission."""
    return f"{transmission_id}|{time}|{webhook_id}|{crc32(body)}".encode()


class SigningCertificate:
    """An RSA 2048 key and its self-signed certificate, valid for a year from ``now``."""

    def __init__(self, now: datetime, common_name: str = "*.sandbox.paypal.com") -> None:
        """Generate the key and the certificate."""
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(self._key, hashes.SHA256())
        )
        self.name = f"CERT-360caa42-fca2a594-{secrets.token_hex(4)}"
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM)

    def sign(self, message: bytes) -> str:
        """Base64 of the PKCS#1 v1.5 SHA-256 signature of ``message``."""
        signature = self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    def verifies(self, message: bytes, signature: str) -> bool:
        """Whether ``signature`` (base64) is this key's signature of ``message``."""
        try:
            raw = base64.b64decode(signature, validate=True)
            self._key.public_key().verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return False
        return True


@dataclass(frozen=True, slots=True)
class Transmission:
    """One signed webhook as sent."""

    transmission_id: str
    time: str
    webhook_id: str
    body: bytes
    cert_name: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one delivery: the last HTTP status, or the last error's type."""

    url: str
    event_type: str
    attempts: int
    outcome: str


class Webhooks:
    """Certificates, registered webhooks, signing and background delivery."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        """Make the first certificate; no webhook registered."""
        self._clock = clock
        self._lock = threading.Lock()
        self._cert = SigningCertificate(clock())
        self._certs = {self._cert.name: self._cert}
        self._registered: dict[str, str] = {}
        self._transmissions: dict[str, Transmission] = {}
        self._deliveries: list[Delivery] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.base_url = "http://127.0.0.1"

    def rotate(self) -> str:
        """Sign with a new certificate from now on; the old ones stay served. Its name."""
        cert = SigningCertificate(self._clock())
        with self._lock:
            self._cert = cert
            self._certs[cert.name] = cert
        return cert.name

    def pem(self, name: str) -> bytes | None:
        """The certificate ``name`` in PEM, if it is one of ours."""
        cert = self._certs.get(name)
        return cert.pem if cert is not None else None

    def register(self, url: str, webhook_id: str | None = None) -> str:
        """Send events to ``url``, signed for ``webhook_id`` (a new id when None); the id."""
        webhook_id = webhook_id or f"WH-{secrets.token_hex(8).upper()}"
        with self._lock:
            self._registered[webhook_id] = url
        return webhook_id

    @property
    def deliveries(self) -> list[Delivery]:
        """Every finished delivery, oldest first."""
        with self._lock:
            return list(self._deliveries)

    def event(self, event_type: str, resource: Json, at: datetime) -> Json:
        """The event envelope PayPal posts."""
        resource_type = _RESOURCE_TYPES.get(event_type.rsplit(".", 1)[0], "refund")
        if event_type == "PAYMENT.CAPTURE.REFUNDED":
            resource_type = "refund"
        return {
            "id": f"WH-{secrets.token_hex(10).upper()}",
            "event_version": "1.0",
            "create_time": stamp(at),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": f"{event_type} for {resource.get('id')}",
            "resource": resource,
        }

    def sign(self, body: bytes, webhook_id: str, at: datetime) -> dict[str, str]:
        """The PAYPAL-* headers of ``body`` sent for ``webhook_id`` at ``at``."""
        transmission_id = secrets.token_hex(16)
        time = stamp(at)
        with self._lock:
            cert = self._cert
            self._transmissions[transmission_id] = Transmission(
                transmission_id, time, webhook_id, body, cert.name
            )
        signature = cert.sign(signed_message(transmission_id, time, webhook_id, body))
        return {
            "paypal-auth-algo": "SHA256withRSA",
            "paypal-cert-url": f"{self.base_url}/_sandbox/certs/{cert.name}.pem",
            "paypal-transmission-id": transmission_id,
            "paypal-transmission-sig": signature,
            "paypal-transmission-time": time,
            "content-type": "application/json",
        }

    def verify(self, request: Json) -> bool:
        """The online check: was this event sent by us, for this webhook id, unchanged?"""
        transmission_id = request.get("transmission_id")
        with self._lock:
            sent = self._transmissions.get(str(transmission_id))
        if sent is None or request.get("webhook_event") != json.loads(sent.body):
            return False
        cert_url, time = request.get("cert_url"), request.get("transmission_time")
        cert = self._certs.get(sent.cert_name)
        if cert is None or not str(cert_url).endswith(f"/{sent.cert_name}.pem"):
            return False
        message = signed_message(
            sent.transmission_id, str(time), str(request.get("webhook_id")), sent.body
        )
        return cert.verifies(message, str(request.get("transmission_sig")))

    def emit(self, event_type: str, resource: Json) -> None:
        """Announce an event to every registered webhook (from any thread; never blocks)."""
        with self._lock:
            targets = list(self._registered.items())
        if not targets:
            return
        at = self._clock()
        body = json.dumps(self.event(event_type, resource, at)).encode()
        for webhook_id, url in targets:
            headers = self.sign(body, webhook_id, at)
            self._submit(self._deliver(url, event_type, body, headers))

    def _submit(self, work: Coroutine[Any, Any, None]) -> None:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="fake-paypal-webhooks", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            loop = self._loop
        asyncio.run_coroutine_threadsafe(work, loop)

    async def _deliver(
        self, url: str, event_type: str, body: bytes, headers: dict[str, str]
    ) -> None:
        outcome = "not sent"
        attempt = 0
        async with httpx.AsyncClient(timeout=5.0) as client:
            for attempt in range(1, DELIVERY_ATTEMPTS + 1):
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                else:
                    outcome = str(response.status_code)
                    if response.is_success:
                        break
                if attempt < DELIVERY_ATTEMPTS:
                    await asyncio.sleep(_DELIVERY_BACKOFF_S * attempt)  # the sender's backoff
        with self._lock:
            self._deliveries.append(Delivery(url, event_type, attempt, outcome))

    def close(self) -> None:
        """Stop the delivery thread; deliveries still under way are cancelled."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        loop.close()


async def _cancel_all() -> None:
    """Cancel the delivery loop's other tasks and wait for them to end."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def now_utc() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)
