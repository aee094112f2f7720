"""The fake PayPal's ``/_sandbox`` admin routes, for developers driving it over HTTP.

    POST   /_sandbox/orders/{id}/approve    the payer approves the order
    POST   /_sandbox/faults                 arm a fault (see ``FaultSpec``)
    DELETE /_sandbox/faults                 disarm everything, drop the latency
    POST   /_sandbox/settings               {"auto_approve", "approval_required",
                                             "token_ttl_s", "max_page_size"} (any of them)
    POST   /_sandbox/tokens/expire          every issued token is refused from now on
    POST   /_sandbox/clients                {"client_id", "secret"}: accept a REST client
    DELETE /_sandbox/clients/{id}           refuse it and its tokens
    POST   /_sandbox/webhooks               {"url", "webhook_id"?}: deliver events there
    GET    /_sandbox/webhooks/deliveries    what became of the deliveries
    POST   /_sandbox/certs/rotate           sign webhooks with a new certificate
    GET    /_sandbox/certs/{name}.pem       a signing certificate (the PAYPAL-CERT-URL)

Tests in the same process use ``PayPalSandbox``'s methods instead.
"""

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.paypal_faults import Fault, Malformed, Target
from sandbox.paypal_model import Decline, PayPalApiError
from sandbox.paypal_state import SandboxState


class FaultSpec(BaseModel):
    """One fault to arm; ``kind`` says which fields matter.

    ``status`` (``status``, ``retry_after``), ``timeout_before``, ``timeout_after``,
    ``malformed`` (``malformed``), ``decline`` (``issue`` or ``response_code``; targets
    ``authorize_order``, ``capture``, ``void``, ``refund``), ``latency`` (``seconds``, for
    every request).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["status", "timeout_before", "timeout_after", "malformed", "decline", "latency"]
    target: Target = "any"
    times: int = Field(default=1, ge=1, le=1000)
    status: int = Field(default=500, ge=400, le=599)
    retry_after: int | None = Field(default=None, ge=0)
    malformed: Malformed = "html"
    issue: str | None = None
    response_code: str | None = None
    seconds: float = Field(default=0.0, ge=0, le=60)


class SettingsSpec(BaseModel):
    """Settings to change; the others stay as they are."""

    model_config = ConfigDict(extra="forbid")

    auto_approve: bool | None = None
    approval_required: int | None = Field(default=None, ge=0)
    token_ttl_s: int | None = Field(default=None, ge=1)
    max_page_size: int | None = Field(default=None, ge=1, le=500)


def arm(state: SandboxState, spec: FaultSpec) -> None:
    """Arm the fault ``spec`` describes."""
    if spec.kind == "latency":
        state.faults.latency = spec.seconds
    elif spec.kind == "decline":
        for _ in range(spec.times):
            state.faults.decline_next(spec.target, Decline(spec.issue, spec.response_code))
    else:
        fault = Fault(spec.kind, spec.target, spec.status, spec.retry_after, spec.malformed)
        state.faults.arm(fault, spec.times)


def configure(state: SandboxState, spec: SettingsSpec) -> None:
    """Apply the settings ``spec`` names."""
    settings = state.settings
    with settings.lock:
        if spec.auto_approve is not None:
            settings.auto_approve = spec.auto_approve
        if spec.approval_required is not None:
            settings.approval_required = spec.approval_required
        if spec.max_page_size is not None:
            settings.max_page_size = spec.max_page_size
    if spec.token_ttl_s is not None:
        state.accounts.token_ttl_s = spec.token_ttl_s


async def _json(request: Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError:
        raise PayPalApiError.invalid("MALFORMED_REQUEST_JSON", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise PayPalApiError.invalid("MALFORMED_REQUEST_JSON", "the body is not an object")
    return body


M = TypeVar("M", bound=BaseModel)


def _spec(model: type[M], body: dict[str, object]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise PayPalApiError.invalid("INVALID_PARAMETER_VALUE", str(exc)[:500]) from None


class _Admin:
    """The admin handlers, over one sandbox's state."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state

    async def approve(self, request: Request) -> Response:
        return JSONResponse(self._state.ledger.approve(request.path_params["id"]))

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self._state.faults.clear()
        else:
            arm(self._state, _spec(FaultSpec, await _json(request)))
        return Response(None, 204)

    async def settings(self, request: Request) -> Response:
        configure(self._state, _spec(SettingsSpec, await _json(request)))
        return Response(None, 204)

    async def expire(self, _: Request) -> Response:
        self._state.accounts.expire_tokens()
        return Response(None, 204)

    async def add_client(self, request: Request) -> Response:
        body = await _json(request)
        client_id, secret = body.get("client_id"), body.get("secret")
        if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id:
            raise PayPalApiError.invalid("MISSING_REQUIRED_PARAMETER", "client_id and secret")
        self._state.accounts.add(client_id, secret)
        return Response(None, 204)

    async def revoke_client(self, request: Request) -> Response:
        self._state.accounts.revoke(request.path_params["id"])
        return Response(None, 204)

    async def webhooks(self, request: Request) -> Response:
        body = await _json(request)
        url, webhook_id = body.get("url"), body.get("webhook_id")
        if not isinstance(url, str) or not (webhook_id is None or isinstance(webhook_id, str)):
            raise PayPalApiError.invalid("MISSING_REQUIRED_PARAMETER", "url")
        return JSONResponse({"id": self._state.webhooks.register(url, webhook_id)}, 201)

    async def deliveries(self, _: Request) -> Response:
        rows = [
            {"url": d.url, "event_type": d.event_type, "attempts": d.attempts, "outcome": d.outcome}
            for d in self._state.webhooks.deliveries
        ]
        return JSONResponse(rows)

    async def rotate(self, _: Request) -> Response:
        return JSONResponse({"name": self._state.webhooks.rotate()}, 201)

    async def certificate(self, request: Request) -> Response:
        pem = self._state.webhooks.pem(request.path_params["name"])
        if pem is None:
            raise PayPalApiError.not_found(request.path_params["name"])
        return Response(pem, media_type="application/x-pem-file")


def admin_routes(state: SandboxState) -> list[Route]:
    """The ``/_sandbox`` routes over ``state``."""
    admin = _Admin(state)
    post = ["POST"]
    return [
        Route("/_sandbox/orders/{id}/approve", admin.approve, methods=post),
        Route("/_sandbox/faults", admin.faults, methods=["POST", "DELETE"]),
        Route("/_sandbox/settings", admin.settings, methods=post),
        Route("/_sandbox/tokens/expire", admin.expire, methods=post),
        Route("/_sandbox/clients", admin.add_client, methods=post),
        Route("/_sandbox/clients/{id}", admin.revoke_client, methods=["DELETE"]),
        Route("/_sandbox/webhooks", admin.webhooks, methods=post),
        Route("/_sandbox/webhooks/deliveries", admin.deliveries, methods=["GET"]),
        Route("/_sandbox/certs/rotate", admin.rotate, methods=post),
        Route("/_sandbox/certs/{name}.pem", admin.certificate, methods=["GET"]),
    ]
