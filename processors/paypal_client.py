"""PayPal's REST API over httpx for one tenant: OAuth tokens, requests, translated errors.

A bearer token is fetched with the tenant's ``client_id:secret`` (Basic auth, grant
``client_credentials``), cached per client id until shortly before it expires, and fetched
again once when PayPal answers 401; a second 401 is a configuration problem
(``not_configured``). Every POST carries the ``PayPal-Request-Id`` it is given and asks for
the whole object (``Prefer: return=representation``).

Failures are translated by ``processors.paypal_errors``. A read (GET, token) that fails is
retryable, as it changed nothing. A success whose body is not a JSON object is a plain
``ProcessorError``: the operation may have taken effect. Logs name the request and PayPal's
``debug_id``, never a credential or token.
"""

from datetime import datetime, timedelta
from typing import Final, Literal, NamedTuple

import httpx
import structlog

from processors.errors import ProcessorError
from processors.paypal_errors import (
    Call,
    condition_of,
    not_configured,
    read_failed,
    refusal,
    transport_error,
)
from processors.port import CredentialSource, VendorCredentials
from schemas.clock import Clock

Json = dict[str, object]
Method = Literal["GET", "POST"]

_log = structlog.get_logger(__name__)
_REFRESH_MARGIN_S: Final = 120.0
_UNAUTHORIZED: Final = 401
_TOKEN_PATH: Final = "/v1/oauth2/token"  # noqa: S105 (an endpoint path, not a credential)


class _Token(NamedTuple):
    value: str
    refresh_at: datetime


class _Request(NamedTuple):
    method: Method
    path: str
    body: Json | None
    params: dict[str, str] | None
    request_id: str | None


class PayPalClient:
    """Sends one tenant's requests to PayPal and translates what comes back."""

    def __init__(
        self,
        credentials: CredentialSource,
        *,
        base_url: str,
        clock: Clock,
        http: httpx.AsyncClient,
        timeout_s: float,
    ) -> None:
        """Talk to ``base_url`` through ``http``; ``timeout_s`` bounds every request."""
        self._credentials = credentials
        self._base_url = base_url.rstrip("/")
        self._clock = clock
        self._http = http
        self._timeout = httpx.Timeout(timeout_s)
        self._tokens: dict[str, _Token] = {}

    async def credentials(self) -> VendorCredentials:
        """The tenant's credentials, resolved now."""
        return await self._credentials()

    async def post(self, path: str, call: Call, body: Json, *, request_id: str | None) -> Json:
        """POST ``body`` with ``PayPal-Request-Id: request_id``; the JSON object answered."""
        return await self._send(_Request("POST", path, body, None, request_id), call)

    async def get(self, path: str, call: Call, params: dict[str, str] | None = None) -> Json:
        """GET ``path``; the JSON object answered."""
        return await self._send(_Request("GET", path, None, params, None), call)

    async def _send(self, request: _Request, call: Call) -> Json:
        client_id, secret = await self._client_credentials(call)
        token = await self._token(client_id, secret, call)
        response = await self._exchange(request, call, token)
        if response.status_code == _UNAUTHORIZED:
            _log.info("paypal_token_refused_refreshing", method=request.method, path=request.path)
            self._tokens.pop(client_id, None)
            response = await self._exchange(
                request, call, await self._token(client_id, secret, call)
            )
        return self._answer(request, call, response)

    async def _client_credentials(self, call: Call) -> tuple[str, str]:
        credentials = await self._credentials()
        client_id, colon, secret = credentials.api_key.get_secret_value().partition(":")
        if not colon or not client_id or not secret:
            message = "the PayPal credentials are not of the form client_id:secret"
            raise not_configured(call, message, "invalid_client")
        return client_id, secret

    async def _token(self, client_id: str, secret: str, call: Call) -> str:
        cached = self._tokens.get(client_id)
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        try:
            response = await self._http.post(
                f"{self._base_url}{_TOKEN_PATH}",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx.TransportError as exc:
            raise read_failed(call, _TOKEN_PATH, condition_of(exc)) from exc
        if response.status_code in {400, _UNAUTHORIZED}:
            message = f"PayPal refused the client credentials ({response.status_code})"
            raise not_configured(call, message, "invalid_client")
        if not response.is_success:
            raise refusal(call, f"POST {_TOKEN_PATH}", response)[0]
        token, expires_in = _token_fields(response)
        if token is None:
            raise read_failed(call, _TOKEN_PATH, "malformed_token_response")
        lifetime = max(0.0, expires_in - min(_REFRESH_MARGIN_S, expires_in / 10))
        self._tokens[client_id] = _Token(token, self._clock() + timedelta(seconds=lifetime))
        _log.info("paypal_token_issued", expires_in=expires_in)
        return token

    async def _exchange(self, request: _Request, call: Call, token: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if request.method == "POST":
            headers["Prefer"] = "return=representation"
            if request.request_id is not None:
                headers["PayPal-Request-Id"] = request.request_id
        what = f"{request.method} {request.path}"
        try:
            response = await self._http.request(
                request.method,
                f"{self._base_url}{request.path}",
                json=request.body,
                params=request.params,
                headers=headers,
                timeout=self._timeout,
            )
        except httpx.TransportError as exc:
            condition = condition_of(exc)
            _log.warning(
                "paypal_request_failed",
                method=request.method,
                path=request.path,
                condition=condition,
            )
            if request.method == "GET":
                raise read_failed(call, what, condition) from exc
            if condition not in {"connect_error", "pool_timeout"}:
                call.posted = True
            raise transport_error(call, what, condition) from exc
        if request.method == "POST" and response.status_code != _UNAUTHORIZED:
            call.posted = True
        return response

    def _answer(self, request: _Request, call: Call, response: httpx.Response) -> Json:
        what = f"{request.method} {request.path}"
        if response.status_code == _UNAUTHORIZED:
            raise not_configured(
                call, f"PayPal refused a fresh access token for {what}", "http_401"
            )
        if not response.is_success:
            error, debug_id = refusal(call, what, response)
            _log.info(
                "paypal_request_refused",
                method=request.method,
                path=request.path,
                status=response.status_code,
                code=error.vendor_code,
                debug_id=debug_id,
            )
            raise error
        if not response.content.strip():
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            content_type = response.headers.get("content-type", "none")[:60]
            _log.warning("paypal_malformed_response", method=request.method, path=request.path)
            raise ProcessorError(
                f"PayPal answered {what} with {response.status_code} and a body that is not a "
                f"JSON object ({content_type}, {len(response.content)} bytes)",
                vendor_code="malformed_response",
                sent=call.posted,
            )
        return body


def _token_fields(response: httpx.Response) -> tuple[str | None, float]:
    try:
        body = response.json()
    except ValueError:
        return None, 0.0
    token = body.get("access_token") if isinstance(body, dict) else None
    expires_in = body.get("expires_in") if isinstance(body, dict) else None
    if not isinstance(token, str) or not isinstance(expires_in, int | float) or not token:
        return None, 0.0
    return token, float(expires_in)
