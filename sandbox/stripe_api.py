"""A stateful fake of Stripe's REST API (v1) on loopback, for dev and tests.

It speaks the wire format closely enough that the official SDK runs against it unchanged::

    with FakeStripe() as fake:
        client = stripe.StripeClient(
            "sk_test_sandbox", http_client=stripe.HTTPXClient(), base_addresses={"api": fake.url}
        )

Covered (objects live in the ``Stripe-Account`` connected account, else the key's own)::

    POST /v1/payment_intents               create; confirm=true decides the outcome
    GET  /v1/payment_intents[/{id}]        list (newest first) / retrieve (expand latest_charge)
    POST /v1/payment_intents/{id}/capture  amount_to_capture, final_capture
    POST /v1/payment_intents/{id}/cancel   cancellation_reason
    POST /v1/refunds                       payment_intent, amount, reason, metadata
    GET  /v1/refunds[/{id}]                list (payment_intent filter) / retrieve
    GET  /v1/balance_transactions          created[gte|lt], pagination, expand data.source
    POST /oauth/token                      Connect OAuth code exchange (``sandbox.stripe_oauth``)

Unknown API keys get 401; POSTs honour ``Idempotency-Key`` (see ``sandbox.stripe_faults``).
The admin endpoints under ``/_sandbox`` (``sandbox.stripe_admin``) drive the same controls
that tests call in-process on ``FakeStripe``. For dev, ``python -m sandbox.stripe_api``.
"""

import argparse
import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Final

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox import stripe_admin
from sandbox.gcp_server import LoopbackServer
from sandbox.stripe_faults import Fail, Faults, Garble, GarbleKind, Hold, IdempotencyStore, Script
from sandbox.stripe_http import RecordedRequest, StripeHttp
from sandbox.stripe_oauth import StripeOAuth
from sandbox.stripe_state import Outcome, StripeState
from sandbox.stripe_webhooks import DEFAULT_SECRET, Delivery, WebhookSender
from sandbox.stripe_wire import Params

__all__ = ["DEFAULT_KEY", "FakeStripe", "RecordedRequest", "main"]

DEFAULT_KEY: Final = "sk_test_sandbox"


class _BindLoop:
    """ASGI middleware: tells the webhook sender which loop the server runs on."""

    def __init__(self, app: ASGIApp, sender: WebhookSender) -> None:
        self._app = app
        self._sender = sender

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._sender.bind(asyncio.get_running_loop())
        await self._app(scope, receive, send)


class FakeStripe(LoopbackServer):
    """The fake Stripe API served on 127.0.0.1, with its state and fault controls."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (DEFAULT_KEY,),
        webhook_url: str | None = None,
        webhook_secret: str = DEFAULT_SECRET,
        clock: Callable[[], float] = time.time,
        max_hold_s: float = 30.0,
    ) -> None:
        """A fake accepting ``api_keys``, sending webhooks to ``webhook_url`` if given."""
        self._keys: dict[str, str] = {}
        for key in api_keys:
            self.add_api_key(key)
        self._clock = clock
        self.webhooks = WebhookSender(secret=webhook_secret, clock=clock)
        self.webhooks.configure(webhook_url)
        self.state = StripeState(clock=clock, on_event=self.webhooks.emit)
        self.faults = Faults()
        self.idempotency = IdempotencyStore(clock)
        self.http = StripeHttp(
            keys=self._keys,
            state=self.state,
            faults=self.faults,
            idempotency=self.idempotency,
            max_hold_s=max_hold_s,
        )
        self.oauth = StripeOAuth(self._keys)
        routes = [*self.http.routes(), *self.oauth.routes(), *stripe_admin.routes(self)]
        self.app = _BindLoop(Starlette(routes=routes), self.webhooks)
        super().__init__(self.app, name="fake-stripe")

    @property
    def requests(self) -> list[RecordedRequest]:
        """The API requests received so far (never their API key)."""
        return list(self.http.requests)

    # Controls (in-process; the admin endpoints call these too)

    def add_api_key(self, key: str) -> None:
        """Accept ``key`` from now on; it gets a platform account of its own."""
        self._keys.setdefault(key, f"acct_platform{len(self._keys) + 1}")

    def mint_oauth_code(self, *, livemode: bool = False, account: str | None = None) -> str:
        """A single-use Connect OAuth code for a new (or the given) Standard account."""
        return self.oauth.mint(livemode=livemode, account=account)

    def fail_next(
        self, operation: str = "*", *, status: int = 503, times: int = 1, stored: bool = False
    ) -> None:
        """The next ``times`` requests get ``status``; ``stored`` keeps it for their key."""
        self.faults.add(operation, Fail(status, stored=stored), times)

    def rate_limit_next(
        self, operation: str = "*", *, retry_after: float = 1.0, times: int = 1
    ) -> None:
        """The next ``times`` requests get 429 with ``Retry-After``."""
        self.faults.add(operation, Fail(429, retry_after=retry_after), times)

    def timeout_next(self, operation: str, *, applied: bool, drop: bool = False) -> None:
        """The next request outlives the client's timeout (or is cut off mid-body if ``drop``)."""
        self.faults.add(operation, Hold(applied=applied, drop=drop))

    def garble_next(self, operation: str, kind: GarbleKind) -> None:
        """The next request gets a malformed response of ``kind``."""
        self.faults.add(operation, Garble(kind))

    def decline_next(
        self,
        operation: str = "payment_intents.create",
        *,
        code: str = "card_declined",
        decline_code: str | None = "generic_decline",
    ) -> None:
        """The next new request is declined with a 402 ``card_error``."""
        self.faults.add(operation, Script(Outcome("decline", code, decline_code)))

    def require_action_next(self) -> None:
        """The next confirmation waits for 3-D Secure, whatever the payment method."""
        self.faults.add("payment_intents.create", Script(Outcome("require_action")))

    def set_latency(self, seconds: float) -> None:
        """Every API request takes ``seconds`` longer."""
        self.faults.latency_s = seconds

    def clear_faults(self) -> None:
        """Forget queued faults and latency."""
        self.faults.clear()

    def complete_3ds(self, intent_id: str) -> Params:
        """The customer passes 3-D Secure on ``intent_id`` (emits the webhook)."""
        return self.state.complete_action(intent_id)

    def fail_3ds(self, intent_id: str) -> Params:
        """The customer fails 3-D Secure on ``intent_id`` (emits ``payment_failed``)."""
        return self.state.fail_action(intent_id)

    def configure_webhooks(self, url: str | None, secret: str | None = None) -> None:
        """Send events to ``url`` (None: stop), signed with ``secret``."""
        self.webhooks.configure(url, secret)

    @property
    def deliveries(self) -> list[Delivery]:
        """The webhook deliveries attempted so far."""
        return list(self.webhooks.deliveries)

    def signed_event_about(
        self, object_id: str, *, age_s: float = 0, secret: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The newest event about ``object_id``, signed ``age_s`` ago (KeyError if none)."""
        event = self.state.latest_event_about(object_id)
        if event is None:
            raise KeyError(object_id)
        return self.webhooks.sign(event, timestamp=int(self._clock() - age_s), secret=secret)

    # The HTTP API


def main(argv: list[str] | None = None) -> None:
    """Serve the fake Stripe in the foreground (dev): ``python -m sandbox.stripe_api``."""
    parser = argparse.ArgumentParser(description="A fake Stripe API on loopback.")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--key", action="append", help="an accepted API key (repeatable)")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--webhook-secret", default=DEFAULT_SECRET)
    args = parser.parse_args(argv)
    fake = FakeStripe(
        api_keys=args.key or (DEFAULT_KEY,),
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
    )
    uvicorn.run(fake.app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()
