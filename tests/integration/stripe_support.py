"""The fake Stripe as the Stripe adapter's tests drive it: controls, credentials, a receiver.

``SandboxControl`` is the contract's ``VendorControl`` over ``FakeStripe``'s in-process
controls; ``WebhookReceiver`` stands in for the gateway's webhook endpoint and hands each
delivery to the test as it arrives.
"""

import queue
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from processors.port import CredentialSource, OperationKind, VendorCredentials, WebhookRequest
from processors.stripe import StripeAdapter
from sandbox.gcp_server import HEALTH_PATH, LoopbackServer
from sandbox.stripe_api import FakeStripe
from schemas.events import FailureCode

API_KEY: Final = "sk_test_contract_7d3f0b9a2c41e856"
WEBHOOK_SECRET: Final = "whsec_contract_5e8a1c0d77b2"
ACCOUNT: Final = "acct_contract"
TIMEOUT_S: Final = 1.5
"""The adapter's timeout: the sandbox holds a response until the client gives up."""
WAIT_S: Final = 10.0

OPERATIONS: Final = {
    OperationKind.AUTHORIZE: "payment_intents.create",
    OperationKind.CAPTURE: "payment_intents.capture",
    OperationKind.VOID: "payment_intents.cancel",
    OperationKind.REFUND: "refunds.create",
}
DECLINES: Final[dict[FailureCode, tuple[str, str | None]]] = {
    "card_declined": ("card_declined", "generic_decline"),
    "insufficient_funds": ("card_declined", "insufficient_funds"),
    "expired_card": ("expired_card", "expired_card"),
    "incorrect_cvc": ("incorrect_cvc", None),
}
"""Stripe's (code, decline_code) for each failure code a test asks for."""


def utc_now() -> datetime:
    """The real time: the sandbox signs webhooks with it."""
    return datetime.now(UTC)


def credentials_for(
    account: str = ACCOUNT, *, api_key: str = API_KEY, webhook_secret: str | None = WEBHOOK_SECRET
) -> CredentialSource:
    """A credential source for ``account`` at the sandbox."""
    resolved = VendorCredentials(
        api_key=SecretStr(api_key),
        webhook_secret=None if webhook_secret is None else SecretStr(webhook_secret),
        account=account,
    )

    async def source() -> VendorCredentials:
        return resolved

    return source


def adapter_for(
    fake: FakeStripe,
    account: str = ACCOUNT,
    *,
    api_key: str = API_KEY,
    clock: Callable[[], datetime] = utc_now,
    base_url: str | None = None,
) -> StripeAdapter:
    """An adapter talking to ``fake`` as the tenant with ``account``."""
    return StripeAdapter(
        credentials_for(account, api_key=api_key),
        base_url=base_url or fake.url,
        clock=clock,
        timeout_s=TIMEOUT_S,
    )


@dataclass
class SandboxControl:
    """``VendorControl`` over the fake Stripe."""

    fake: FakeStripe

    def decline_next(self, kind: OperationKind, code: FailureCode) -> None:
        """The next new ``kind`` request gets a 402 card error for ``code``."""
        stripe_code, decline_code = DECLINES.get(code, ("card_declined", code))
        self.fake.decline_next(OPERATIONS[kind], code=stripe_code, decline_code=decline_code)

    def fail_next_5xx(self, kind: OperationKind) -> None:
        """The next ``kind`` request gets a 503 that is not stored under its key."""
        self.fake.fail_next(OPERATIONS[kind], status=503)

    def timeout_after_apply_next(self, kind: OperationKind) -> None:
        """The next ``kind`` request applies, then its response outlives the client."""
        self.fake.timeout_next(OPERATIONS[kind], applied=True)

    def timeout_before_apply_next(self, kind: OperationKind) -> None:
        """The next ``kind`` request is held, then dropped without applying."""
        self.fake.timeout_next(OPERATIONS[kind], applied=False)

    def require_action_next(self) -> None:
        """The next confirmation waits for 3-D Secure."""
        self.fake.require_action_next()

    def complete_action(self, reference: str) -> None:
        """The customer passes 3-D Secure on ``reference``."""
        self.fake.complete_3ds(reference)

    async def webhook_about(
        self, reference: str, *, age: timedelta = timedelta(0), secret: str | None = None
    ) -> WebhookRequest:
        """The newest event about ``reference``, signed ``age`` ago."""
        headers, body = self.fake.signed_event_about(
            reference, age_s=age.total_seconds(), secret=secret
        )
        return WebhookRequest(headers, body, utc_now())


class WebhookReceiver(LoopbackServer):
    """An endpoint the sandbox delivers webhooks to; answers 500 to the first ``refuse``."""

    PATH: Final = "/webhooks/stripe/tnt_contract"

    def __init__(self) -> None:
        """Nothing received yet."""
        self.received: queue.Queue[WebhookRequest] = queue.Queue()
        self.refuse = 0
        app = Starlette(
            routes=[
                Route(HEALTH_PATH, lambda _: PlainTextResponse("ok"), methods=["GET"]),
                Route(self.PATH, self._receive, methods=["POST"]),
            ]
        )
        super().__init__(app, name="stripe-webhook-receiver")

    @property
    def webhook_url(self) -> str:
        """Where the sandbox must send webhooks."""
        return self.url + self.PATH

    async def _receive(self, request: Request) -> Response:
        if self.refuse > 0:
            self.refuse -= 1
            return PlainTextResponse("try again", status_code=500)
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.received.put(WebhookRequest(headers, await request.body(), utc_now()))
        return PlainTextResponse("ok")

    def next_delivery(self) -> WebhookRequest:
        """The next webhook delivered (waits up to ``WAIT_S``)."""
        return self.received.get(timeout=WAIT_S)
