"""The fake PayPal's REST API as a Starlette app: PayPal's paths, headers and JSON.

Covered: ``/v1/oauth2/token``; Orders v2 (create, get, authorize, capture); Payments v2
(authorizations: get, capture, void, reauthorize; captures: get, refund; refunds: get);
``/v1/reporting/transactions``; ``/v1/notifications/webhooks`` (create) and
``/v1/notifications/verify-webhook-signature``; ``/checkoutnow?token=`` (the payer's
approval page, which approves at once). API requests need a bearer token. A POST's answer,
success or refusal, is stored per ``PayPal-Request-Id`` and replayed for it, whatever the
body; ``Prefer: return=representation`` gets the whole object, else the minimal one.
Armed declines and "approval required" are taken only by requests that are not replays.
``PayPal-Mock-Response: {"mock_application_codes": "ISSUE"}`` makes a POST fail with that
issue, as in PayPal's negative testing. The ``/_sandbox`` admin routes are in
``sandbox.paypal_admin``.
"""

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, Literal
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.gcp_server import HEALTH_PATH
from sandbox.paypal_admin import admin_routes
from sandbox.paypal_model import PayPalApiError, unprocessable
from sandbox.paypal_render import render_line, stamp
from sandbox.paypal_state import OAuthError, SandboxState, Stored

Json = dict[str, object]
Action = Callable[[str, Json], Json]
MAX_WINDOW: Final = timedelta(days=31)


class _Api:
    """The route handlers, over one sandbox's state."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state

    def _owner(self, request: Request) -> str:
        return self._state.accounts.owner_of(request.headers.get("authorization"))

    async def _post(
        self, request: Request, action: Action, *, status: int = 201, empty_minimal: bool = False
    ) -> Response:
        owner = self._owner(request)
        body = await _body(request)
        if (issue := _mock_issue(request)) is not None:
            action = _refusal(issue)
        request_id = request.headers.get("paypal-request-id")
        key = (owner, request.url.path, request_id) if request_id else None
        stored = self._state.idempotency.begin(key) if key is not None else None
        if stored is None:
            try:
                stored = Stored(status, action(owner, body))
            except PayPalApiError as exc:
                stored = Stored(exc.status, exc.body())
            finally:
                if key is not None:
                    self._state.idempotency.finish(key, stored)
        return _respond(stored, request.headers.get("prefer", ""), empty_minimal=empty_minimal)

    async def token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        fields = {name: values[0] for name, values in form.items()}
        issued = self._state.accounts.issue(request.headers.get("authorization"), fields)
        return JSONResponse(issued)

    async def create_order(self, request: Request) -> Response:
        settings, ledger = self._state.settings, self._state.ledger
        return await self._post(
            request,
            lambda o, b: ledger.create_order(o, b, approved=settings.approved_at_creation()),
        )

    async def complete_order(self, request: Request) -> Response:
        order_id = request.path_params["id"]
        action: Literal["authorize", "capture"] = (
            "authorize" if request.url.path.endswith("/authorize") else "capture"
        )
        faults, ledger = self._state.faults, self._state.ledger
        return await self._post(
            request,
            lambda o, _: ledger.complete_order(
                o, order_id, action, faults.take_decline("authorize_order")
            ),
        )

    async def capture(self, request: Request) -> Response:
        auth_id = request.path_params["id"]
        faults, ledger = self._state.faults, self._state.ledger
        return await self._post(
            request,
            lambda o, b: ledger.capture_authorization(
                o, auth_id, b, faults.take_decline("capture")
            ),
        )

    async def void(self, request: Request) -> Response:
        auth_id = request.path_params["id"]
        faults, ledger = self._state.faults, self._state.ledger
        return await self._post(
            request,
            lambda o, _: ledger.void(o, auth_id, faults.take_decline("void")),
            status=200,
            empty_minimal=True,
        )

    async def reauthorize(self, request: Request) -> Response:
        auth_id = request.path_params["id"]
        ledger = self._state.ledger
        return await self._post(request, lambda o, b: ledger.reauthorize(o, auth_id, b))

    async def refund(self, request: Request) -> Response:
        capture_id = request.path_params["id"]
        faults, ledger = self._state.faults, self._state.ledger
        return await self._post(
            request,
            lambda o, b: ledger.refund_capture(o, capture_id, b, faults.take_decline("refund")),
        )

    async def get(self, request: Request) -> Response:
        owner, object_id, path = self._owner(request), request.path_params["id"], request.url.path
        ledger = self._state.ledger
        if path.startswith("/v2/checkout/orders/"):
            return JSONResponse(ledger.order(owner, object_id))
        if path.startswith("/v2/payments/authorizations/"):
            return JSONResponse(ledger.authorization(owner, object_id))
        if path.startswith("/v2/payments/captures/"):
            return JSONResponse(ledger.capture(owner, object_id))
        return JSONResponse(ledger.refund(owner, object_id))

    async def transactions(self, request: Request) -> Response:
        owner = self._owner(request)
        query = request.query_params
        start, end = (
            _date(query.get("start_date"), "start_date"),
            _date(query.get("end_date"), "end_date"),
        )
        if end < start or end - start > MAX_WINDOW:
            raise PayPalApiError.invalid(
                "INVALID_PARAMETER_VALUE", "the date range is over 31 days"
            )
        size = min(
            _positive(query.get("page_size", "100"), "page_size"),
            self._state.settings.max_page_size,
        )
        page = _positive(query.get("page", "1"), "page")
        lines = self._state.ledger.lines(owner, start, end)
        chosen = lines[(page - 1) * size : page * size]
        return JSONResponse(
            {
                "transaction_details": [render_line(line) for line in chosen],
                "account_number": owner[:13].upper(),
                "start_date": stamp(start),
                "end_date": stamp(end),
                "last_refreshed_datetime": stamp(end),
                "page": page,
                "total_items": len(lines),
                "total_pages": max(1, -(-len(lines) // size)),
                "links": [],
            }
        )

    async def verify_webhook(self, request: Request) -> Response:
        self._owner(request)
        verified = self._state.webhooks.verify(await _body(request))
        return JSONResponse({"verification_status": "SUCCESS" if verified else "FAILURE"})

    async def create_webhook(self, request: Request) -> Response:
        self._owner(request)
        body = await _body(request)
        url = body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PayPalApiError.invalid("INVALID_PARAMETER_VALUE", "url must be an http(s) URL")
        webhook_id = self._state.webhooks.register(url)
        event_types = body.get("event_types", [{"name": "*"}])
        return JSONResponse({"id": webhook_id, "url": url, "event_types": event_types}, 201)

    async def checkout_page(self, request: Request) -> Response:
        order = self._state.ledger.approve(request.query_params.get("token", ""))
        return_url = self._state.ledger.return_url_of(str(order["id"]))
        if return_url:
            joiner = "&" if "?" in return_url else "?"
            target = f"{return_url}{joiner}token={order['id']}&PayerID=SANDBOXPAYER1"
            return RedirectResponse(target, status_code=303)
        return HTMLResponse(f"<p>Order {order['id']} approved by the sandbox payer.</p>")


def _refusal(issue: str) -> Action:
    def refuse(_: str, __: Json) -> Json:
        raise unprocessable(issue, "mock response (negative testing)")

    return refuse


def _mock_issue(request: Request) -> str | None:
    raw = request.headers.get("paypal-mock-response")
    if raw is None:
        return None
    try:
        code = json.loads(raw).get("mock_application_codes")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) and code else None


async def _body(request: Request) -> Json:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise PayPalApiError.invalid("MALFORMED_REQUEST_JSON", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise PayPalApiError.invalid("MALFORMED_REQUEST_JSON", "the body is not an object")
    return body


def _respond(stored: Stored, prefer: str, *, empty_minimal: bool) -> Response:
    body = stored.body
    if stored.status >= 400 or body is None or "return=representation" in prefer:  # noqa: PLR2004 (HTTP errors)
        return JSONResponse(body, stored.status) if body is not None else Response(None, 204)
    if empty_minimal:
        return Response(None, 204)
    minimal = {name: body[name] for name in ("id", "status", "links") if name in body}
    return JSONResponse(minimal, stored.status)


def _date(value: str | None, name: str) -> datetime:
    if not value:
        raise PayPalApiError.invalid("MISSING_REQUIRED_PARAMETER", f"{name} is required")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayPalApiError.invalid("INVALID_PARAMETER_SYNTAX", f"{name} is not a date") from None
    if parsed.tzinfo is None:
        raise PayPalApiError.invalid("INVALID_PARAMETER_SYNTAX", f"{name} needs a time zone")
    return parsed


def _positive(value: str, name: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise PayPalApiError.invalid(
            "INVALID_PARAMETER_VALUE", f"{name} must be a positive integer"
        )
    return int(value)


async def _paypal_error(_: Request, exc: Exception) -> Response:
    if isinstance(exc, PayPalApiError):
        return JSONResponse(exc.body(), exc.status)
    if isinstance(exc, OAuthError):
        return JSONResponse({"error": exc.error, "error_description": exc.description}, 401)
    raise exc  # pragma: no cover - registered for these two types only


async def _health(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_app(state: SandboxState) -> Starlette:
    """The fake PayPal's app (wrap it in ``FaultMiddleware`` to inject failures)."""
    api = _Api(state)
    post, get = ["POST"], ["GET"]
    routes = [
        Route(HEALTH_PATH, _health, methods=get),
        Route("/v1/oauth2/token", api.token, methods=post),
        Route("/v2/checkout/orders", api.create_order, methods=post),
        Route("/v2/checkout/orders/{id}", api.get, methods=get),
        Route("/v2/checkout/orders/{id}/authorize", api.complete_order, methods=post),
        Route("/v2/checkout/orders/{id}/capture", api.complete_order, methods=post),
        Route("/v2/payments/authorizations/{id}", api.get, methods=get),
        Route("/v2/payments/authorizations/{id}/capture", api.capture, methods=post),
        Route("/v2/payments/authorizations/{id}/void", api.void, methods=post),
        Route("/v2/payments/authorizations/{id}/reauthorize", api.reauthorize, methods=post),
        Route("/v2/payments/captures/{id}", api.get, methods=get),
        Route("/v2/payments/captures/{id}/refund", api.refund, methods=post),
        Route("/v2/payments/refunds/{id}", api.get, methods=get),
        Route("/v1/reporting/transactions", api.transactions, methods=get),
        Route("/v1/notifications/webhooks", api.create_webhook, methods=post),
        Route("/v1/notifications/verify-webhook-signature", api.verify_webhook, methods=post),
        Route("/checkoutnow", api.checkout_page, methods=get),
        *admin_routes(state),
    ]
    handlers = {PayPalApiError: _paypal_error, OAuthError: _paypal_error}
    return Starlette(routes=routes, exception_handlers=handlers)
