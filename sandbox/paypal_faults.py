"""Failure injection for the fake PayPal: what tests and developers arm, and the middleware.

A fault is armed for a *target*, the kind of request it hits (``target_of`` names every
API request; the health probe and ``/_sandbox`` admin requests are never hit), and is
consumed by the next request of that target:

- ``status``: answer 500, 503, 429 (with ``Retry-After``) or 401 without applying anything;
- ``timeout_before``: hold the request, unapplied, until the client gives up;
- ``timeout_after``: apply it, then hold the response until the client gives up;
- ``malformed``: apply it, then answer an HTML page, truncated JSON, JSON without its
  fields, or an unknown status.

Declines are not faults but answers (stored for the ``PayPal-Request-Id`` and replayed), so
the routes take them with ``take_decline``. ``latency`` delays every API request.
"""

import asyncio
import contextlib
import json
import re
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Final, Literal

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.paypal_model import Decline, PayPalApiError

Target = Literal[
    "token",
    "create_order",
    "authorize_order",
    "capture",
    "void",
    "reauthorize",
    "refund",
    "read",
    "transactions",
    "verify_webhook",
    "certs",
    "any",
]
Malformed = Literal["html", "truncated", "missing_fields", "unknown_status"]
FaultKind = Literal["status", "timeout_before", "timeout_after", "malformed"]

_POSTS: Final = (
    (re.compile(r"/v1/oauth2/token"), "token"),
    (re.compile(r"/v2/checkout/orders"), "create_order"),
    (re.compile(r"/v2/checkout/orders/[^/]+/(authorize|capture)"), "authorize_order"),
    (re.compile(r"/v2/payments/authorizations/[^/]+/capture"), "capture"),
    (re.compile(r"/v2/payments/authorizations/[^/]+/void"), "void"),
    (re.compile(r"/v2/payments/authorizations/[^/]+/reauthorize"), "reauthorize"),
    (re.compile(r"/v2/payments/captures/[^/]+/refund"), "refund"),
    (re.compile(r"/v1/notifications/verify-webhook-signature"), "verify_webhook"),
)
HOLD_MAX_S: Final = 30.0
"""The longest a held request waits for its client to give up."""


def target_of(method: str, path: str) -> str | None:
    """The fault target of a request; None for the health probe and admin requests."""
    if path.startswith("/_sandbox/certs/"):
        return "certs"
    if path.startswith("/_sandbox/") or path == "/checkoutnow":
        return None
    if method == "POST":
        return next((name for pattern, name in _POSTS if pattern.fullmatch(path)), "any")
    return "transactions" if path == "/v1/reporting/transactions" else "read"


@dataclass(frozen=True, slots=True)
class Fault:
    """One armed failure."""

    kind: FaultKind
    target: str
    status: int = 500
    retry_after: int | None = None
    malformed: Malformed = "html"


class Faults:
    """The armed faults and declines, shared by the test's thread and the server's."""

    def __init__(self) -> None:
        """Nothing armed, no latency."""
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._declines: dict[str, deque[Decline]] = {}
        self.latency = 0.0
        self.counts: Counter[str] = Counter()

    def arm(self, fault: Fault, times: int = 1) -> None:
        """Arm ``fault`` for the next ``times`` requests of its target."""
        with self._lock:
            self._faults.extend([fault] * times)

    def decline_next(self, target: str, decline: Decline) -> None:
        """Refuse the next ``target`` request (an order authorization, capture, void, refund)."""
        with self._lock:
            self._declines.setdefault(target, deque()).append(decline)

    def take_decline(self, target: str) -> Decline | None:
        """The decline armed for this ``target`` request, if any."""
        with self._lock:
            queue = self._declines.get(target)
            return queue.popleft() if queue else None

    def clear(self) -> None:
        """Disarm everything and drop the latency."""
        with self._lock:
            self._faults.clear()
            self._declines.clear()
            self.latency = 0.0

    def take(self, target: str) -> Fault | None:
        """Count a request of ``target`` and take the first fault armed for it."""
        with self._lock:
            self.counts[target] += 1
            for index, fault in enumerate(self._faults):
                if fault.target == target or (fault.target == "any" and target != "certs"):
                    del self._faults[index]
                    return fault
            return None


class FaultMiddleware:
    """ASGI middleware that applies the armed faults and the latency."""

    def __init__(self, app: ASGIApp, faults: Faults, *, hold_max_s: float = HOLD_MAX_S) -> None:
        """Wrap ``app``."""
        self._app = app
        self._faults = faults
        self._hold_max_s = hold_max_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, fail it, hold it or garble its answer, as armed."""
        target = target_of(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if target is None:
            await self._app(scope, receive, send)
            return
        fault = self._faults.take(target)
        if self._faults.latency > 0:
            await asyncio.sleep(self._faults.latency)  # the vendor's simulated processing time
        if fault is None:
            await self._app(scope, receive, send)
        elif fault.kind == "status":
            await _status_response(fault)(scope, receive, send)
        elif fault.kind == "timeout_before":
            await self._hold(receive)
        elif fault.kind == "timeout_after":
            await self._app(scope, receive, _discard)
            await self._hold(receive)
        else:
            await self._garbled(scope, receive, send, fault.malformed)

    async def _hold(self, receive: Receive) -> None:
        """Wait, without answering, until the client disconnects (or ``hold_max_s``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._hold_max_s):
                while (await receive())["type"] != "http.disconnect":
                    pass

    async def _garbled(self, scope: Scope, receive: Receive, send: Send, how: Malformed) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, keep)
        body, content_type = garble(b"".join(chunks), how)
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send(
            {"type": "http.response.start", "status": start.get("status", 200), "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})


async def _discard(_: Message) -> None:
    """Drop the response: it is lost on the way back."""


def _status_response(fault: Fault) -> JSONResponse:
    if fault.status == 401:  # noqa: PLR2004 (HTTP 401 has OAuth's own error body)
        body = {
            "error": "invalid_token",
            "error_description": "Token signature verification failed",
        }
        return JSONResponse(body, status_code=401)
    issue = "RATE_LIMIT_REACHED" if fault.status == 429 else None  # noqa: PLR2004 (HTTP 429)
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
    error = PayPalApiError(fault.status, issue, "injected failure")
    return JSONResponse(error.body(), status_code=fault.status, headers=headers)


def garble(body: bytes, how: Malformed) -> tuple[bytes, bytes]:
    """``body`` broken as ``how`` says; with the content type to send it with."""
    if how == "html":
        return b"<html><body><h1>502 Bad Gateway</h1></body></html>", b"text/html"
    if how == "truncated":
        return body[: max(1, len(body) // 2)], b"application/json"
    try:
        data = json.loads(body)
    except ValueError:
        return body, b"application/json"
    if not isinstance(data, dict):
        return body, b"application/json"
    if how == "missing_fields":
        data = {"status": data.get("status")}
    else:
        data["status"] = "MYSTERIOUS_NEW_STATUS"
    return json.dumps(data).encode(), b"application/json"
