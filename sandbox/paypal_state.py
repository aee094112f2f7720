"""The fake PayPal's state beside its ledger, bundled for the routes in ``SandboxState``.

REST clients and their tokens, the answers stored per ``PayPal-Request-Id``, and settings.
"""

import base64
import binascii
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sandbox.paypal_faults import Faults
from sandbox.paypal_ledger import Ledger
from sandbox.paypal_model import PayPalApiError
from sandbox.paypal_webhooks import Webhooks

Json = dict[str, object]
DEFAULT_TOKEN_TTL_S: Final = 32400
MAX_PAGE_SIZE: Final = 500


class OAuthError(Exception):
    """A 401 with OAuth's error body (``error``, ``error_description``)."""

    def __init__(self, error: str, description: str) -> None:
        """Refuse with ``error``."""
        super().__init__(error)
        self.error = error
        self.description = description


class Accounts:
    """REST clients (id -> secret) and the access tokens issued to them.

    With no fixed clients, any client id is accepted and its first secret sticks (handy in
    dev, where tenants' placeholder keys are not known in advance).
    """

    def __init__(self, clients: Mapping[str, str] | None, clock: Callable[[], datetime]) -> None:
        """Accept ``clients`` only, or any client when None."""
        self._lock = threading.Lock()
        self._clock = clock
        self._open = clients is None
        self._clients = dict(clients or {})
        self._revoked: set[str] = set()
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self.token_ttl_s = DEFAULT_TOKEN_TTL_S
        self.token_requests = 0

    def add(self, client_id: str, secret: str) -> None:
        """Accept ``client_id`` with ``secret``."""
        with self._lock:
            self._clients[client_id] = secret
            self._revoked.discard(client_id)

    def revoke(self, client_id: str) -> None:
        """Refuse ``client_id`` from now on, and the tokens issued to it."""
        with self._lock:
            self._clients.pop(client_id, None)
            self._revoked.add(client_id)
            self._tokens = {t: v for t, v in self._tokens.items() if v[0] != client_id}

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (as when they expire)."""
        with self._lock:
            self._tokens.clear()

    @property
    def issued(self) -> int:
        """How many tokens are currently valid."""
        with self._lock:
            return len(self._tokens)

    def issue(self, authorization: str | None, form: Mapping[str, str]) -> Json:
        """``POST /v1/oauth2/token`` with Basic client credentials: a bearer token."""
        with self._lock:
            self.token_requests += 1
        client_id, secret = _basic(authorization)
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "Grant Type is NULL or not supported")
        with self._lock:
            known = self._clients.get(client_id)
            if known is None and self._open and client_id not in self._revoked:
                self._clients[client_id] = known = secret
            if known is None or not secrets.compare_digest(known, secret):
                raise OAuthError("invalid_client", "Client Authentication failed")
            token = "A21AA" + secrets.token_urlsafe(48)
            expires = self._clock() + timedelta(seconds=self.token_ttl_s)
            self._tokens[token] = (client_id, expires)
        return {
            "scope": "https://uri.paypal.com/services/payments/payment/authcapture",
            "access_token": token,
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": self.token_ttl_s,
            "nonce": secrets.token_hex(12),
        }

    def owner_of(self, authorization: str | None) -> str:
        """The client id a ``Bearer`` token was issued to; 401 for any other header."""
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            found = self._tokens.get(token) if scheme.lower() == "bearer" else None
            if found is None or found[1] <= self._clock():
                self._tokens.pop(token, None)
                raise OAuthError("invalid_token", "Access Token not found in cache")
            return found[0]


def _basic(authorization: str | None) -> tuple[str, str]:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "Client Authentication failed")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "Client Authentication failed") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise OAuthError("invalid_client", "Client Authentication failed")
    return client_id, secret


@dataclass(frozen=True, slots=True)
class Stored:
    """The answer given to one ``PayPal-Request-Id``."""

    status: int
    body: Json | None


_PENDING: Final = Stored(0, None)


class Idempotency:
    """Answers kept per (client, path, ``PayPal-Request-Id``) and replayed for that id."""

    def __init__(self) -> None:
        """Nothing stored."""
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str, str], Stored] = {}

    def begin(self, key: tuple[str, str, str]) -> Stored | None:
        """The stored answer for ``key``, or None after claiming it; 409 while in progress."""
        with self._lock:
            found = self._answers.get(key)
            if found is _PENDING:
                raise PayPalApiError(
                    409, "PREVIOUS_REQUEST_IN_PROGRESS", "a request with this id is in progress"
                )
            if found is None:
                self._answers[key] = _PENDING
            return found

    def finish(self, key: tuple[str, str, str], answer: Stored | None) -> None:
        """Keep ``answer`` for ``key``; None releases the claim (nothing was applied)."""
        with self._lock:
            if answer is None:
                self._answers.pop(key, None)
            else:
                self._answers[key] = answer


@dataclass(slots=True)
class Settings:
    """How the fake behaves for new orders and reports."""

    auto_approve: bool = False
    """Orders are approved when created (as with a payer's saved PayPal wallet)."""
    approval_required: int = 0
    """How many of the next orders wait for the payer even when ``auto_approve`` is on."""
    max_page_size: int = MAX_PAGE_SIZE
    lock: threading.Lock = field(default_factory=threading.Lock)

    def approved_at_creation(self) -> bool:
        """Whether the order being created is approved at once."""
        with self.lock:
            if self.approval_required > 0:
                self.approval_required -= 1
                return False
            return self.auto_approve


@dataclass(slots=True)
class SandboxState:
    """Everything the routes work on."""

    ledger: Ledger
    accounts: Accounts
    webhooks: Webhooks
    faults: Faults
    settings: Settings = field(default_factory=Settings)
    idempotency: Idempotency = field(default_factory=Idempotency)
