"""hesabpay-mock: HesabPay's hosted-checkout API on loopback, for dev, staging and tests.

HesabPay's API (``Authorization: API-KEY <key>``; amounts are AFN decimal strings)::

    POST /api/v1/payment/create-session   {"items": [{"id", "name", "price"}], "email"?,
                                           "redirect_success_url"?, "redirect_failure_url"?}
        -> {"status_code": 10, "success": true, "message", "url", "session_id"}
    POST /api/v1/hesab/webhooks/verify-signature   {"signature", "timestamp"}
        -> {"status_code": 10, "success": true} or {"status_code": 16, "success": false}

The customer's checkout: ``GET /checkout/{id}`` (a page), ``POST /checkout/{id}/pay`` or
``/fail`` (then a 303 to the redirect URL). Either outcome is POSTed as a webhook to the
merchant's ``webhook_url`` in the background, with retries (``hesabpay_mock_delivery``).
The webhook carries ``status_code``, ``success``, ``message``, ``sender_account``,
``transaction_id``, ``amount``, ``memo`` (the first item's id), ``signature`` (hex
HMAC-SHA256 of ``"<transaction_id>|<timestamp>"`` with the mock's secret, which no client
learns), ``timestamp``, ``transaction_date``, ``items`` and ``email``.

Admin API (sandbox only and unauthenticated: never expose it beyond the cluster)::

    GET    /_sandbox/health
    POST   /_sandbox/accounts            {"merchant_id", "api_key", "webhook_url"?}
    GET    /_sandbox/sessions            ?merchant_id= &item_id= &day=YYYY-MM-DD: the
                                         dashboard export (sessions with their transactions)
    GET    /_sandbox/sessions/{id}
    POST   /_sandbox/sessions/{id}/pay   -> {"transaction_id", "webhook", "delivery"}
    POST   /_sandbox/sessions/{id}/fail  {"status_code": 11 | 14 | 15}, same answer
    POST   /_sandbox/sessions/{id}/webhook   {"transaction_id"?, "timestamp"?,
                                         "signing_secret"?}: a signed webhook, not sent
    GET    /_sandbox/deliveries          every webhook delivery attempt
    POST   /_sandbox/faults              {"fault", "times"?, "path"?, "status_code"?,
                                         "http_status"?, "retry_after"?} (see the faults module)
    DELETE /_sandbox/faults              disarm everything, latency included
    POST   /_sandbox/latency             {"seconds"}
    GET    /_sandbox/stats               API requests received, latency in force

Status codes (HesabPay publishes none; these are the mock's, mirrored in the taxonomy):
10 success; 11 insufficient balance (checkout); 12 invalid request (HTTP 400); 13
unauthorized (HTTP 401); 14 cancelled by the customer (checkout); 15 refused by the wallet
(checkout); 16 invalid signature (verify, HTTP 200); 50 internal error (HTTP 500).

Idempotency: HesabPay has no idempotency header, so neither has the mock: each
create-session makes a new checkout. The adapter avoids duplicates itself: it derives the
item id from the idempotency key and stores the session before calling, so a retry
answers the stored checkout, and a checkout created twice after a lost answer still
carries the same item id, which the webhook echoes.

Start it alone (the dev and staging "hesabpay-mock")::

    python -m sandbox.hesabpay_mock --port 8089 --account MERCHANT:API_KEY:WEBHOOK_URL

(``--account`` repeats; the webhook URL is the tenant's ``/webhooks/hesabpay/<tenant>``)

or in-process: ``with HesabPayMock() as mock: mock.state.add_account(...)``.
"""

import argparse
import secrets
from collections.abc import Sequence
from typing import Final

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from sandbox.gcp_server import LoopbackServer
from sandbox.hesabpay_mock_delivery import DEFAULT_DELAYS, WebhookDelivery
from sandbox.hesabpay_mock_faults import Fault, FaultInjector, FaultKind, FaultPlan
from sandbox.hesabpay_mock_model import MockError, utc_now
from sandbox.hesabpay_mock_routes import Handlers, refusal, routes
from sandbox.hesabpay_mock_state import HesabPayMockState
from schemas.clock import Clock

__all__ = ["HesabPayMock", "build_hesabpay_mock_app", "main"]

_DESCRIPTION: Final = "HesabPay's hosted-checkout API, with admin and fault-injection endpoints."


def build_hesabpay_mock_app(
    state: HesabPayMockState,
    plan: FaultPlan,
    delivery: WebhookDelivery,
    *,
    public_url: str | None = None,
) -> ASGIApp:
    """The mock as an ASGI app; checkout URLs start with ``public_url`` or the request's base."""
    handlers = Handlers(state, plan, delivery, public_url)
    app = Starlette(routes=routes(handlers), exception_handlers={MockError: refusal})
    return FaultInjector(app, plan)


class HesabPayMock(LoopbackServer):
    """hesabpay-mock on 127.0.0.1 at a free port, in a background thread."""

    def __init__(
        self,
        *,
        signing_secret: str | None = None,
        delivery_delays: Sequence[float] = DEFAULT_DELAYS,
        clock: Clock = utc_now,
    ) -> None:
        """A mock with no account; webhooks signed with ``signing_secret`` (random if None)."""
        self.state = HesabPayMockState(signing_secret or secrets.token_hex(32), clock=clock)
        self.faults = FaultPlan()
        delivery = WebhookDelivery(self.state, delays=delivery_delays)
        super().__init__(
            build_hesabpay_mock_app(self.state, self.faults, delivery), name="hesabpay-mock"
        )

    def fail_next(self, kind: FaultKind, times: int = 1, *, path_prefix: str = "/api/") -> None:
        """Arm ``times`` faults of ``kind`` for API requests under ``path_prefix``."""
        self.faults.arm(Fault(kind, path_prefix), times)


def _account(value: str) -> tuple[str, str, str | None]:
    merchant, _, rest = value.partition(":")
    key, _, url = rest.partition(":")
    if not merchant or not key:
        raise argparse.ArgumentTypeError("expected MERCHANT_ID:API_KEY[:WEBHOOK_URL]")
    return merchant, key, url or None


def main(argv: Sequence[str] | None = None) -> None:
    """Serve hesabpay-mock until interrupted (``python -m sandbox.hesabpay_mock --help``)."""
    parser = argparse.ArgumentParser(prog="hesabpay-mock", description=_DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--public-url", help="base of checkout URLs, if not the request's")
    parser.add_argument(
        "--account",
        type=_account,
        action="append",
        default=[],
        help="MERCHANT_ID:API_KEY[:WEBHOOK_URL]; repeatable",
    )
    args = parser.parse_args(argv)
    state = HesabPayMockState(secrets.token_hex(32))
    for merchant, key, url in args.account:
        state.add_account(merchant, key, url)
    plan = FaultPlan()
    app = build_hesabpay_mock_app(state, plan, WebhookDelivery(state), public_url=args.public_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
