"""The fake Stripe's admin endpoints (``/_sandbox/...``): its test controls over HTTP, for dev.

::

    GET    /_sandbox/health
    POST   /_sandbox/faults              {"operation": "payment_intents.create" | ... | "*",
                                          "kind": "fail" | "rate_limit" | "timeout" | "drop"
                                                  | "garble" | "decline" | "require_action",
                                          "times", "status", "stored", "retry_after",
                                          "applied", "garble", "code", "decline_code"}
    DELETE /_sandbox/faults              forget queued faults and latency
    POST   /_sandbox/latency             {"seconds": 0.5}
    POST   /_sandbox/webhook_endpoint    {"url": "http://...", "secret": "whsec_..."}
    POST   /_sandbox/api_keys            {"key": "sk_test_..."}
    POST   /_sandbox/payment_intents/{id}/complete_3ds   (or fail_3ds)
    GET    /_sandbox/3ds/{id}?outcome=complete|fail      the 3-D Secure page a customer is
                                                         sent to; redirects to return_url
    GET    /_sandbox/deliveries          webhook deliveries so far

Admin calls need no API key: the sandbox only listens on loopback.
"""

from dataclasses import asdict
from typing import TYPE_CHECKING, Final, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.gcp_server import HEALTH_PATH
from sandbox.stripe_wire import StripeApiError

if TYPE_CHECKING:
    from sandbox.stripe_api import FakeStripe
    from sandbox.stripe_faults import GarbleKind

_GARBLES: Final = frozenset({"html_502", "truncated_json", "missing_field", "unknown_status"})
_ACTIONS: Final = frozenset({"complete_3ds", "fail_3ds"})


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": {"type": "sandbox_error", "message": message}}, status)


async def _object(request: Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    return body


def _number(spec: dict[str, object], name: str, default: float) -> float:
    value = spec.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number")
    return float(value)


def _arm(fake: "FakeStripe", spec: dict[str, object]) -> None:
    """Queue the fault ``spec`` describes."""
    operation, kind = str(spec.get("operation", "*")), spec.get("kind")
    times = int(_number(spec, "times", 1))
    if kind == "fail":
        status = int(_number(spec, "status", 503))
        fake.fail_next(operation, status=status, times=times, stored=spec.get("stored") is True)
    elif kind == "rate_limit":
        retry_after = _number(spec, "retry_after", 1.0)
        fake.rate_limit_next(operation, retry_after=retry_after, times=times)
    elif kind in {"timeout", "drop"}:
        fake.timeout_next(operation, applied=spec.get("applied", True) is True, drop=kind == "drop")
    elif kind == "garble" and spec.get("garble") in _GARBLES:
        fake.garble_next(operation, cast("GarbleKind", spec["garble"]))
    elif kind == "decline":
        decline = spec.get("decline_code", "generic_decline")
        fake.decline_next(
            operation if operation != "*" else "payment_intents.create",
            code=str(spec.get("code", "card_declined")),
            decline_code=None if decline is None else str(decline),
        )
    elif kind == "require_action":
        fake.require_action_next()
    else:
        raise ValueError(f"unknown fault kind {str(kind)[:40]!r}")


class _Admin:
    def __init__(self, fake: "FakeStripe") -> None:
        self._fake = fake

    async def health(self, _: Request) -> Response:
        return PlainTextResponse("ok")

    async def add_fault(self, request: Request) -> Response:
        try:
            _arm(self._fake, await _object(request))
        except (ValueError, TypeError) as exc:
            return _error(str(exc))
        return JSONResponse({"queued": self._fake.faults.pending()})

    async def clear_faults(self, _: Request) -> Response:
        self._fake.clear_faults()
        return JSONResponse({"queued": 0})

    async def latency(self, request: Request) -> Response:
        try:
            seconds = _number(await _object(request), "seconds", 0)
        except TypeError as exc:
            return _error(str(exc))
        self._fake.set_latency(seconds)
        return JSONResponse({"seconds": seconds})

    async def webhook_endpoint(self, request: Request) -> Response:
        try:
            body = await _object(request)
        except TypeError as exc:
            return _error(str(exc))
        url, secret = body.get("url"), body.get("secret")
        self._fake.configure_webhooks(
            None if url is None else str(url), None if secret is None else str(secret)
        )
        return JSONResponse({"url": self._fake.webhooks.url})

    async def api_key(self, request: Request) -> Response:
        try:
            key = (await _object(request)).get("key")
        except TypeError as exc:
            return _error(str(exc))
        if not isinstance(key, str) or not key.startswith("sk_test_"):
            return _error("expected a test key: sk_test_...")
        self._fake.add_api_key(key)
        return JSONResponse({"added": True})

    def _act(self, intent_id: str, *, complete: bool) -> Response | None:
        try:
            if complete:
                self._fake.complete_3ds(intent_id)
            else:
                self._fake.fail_3ds(intent_id)
        except StripeApiError as error:
            return JSONResponse(error.body(), error.status)
        return None

    async def action(self, request: Request) -> Response:
        intent_id, verb = request.path_params["id"], request.path_params["verb"]
        if verb not in _ACTIONS:
            return _error(f"unknown action {verb[:40]!r}", 404)
        failed = self._act(intent_id, complete=verb == "complete_3ds")
        return failed or JSONResponse({"id": intent_id, "action": verb})

    async def three_ds_page(self, request: Request) -> Response:
        intent_id = request.path_params["id"]
        complete = request.query_params.get("outcome", "complete") == "complete"
        failed = self._act(intent_id, complete=complete)
        if failed is not None:
            return failed
        return_url = self._fake.state.return_url_of(intent_id)
        if return_url:
            return RedirectResponse(f"{return_url}?payment_intent={intent_id}", 303)
        return PlainTextResponse("3-D Secure " + ("completed" if complete else "failed"))

    async def deliveries(self, _: Request) -> Response:
        return JSONResponse([asdict(delivery) for delivery in self._fake.deliveries])


def routes(fake: "FakeStripe") -> list[Route]:
    """The admin routes of ``fake``."""
    admin = _Admin(fake)
    return [
        Route(HEALTH_PATH, admin.health, methods=["GET"]),
        Route("/_sandbox/faults", admin.add_fault, methods=["POST"]),
        Route("/_sandbox/faults", admin.clear_faults, methods=["DELETE"]),
        Route("/_sandbox/latency", admin.latency, methods=["POST"]),
        Route("/_sandbox/webhook_endpoint", admin.webhook_endpoint, methods=["POST"]),
        Route("/_sandbox/api_keys", admin.api_key, methods=["POST"]),
        Route("/_sandbox/payment_intents/{id}/{verb}", admin.action, methods=["POST"]),
        Route("/_sandbox/3ds/{id}", admin.three_ds_page, methods=["GET"]),
        Route("/_sandbox/deliveries", admin.deliveries, methods=["GET"]),
    ]
