"""A stateful fake of PayPal's REST API on loopback, for tests and local development.

In a test (a free port, a background thread)::

    with PayPalSandbox(clients={"client-id": "secret"}, auto_approve=True) as paypal:
        ...  # point the PayPal adapter at paypal.url

For development, as a process: ``python -m sandbox.paypal_api --port 8790`` (any client id
is accepted, its first secret sticks; ``--help`` lists the options). Developers drive it
over HTTP under ``/_sandbox`` (see ``sandbox.paypal_admin``); tests call the methods below.

What it speaks is in ``sandbox.paypal_routes``; its business rules and simplifications in
``sandbox.paypal_ledger``; failure injection in ``sandbox.paypal_faults``; webhook signing
and delivery in ``sandbox.paypal_webhooks``. Orders wait for the payer unless
``auto_approve`` is on (orders are then approved when created, as with a payer's saved
wallet); ``approve`` (or opening the order's approve link) is the payer approving.
"""

import argparse
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import uvicorn

from sandbox.gcp_server import LoopbackServer
from sandbox.paypal_faults import Fault, FaultMiddleware, Faults, Malformed, Target
from sandbox.paypal_ledger import Ledger
from sandbox.paypal_model import Decline
from sandbox.paypal_routes import build_app
from sandbox.paypal_state import Accounts, SandboxState, Settings
from sandbox.paypal_webhooks import Delivery, Webhooks, now_utc

__all__ = ["PayPalSandbox", "main"]


class PayPalSandbox(LoopbackServer):
    """The fake PayPal served on 127.0.0.1, with controls for tests."""

    def __init__(
        self,
        *,
        clients: Mapping[str, str] | None = None,
        auto_approve: bool = False,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        """Accept ``clients`` (id -> secret; any client when None); nothing is served yet."""
        self.state = new_state(clients, auto_approve=auto_approve, clock=clock)
        self._clock = clock
        super().__init__(
            FaultMiddleware(build_app(self.state), self.state.faults), name="fake-paypal"
        )

    def start(self) -> str:
        """Serve; return the base URL (links and certificate URLs use it)."""
        url = super().start()
        self.state.ledger.base_url = self.state.webhooks.base_url = url
        return url

    def stop(self) -> None:
        """Stop serving and stop delivering webhooks."""
        super().stop()
        self.state.webhooks.close()

    # Accounts and tokens.

    def add_client(self, client_id: str, secret: str) -> None:
        """Accept the REST client ``client_id`` with ``secret``."""
        self.state.accounts.add(client_id, secret)

    def revoke_client(self, client_id: str) -> None:
        """Refuse ``client_id`` and its tokens from now on."""
        self.state.accounts.revoke(client_id)

    def expire_tokens(self) -> None:
        """Every token issued so far is refused from now on (as when it expires)."""
        self.state.accounts.expire_tokens()

    @property
    def token_requests(self) -> int:
        """How many token requests were received."""
        return self.state.accounts.token_requests

    def request_count(self, target: Target) -> int:
        """How many requests of ``target`` were received (``paypal_faults.target_of``)."""
        return self.state.faults.counts[target]

    # Payers and orders.

    def set_auto_approve(self, *, on: bool) -> None:
        """Approve new orders when they are created (or stop doing so)."""
        with self.state.settings.lock:
            self.state.settings.auto_approve = on

    def require_approval_next(self) -> None:
        """The next order waits for the payer even when auto-approve is on."""
        with self.state.settings.lock:
            self.state.settings.approval_required += 1

    def approve(self, order_id: str) -> None:
        """The payer approves the order ``order_id``."""
        self.state.ledger.approve(order_id)

    def order_of(self, reference: str) -> str:
        """The order an authorization, capture or order id belongs to."""
        return self.state.ledger.order_of(reference)

    def refunds_of(self, capture_id: str) -> list[dict[str, object]]:
        """The refunds of capture ``capture_id`` as PayPal shows them, oldest first."""
        return self.state.ledger.refunds_of(capture_id)

    # Faults.

    def fail_next(
        self, status: int, times: int = 1, *, target: Target = "any", retry_after: int | None = None
    ) -> None:
        """Answer the next ``times`` ``target`` requests with ``status``, applying nothing."""
        self.state.faults.arm(Fault("status", target, status, retry_after), times)

    def timeout_before_apply_next(self, target: Target) -> None:
        """Hold the next ``target`` request unapplied until the client gives up."""
        self.state.faults.arm(Fault("timeout_before", target))

    def timeout_after_apply_next(self, target: Target) -> None:
        """Apply the next ``target`` request, then hold its answer until the client gives up."""
        self.state.faults.arm(Fault("timeout_after", target))

    def malformed_next(self, target: Target, how: Malformed) -> None:
        """Apply the next ``target`` request, then answer it garbled as ``how`` says."""
        self.state.faults.arm(Fault("malformed", target, malformed=how))

    def decline_next(
        self, target: Target, *, issue: str | None = None, response_code: str | None = None
    ) -> None:
        """Refuse the next ``target`` request with ``issue`` or ``response_code``.

        ``issue``: a 422 with that issue; ``response_code``: the card processor's refusal
        (an authorization DENIED, a capture DECLINED).
        """
        self.state.faults.decline_next(target, Decline(issue, response_code))

    def set_latency(self, seconds: float) -> None:
        """Delay every API request by ``seconds``."""
        self.state.faults.latency = seconds

    def clear_faults(self) -> None:
        """Disarm every fault and decline; no latency."""
        self.state.faults.clear()

    # Webhooks.

    def register_webhook(self, url: str, webhook_id: str | None = None) -> str:
        """Deliver events to ``url``, signed for ``webhook_id`` (new when None); the id."""
        return self.state.webhooks.register(url, webhook_id)

    def signed_webhook(
        self, reference: str, *, webhook_id: str, age: timedelta = timedelta(0)
    ) -> tuple[dict[str, str], bytes]:
        """The headers and body PayPal sends about object ``reference``, signed ``age`` ago."""
        event_type, resource = self.state.ledger.event_about(reference)
        at = self._clock() - age
        body = json_bytes(self.state.webhooks.event(event_type, resource, at))
        return self.state.webhooks.sign(body, webhook_id, at), body

    def rotate_certificate(self) -> str:
        """Sign webhooks with a new certificate from now on; its name."""
        return self.state.webhooks.rotate()

    @property
    def deliveries(self) -> list[Delivery]:
        """What became of the webhook deliveries, oldest first."""
        return self.state.webhooks.deliveries


def json_bytes(value: object) -> bytes:
    """``value`` as compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


def new_state(
    clients: Mapping[str, str] | None, *, auto_approve: bool, clock: Callable[[], datetime]
) -> SandboxState:
    """A fresh fake PayPal: no order, no webhook, one signing certificate."""
    webhooks = Webhooks(clock)
    return SandboxState(
        ledger=Ledger(clock, webhooks.emit),
        accounts=Accounts(clients, clock),
        webhooks=webhooks,
        faults=Faults(),
        settings=Settings(auto_approve=auto_approve),
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the fake PayPal on ``--host``:``--port`` until interrupted."""
    parser = argparse.ArgumentParser(description="A fake PayPal REST API for development.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--auto-approve", action="store_true", help="approve orders at once")
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL[=WEBHOOK_ID]",
        help="deliver events to URL, signed for WEBHOOK_ID (repeatable)",
    )
    args = parser.parse_args(argv)
    state = new_state(None, auto_approve=args.auto_approve, clock=now_utc)
    webhooks = state.webhooks
    state.ledger.base_url = webhooks.base_url = f"http://{args.host}:{args.port}"
    for spec in args.webhook:
        url, _, webhook_id = spec.partition("=")
        webhooks.register(url, webhook_id or None)
    app = FaultMiddleware(build_app(state), state.faults)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    finally:
        webhooks.close()


if __name__ == "__main__":
    main()
