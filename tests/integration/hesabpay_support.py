"""hesabpay-mock as the HesabPay adapter's tests drive it: a webhook endpoint and the controls.

``WebhookEndpoint`` stands in for payment-api's ``/webhooks/hesabpay/{tenant}``: each
webhook the mock delivers is parsed by an adapter sharing the test's stores, in the
endpoint's own thread and event loop, and answered 200, 400 or 503 as the real endpoint
would. ``HesabPayControl`` is the contract's ``VendorControl`` over the mock's admin API;
paying a checkout waits until the endpoint has handled the webhook it causes, so an
inquiry right after sees the payment.
"""

import asyncio
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Final, Self

import httpx
from pydantic import JsonValue, SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from processors.errors import RetryableError, WebhookRejected
from processors.port import OperationKind, PaymentPort, VendorCredentials, WebhookRequest
from sandbox.gcp_server import HEALTH_PATH, LoopbackServer
from schemas.events import FailureCode
from schemas.notifications import Notification

MERCHANT: Final = "hotel-contract"
API_KEY: Final = "hp_test_key_5c1e9a7f"
MOCK_SECRET: Final = "hp_mock_signing_secret_8b2d"
CREATE_PATH: Final = "/api/v1/payment/create-session"
VERIFY_PATH: Final = "/api/v1/hesab/webhooks/verify-signature"
WAIT_S: Final = 10.0

STATUS_CODES: Final[Mapping[FailureCode, int]] = {
    "insufficient_funds": 11,
    "invalid_request": 12,
    "not_configured": 13,
    "authentication_failed": 14,
    "card_declined": 15,
}
"""The mock's status code for each failure code HesabPay can answer."""


def utc_now() -> datetime:
    """The current time in UTC (the mock signs with the real clock)."""
    return datetime.now(UTC)


async def credentials() -> VendorCredentials:
    """The test merchant's credentials."""
    return VendorCredentials(api_key=SecretStr(API_KEY), webhook_secret=None, account=MERCHANT)


@dataclass(frozen=True)
class Handled:
    """What the endpoint did with one delivery."""

    transaction_id: str | None
    status: int
    notification: Notification | None = None
    reason: str | None = None


def _transaction_id(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    value = parsed.get("transaction_id") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


class WebhookEndpoint(LoopbackServer):
    """The gateway's HesabPay webhook endpoint, reduced to verifying with ``port``."""

    PATH: Final = "/webhooks/hesabpay/tnt_contract"

    def __init__(self, port: PaymentPort) -> None:
        """Parse each delivery with ``port`` (which must make its own HTTP clients)."""
        self._port = port
        self._changed = threading.Condition()
        self._handled: list[Handled] = []
        self._refusals = 0
        app = Starlette(
            routes=[
                Route(HEALTH_PATH, lambda _: JSONResponse({}), methods=["GET"]),
                Route(self.PATH, self._receive, methods=["POST"]),
            ]
        )
        super().__init__(app, name="hesabpay-webhook-endpoint")

    @property
    def webhook_url(self) -> str:
        """Where the mock must send webhooks."""
        return self.url + self.PATH

    def refuse_next(self, times: int) -> None:
        """Answer the next ``times`` deliveries 503 without looking at them."""
        with self._changed:
            self._refusals += times

    def wait_for(self, transaction_id: str, status: int | None = None) -> Handled:
        """The first handling of a webhook about ``transaction_id`` (with ``status``)."""

        def found() -> Handled | None:
            return next(
                (
                    handled
                    for handled in self._handled
                    if handled.transaction_id == transaction_id and status in {None, handled.status}
                ),
                None,
            )

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, WAIT_S):
                raise AssertionError(f"no webhook about {transaction_id} handled in {WAIT_S}s")
            handled = found()
        assert handled is not None
        return handled

    def handled_about(self, transaction_id: str) -> list[Handled]:
        """Every handling of a webhook about ``transaction_id`` so far, in order."""
        with self._changed:
            return [h for h in self._handled if h.transaction_id == transaction_id]

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        with self._changed:
            refuse = self._refusals > 0
            self._refusals -= int(refuse)
        handled = Handled(_transaction_id(body), 503)
        if not refuse:
            handled = await self._parse(request, body)
        with self._changed:
            self._handled.append(handled)
            self._changed.notify_all()
        return Response(status_code=handled.status)

    async def _parse(self, request: Request, body: bytes) -> Handled:
        headers = {name.lower(): value for name, value in request.headers.items()}
        webhook = WebhookRequest(headers, body, utc_now())
        tid = _transaction_id(body)
        try:
            return Handled(tid, 200, notification=await self._port.parse_webhook(webhook))
        except WebhookRejected as rejected:
            return Handled(tid, 400, reason=rejected.reason)
        except RetryableError:
            return Handled(tid, 503)


@dataclass
class HesabPayControl:
    """``VendorControl`` over hesabpay-mock, plus the customer's side of its checkout."""

    mock_url: str
    endpoint: WebhookEndpoint
    _http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        """Open the admin client."""
        self._http = httpx.Client(base_url=self.mock_url, timeout=WAIT_S)

    def __enter__(self) -> Self:
        """Use the control."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the admin client."""
        self._http.close()

    # The contract's controls. HesabPay's one vendor call behind an operation is the
    # create-session of an authorization; the other operations never reach it.

    def decline_next(self, kind: OperationKind, code: FailureCode) -> None:
        """The next create-session is refused with the mock's status code for ``code``."""
        if code not in STATUS_CODES:
            raise ValueError(f"HesabPay has no status code for {code}")
        self.arm("refuse", self._path(kind), status_code=STATUS_CODES[code])

    def fail_next_5xx(self, kind: OperationKind) -> None:
        """The next create-session gets a 500."""
        self.arm("5xx", self._path(kind))

    def timeout_after_apply_next(self, kind: OperationKind) -> None:
        """The next create-session is applied, then never answered."""
        self.arm("timeout_after_apply", self._path(kind))

    def timeout_before_apply_next(self, kind: OperationKind) -> None:
        """The next create-session is never answered, nor applied."""
        self.arm("timeout_before_apply", self._path(kind))

    def require_action_next(self) -> None:
        """Nothing to arm: every HesabPay authorization waits for the customer's checkout."""

    def complete_action(self, reference: str) -> None:
        """The customer pays the latest checkout of ``reference``; the endpoint accepted it."""
        answer = self._http.post(f"/_sandbox/sessions/{self.latest(reference)}/pay")
        answer.raise_for_status()
        self.endpoint.wait_for(answer.json()["transaction_id"], status=200)

    async def webhook_about(
        self, reference: str, *, age: timedelta = timedelta(0), secret: str | None = None
    ) -> WebhookRequest:
        """The mock's webhook about the latest attempt on ``reference``'s checkout.

        Signed ``age`` ago, with the mock's secret, or with ``secret`` (then HesabPay's
        verification fails).
        """
        return await self.webhook(self.latest(reference), age=age, secret=secret)

    # Helpers for HesabPay's own tests.

    async def webhook(
        self,
        mock_session: str,
        *,
        transaction_id: str | None = None,
        age: timedelta = timedelta(0),
        secret: str | None = None,
        **changes: JsonValue,
    ) -> WebhookRequest:
        """The signed webhook about an attempt on ``mock_session``, with ``changes`` made.

        Signed ``age`` ago, or a second or two earlier when the mock already delivered
        the webhook with that timestamp: the same second gives the same signature, which
        the adapter would rightly refuse as a replay of that delivery.
        """
        now = utc_now()
        stamp = int((now - age).timestamp())
        ask: dict[str, JsonValue] = {}
        if transaction_id is not None:
            ask["transaction_id"] = transaction_id
        if secret is not None:
            ask["signing_secret"] = secret
        async with httpx.AsyncClient(base_url=self.mock_url, timeout=WAIT_S) as http:
            while True:
                answer = await http.post(
                    f"/_sandbox/sessions/{mock_session}/webhook", json={**ask, "timestamp": stamp}
                )
                rendered = answer.raise_for_status().json()
                deliveries = (await http.get("/_sandbox/deliveries")).json()["deliveries"]
                used = {
                    row["timestamp"]
                    for row in deliveries
                    if row["transaction_id"] == rendered["transaction_id"]
                }
                if str(stamp) not in used:
                    break
                stamp -= 1
        body = {**rendered, **changes}
        return WebhookRequest({"content-type": "application/json"}, json.dumps(body).encode(), now)

    async def pay(self, checkout_url: str) -> Handled:
        """The customer pays at ``checkout_url``; what the endpoint did with the webhook."""
        return await self.complete(checkout_url.rsplit("/", 1)[-1], "pay")

    async def complete(
        self, mock_session: str, outcome: str, status_code: int | None = None
    ) -> Handled:
        """Pay or fail (with ``status_code``) ``mock_session``; the endpoint's handling."""
        body = {} if status_code is None else {"status_code": status_code}
        async with httpx.AsyncClient(base_url=self.mock_url, timeout=WAIT_S) as http:
            answer = await http.post(f"/_sandbox/sessions/{mock_session}/{outcome}", json=body)
        answer.raise_for_status()
        tid = answer.json()["transaction_id"]
        return await asyncio.to_thread(self.endpoint.wait_for, tid)

    def arm(self, fault: str, path: str = CREATE_PATH, /, **params: int) -> None:
        """Arm one fault of the mock for ``path``."""
        armed = self._http.post("/_sandbox/faults", json={"fault": fault, "path": path, **params})
        armed.raise_for_status()

    def api_requests(self) -> int:
        """How many API requests the mock has received."""
        count: int = self._http.get("/_sandbox/stats").raise_for_status().json()["api_requests"]
        return count

    def clear(self) -> None:
        """Disarm every fault."""
        self._http.delete("/_sandbox/faults").raise_for_status()

    def sessions(self, item_id: str) -> list[dict[str, JsonValue]]:
        """The mock's sessions carrying ``item_id``, oldest first."""
        answer = self._http.get("/_sandbox/sessions", params={"item_id": item_id})
        rows: list[dict[str, JsonValue]] = answer.raise_for_status().json()["sessions"]
        return rows

    def transaction_ids(self, item_id: str) -> list[str]:
        """The transaction ids of every attempt on the mock's sessions carrying ``item_id``."""
        ids = []
        for row in self.sessions(item_id):
            attempts = row["transactions"]
            assert isinstance(attempts, list)
            ids += [str(a["transaction_id"]) for a in attempts if isinstance(a, dict)]
        return ids

    def latest(self, item_id: str) -> str:
        """The id of the newest mock session carrying ``item_id``."""
        rows = self.sessions(item_id)
        assert rows, f"the mock has no checkout for {item_id}"
        return str(rows[-1]["session_id"])

    def deliveries(self, transaction_id: str) -> list[dict[str, JsonValue]]:
        """The mock's delivery attempts of the webhook about ``transaction_id``."""
        rows: list[dict[str, JsonValue]] = self._http.get("/_sandbox/deliveries").json()[
            "deliveries"
        ]
        return [row for row in rows if row["transaction_id"] == transaction_id]

    @staticmethod
    def _path(kind: OperationKind) -> str:
        if kind is not OperationKind.AUTHORIZE:
            raise ValueError(f"a HesabPay {kind} never reaches HesabPay")
        return CREATE_PATH
