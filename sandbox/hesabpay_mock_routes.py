"""hesabpay-mock's endpoints: HesabPay's API, the customer's checkout, the admin API.

See ``sandbox.hesabpay_mock`` for the list; refusals are ``MockError``, answered as
HesabPay's JSON by ``refusal``.
"""

import html
import json
from datetime import date
from typing import Final, cast

from pydantic import JsonValue
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.gcp_server import HEALTH_PATH
from sandbox.hesabpay_mock_delivery import WebhookDelivery
from sandbox.hesabpay_mock_faults import FAULT_KINDS, Fault, FaultKind, FaultPlan
from sandbox.hesabpay_mock_model import (
    CANCELLED,
    INVALID_SIGNATURE,
    MESSAGES,
    SUCCESS,
    MockError,
    session_row,
)
from sandbox.hesabpay_mock_state import HesabPayMockState

CREATE_SESSION_PATH: Final = "/api/v1/payment/create-session"
VERIFY_PATH: Final = "/api/v1/hesab/webhooks/verify-signature"


async def _json(request: Request) -> JsonValue:
    raw = await request.body()
    if not raw:
        return {}
    try:
        parsed: JsonValue = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MockError(400, 12, "the body is not JSON") from None
    return parsed


async def _object(request: Request) -> dict[str, JsonValue]:
    body = await _json(request)
    if not isinstance(body, dict):
        raise MockError(400, 12, "the body must be a JSON object")
    return body


def _ok(**fields: JsonValue) -> JSONResponse:
    return JSONResponse({"status_code": SUCCESS, "success": True, **fields})


async def refusal(_: Request, exc: Exception) -> Response:
    """A ``MockError`` as HesabPay's JSON refusal."""
    if not isinstance(exc, MockError):  # pragma: no cover - registered for MockError only
        raise exc
    body = {"status_code": exc.status_code, "success": False, "message": exc.message}
    return JSONResponse(body, status_code=exc.http_status)


class Handlers:
    """The mock's endpoints over its state, faults and webhook delivery."""

    def __init__(
        self,
        state: HesabPayMockState,
        plan: FaultPlan,
        delivery: WebhookDelivery,
        public_url: str | None,
    ) -> None:
        """Serve ``state``; checkout URLs start with ``public_url`` or the request's base."""
        self.state, self.plan, self.delivery, self.public_url = state, plan, delivery, public_url

    async def health(self, _: Request) -> Response:
        """The readiness probe."""
        return JSONResponse({"status": "ok"})

    async def create_session(self, request: Request) -> Response:
        """HesabPay: a checkout for the items; its URL is on the mock."""
        account = self.state.account_for(request.headers.get("authorization"))
        session = self.state.create_session(account, await _json(request))
        base = self.public_url or str(request.base_url).rstrip("/")
        url = f"{base}/checkout/{session.session_id}"
        return _ok(message="Session created", url=url, session_id=session.session_id)

    async def verify(self, request: Request) -> Response:
        """HesabPay: whether the mock signed this signature and timestamp."""
        account = self.state.account_for(request.headers.get("authorization"))
        if self.state.verify(account, await _json(request)):
            return _ok(message="Signature is valid")
        body = {"status_code": INVALID_SIGNATURE, "success": False, "message": MESSAGES[16]}
        return JSONResponse(body)

    async def checkout_page(self, request: Request) -> Response:
        """The customer's payment page."""
        session = self.state.session(request.path_params["session_id"])
        sid = html.escape(session.session_id)
        items = "".join(
            f"<li>{html.escape(i.name)}: {html.escape(i.price)} AFN</li>" for i in session.items
        )
        actions = (
            "<p>This checkout is paid.</p>"
            if session.paid
            else f'<form method="post" action="/checkout/{sid}/pay"><button>Pay</button></form>'
            f'<form method="post" action="/checkout/{sid}/fail"><button>Cancel</button></form>'
        )
        return HTMLResponse(
            "<!doctype html><html><head><title>HesabPay sandbox checkout</title></head><body>"
            f"<h1>HesabPay sandbox checkout</h1><ul>{items}</ul>"
            f"<p>Total: {session.amount.to_decimal_string()} AFN</p>{actions}</body></html>"
        )

    async def checkout_pay(self, request: Request) -> Response:
        """The customer pays; redirected to the success URL."""
        return self._customer(request.path_params["session_id"], SUCCESS)

    async def checkout_fail(self, request: Request) -> Response:
        """The customer cancels; redirected to the failure URL."""
        return self._customer(request.path_params["session_id"], CANCELLED)

    def _customer(self, session_id: str, status_code: int) -> Response:
        self._complete(session_id, status_code)
        session = self.state.session(session_id)
        paid = status_code == SUCCESS
        target = session.redirect_success_url if paid else session.redirect_failure_url
        if target is None:
            return HTMLResponse(f"<p>{html.escape(MESSAGES[status_code])}</p>")
        return RedirectResponse(target, status_code=303)

    def _complete(self, session_id: str, status_code: int) -> dict[str, JsonValue]:
        attempt = self.state.attempt(session_id, status_code)
        url = self.state.webhook_url(self.state.session(session_id).merchant_id)
        if url is not None:
            self.delivery.schedule(session_id, attempt.transaction_id, url)
        return {
            "transaction_id": attempt.transaction_id,
            "status_code": attempt.status_code,
            "webhook": self.state.webhook(session_id, attempt.transaction_id),
            "delivery": "scheduled" if url is not None else "no_webhook_url",
        }

    async def add_account(self, request: Request) -> Response:
        """Admin: create or replace a merchant."""
        body = await _object(request)
        merchant, key, url = body.get("merchant_id"), body.get("api_key"), body.get("webhook_url")
        if not isinstance(merchant, str) or not isinstance(key, str):
            raise MockError(400, 12, "merchant_id and api_key are required strings")
        if url is not None and not isinstance(url, str):
            raise MockError(400, 12, "webhook_url must be a string")
        self.state.add_account(merchant, key, url)
        return JSONResponse({"merchant_id": merchant, "webhook_url": url}, status_code=201)

    async def sessions(self, request: Request) -> Response:
        """Admin: the dashboard export, filtered by merchant, item id or day."""
        query = request.query_params
        try:
            day = date.fromisoformat(query["day"]) if "day" in query else None
        except ValueError:
            raise MockError(400, 12, "day must be YYYY-MM-DD") from None
        rows = self.state.export(
            merchant_id=query.get("merchant_id"), item_id=query.get("item_id"), day=day
        )
        return JSONResponse({"sessions": rows})

    async def session(self, request: Request) -> Response:
        """Admin: one session."""
        return JSONResponse(session_row(self.state.session(request.path_params["session_id"])))

    async def pay(self, request: Request) -> Response:
        """Admin: the customer pays; the webhook is sent."""
        return JSONResponse(self._complete(request.path_params["session_id"], SUCCESS))

    async def fail(self, request: Request) -> Response:
        """Admin: the customer's attempt fails with a status code; the webhook is sent."""
        code = (await _object(request)).get("status_code", CANCELLED)
        if not isinstance(code, int):
            raise MockError(400, 12, "status_code must be an integer")
        return JSONResponse(self._complete(request.path_params["session_id"], code))

    async def webhook(self, request: Request) -> Response:
        """Admin: the signed webhook about an attempt, at a timestamp, with any secret; not sent."""
        body = await _object(request)
        tid, stamp, secret = (
            body.get(k) for k in ("transaction_id", "timestamp", "signing_secret")
        )
        if not isinstance(tid, str | None) or not isinstance(secret, str | None):
            raise MockError(400, 12, "transaction_id and signing_secret must be strings")
        if not isinstance(stamp, int | None):
            raise MockError(400, 12, "timestamp must be unix seconds")
        sid = request.path_params["session_id"]
        return JSONResponse(self.state.webhook(sid, tid, timestamp=stamp, secret=secret))

    async def deliveries(self, _: Request) -> Response:
        """Admin: every webhook delivery attempt."""
        return JSONResponse({"deliveries": list(self.state.deliveries)})

    async def arm(self, request: Request) -> Response:
        """Admin: arm a fault for the next API requests."""
        body = await _object(request)
        kind, times, path = body.get("fault"), body.get("times", 1), body.get("path", "/api/")
        numbers = {k: body.get(k) for k in ("status_code", "http_status", "retry_after")}
        if kind not in FAULT_KINDS or not isinstance(times, int) or not isinstance(path, str):
            raise MockError(400, 12, f"fault (one of {sorted(FAULT_KINDS)}), times, path")
        if any(not isinstance(v, int | None) for v in numbers.values()):
            raise MockError(400, 12, "status_code, http_status and retry_after are integers")
        fault = Fault(
            kind=cast("FaultKind", kind),
            path_prefix=path,
            status_code=_int(numbers["status_code"]),
            http_status=_int(numbers["http_status"]),
            retry_after=_int(numbers["retry_after"]) or 1,
        )
        self.plan.arm(fault, times)
        return JSONResponse({"armed": times}, status_code=201)

    async def stats(self, _: Request) -> Response:
        """Admin: how many API requests arrived, and the latency in force."""
        return JSONResponse({"api_requests": self.plan.request_count, "latency": self.plan.latency})

    async def disarm(self, _: Request) -> Response:
        """Admin: disarm every fault and the latency."""
        self.plan.clear()
        return Response(status_code=204)

    async def latency(self, request: Request) -> Response:
        """Admin: delay every API request."""
        seconds = (await _object(request)).get("seconds")
        if not isinstance(seconds, int | float):
            raise MockError(400, 12, "seconds must be a number")
        self.plan.set_latency(float(seconds))
        return JSONResponse({"latency": self.plan.latency})


def _int(value: JsonValue) -> int | None:
    return value if isinstance(value, int) else None


def routes(h: Handlers) -> list[Route]:
    """The mock's routes over ``h``."""
    session = "/_sandbox/sessions/{session_id}"
    return [
        Route(HEALTH_PATH, h.health, methods=["GET"]),
        Route(CREATE_SESSION_PATH, h.create_session, methods=["POST"]),
        Route(VERIFY_PATH, h.verify, methods=["POST"]),
        Route("/checkout/{session_id}", h.checkout_page, methods=["GET"]),
        Route("/checkout/{session_id}/pay", h.checkout_pay, methods=["POST"]),
        Route("/checkout/{session_id}/fail", h.checkout_fail, methods=["POST"]),
        Route("/_sandbox/accounts", h.add_account, methods=["POST"]),
        Route("/_sandbox/sessions", h.sessions, methods=["GET"]),
        Route(session, h.session, methods=["GET"]),
        Route(f"{session}/pay", h.pay, methods=["POST"]),
        Route(f"{session}/fail", h.fail, methods=["POST"]),
        Route(f"{session}/webhook", h.webhook, methods=["POST"]),
        Route("/_sandbox/deliveries", h.deliveries, methods=["GET"]),
        Route("/_sandbox/faults", h.arm, methods=["POST"]),
        Route("/_sandbox/faults", h.disarm, methods=["DELETE"]),
        Route("/_sandbox/latency", h.latency, methods=["POST"]),
        Route("/_sandbox/stats", h.stats, methods=["GET"]),
    ]
