"""Webhook deliveries of the fake Stripe: events signed as Stripe signs them, POSTed with httpx.

One endpoint may be configured (a URL and its ``whsec_`` secret). Each event is sent by a
fire-and-forget task on the server's event loop, retried a few times with a short backoff
when the endpoint fails or is unreachable; ``deliveries`` records every outcome. Events
are emitted from any thread (tests drive the sandbox from their own), so scheduling goes
through ``call_soon_threadsafe``.
"""

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import httpx

from sandbox.stripe_objects import Event, event_json
from sandbox.stripe_wire import signature_header

DEFAULT_SECRET: Final = "whsec_sandbox"  # noqa: S105 (the sandbox's well-known test secret)
_USER_AGENT: Final = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of sending one event: the endpoint's status, or None if never answered."""

    event_id: str
    event_type: str
    status: int | None
    attempts: int


def signed_request(
    event: Event, secrets: list[str], timestamp: int
) -> tuple[dict[str, str], bytes]:
    """The headers and body of ``event``'s webhook, signed at ``timestamp``."""
    body = json.dumps(event_json(event), separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json; charset=utf-8",
        "stripe-signature": signature_header(secrets, timestamp, body),
        "user-agent": _USER_AGENT,
    }
    return headers, body


class WebhookSender:
    """Sends events to the configured endpoint from the server's loop."""

    def __init__(
        self,
        *,
        secret: str = DEFAULT_SECRET,
        clock: Callable[[], float] = time.time,
        attempts: int = 4,
        backoff_s: float = 0.1,
        timeout_s: float = 5.0,
    ) -> None:
        """No endpoint yet; events are only recorded until one is configured."""
        self._lock = threading.Lock()
        self._clock = clock
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._url: str | None = None
        self.secret = secret
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: list[Delivery] = []

    @property
    def url(self) -> str | None:
        """Where events go, if anywhere."""
        return self._url

    def configure(self, url: str | None, secret: str | None = None) -> None:
        """Send future events to ``url`` (None: stop sending), signed with ``secret``."""
        with self._lock:
            self._url = url
            if secret is not None:
                self.secret = secret

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` (the server's); called as requests arrive."""
        self._loop = loop

    def sign(
        self, event: Event, *, timestamp: int | None = None, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """``event`` as the endpoint would receive it (for tests and resends)."""
        at = int(self._clock()) if timestamp is None else timestamp
        return signed_request(event, [secret or self.secret], at)

    def emit(self, event: Event) -> None:
        """Send ``event`` in the background if an endpoint is configured; never blocks."""
        loop = self._loop
        if self._url is None or loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._start, event)

    def _start(self, event: Event) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event: Event) -> None:
        status: int | None = None
        attempt = 0
        async with httpx.AsyncClient(timeout=self._timeout_s) as client:
            for attempt in range(1, self._attempts + 1):
                url = self._url
                if url is None:
                    break
                headers, body = self.sign(event)
                try:
                    response = await client.post(url, content=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = None
                if (status is not None and status < 300) or attempt == self._attempts:  # noqa: PLR2004 (2xx is delivered)
                    break
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))  # Stripe's backoff
        with self._lock:
            self.deliveries.append(Delivery(event.id, event.type, status, attempt))
