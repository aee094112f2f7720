"""The fake Stripe's HTTP layer: authentication, idempotency, fault injection, wire format.

Every API request goes through one pipeline: the API key is checked (401 with Stripe's
error JSON if unknown), parameters are decoded, the request is recorded (without its
key), arrival faults apply, then ``Idempotency-Key`` decides between a replay, a 400
``idempotency_error``, a 409, or executing the endpoint against ``StripeState`` after the
simulated latency (the key stays taken meanwhile, so a concurrent duplicate gets 409);
the answer may then be held, cut off or garbled as a fault says.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from sandbox import stripe_responses as responses
from sandbox.stripe_faults import (
    Fail,
    Fault,
    Faults,
    Garble,
    Hold,
    IdempotencyStore,
    Script,
    StoredResponse,
    Verdict,
    fingerprint,
)
from sandbox.stripe_state import Outcome, StripeState
from sandbox.stripe_wire import Params, StripeApiError, api_key_of, decode_params, new_id


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What the fake saw of one API request (never the API key)."""

    method: str
    path: str
    account: str | None
    idempotency_key: str | None
    params: Params


@dataclass(frozen=True, slots=True)
class _Call:
    scope: str
    account: str | None
    params: Params
    path_id: str
    base: str
    outcome: Outcome | None = None


Handler = Callable[[_Call], Params]


class StripeHttp:
    """The API routes of one fake Stripe, over its state, faults and idempotency keys."""

    def __init__(
        self,
        *,
        keys: dict[str, str],
        state: StripeState,
        faults: Faults,
        idempotency: IdempotencyStore,
        max_hold_s: float,
    ) -> None:
        """Serve ``state``; ``keys`` maps each accepted API key to its platform account."""
        self._keys = keys
        self.state = state
        self.faults = faults
        self.idempotency = idempotency
        self._max_hold_s = max_hold_s
        self.requests: list[RecordedRequest] = []

    def routes(self) -> list[Route]:
        """The ``/v1`` routes."""
        state = self.state
        one = "/v1/payment_intents/{id}"
        endpoints: list[tuple[str, str, str, Handler]] = [
            (
                "POST",
                "/v1/payment_intents",
                "payment_intents.create",
                lambda c: state.create_intent(c.scope, c.account, c.params, c.outcome, c.base),
            ),
            (
                "GET",
                "/v1/payment_intents",
                "payment_intents.list",
                lambda c: state.list_intents(c.scope, c.params),
            ),
            (
                "GET",
                one,
                "payment_intents.retrieve",
                lambda c: state.retrieve_intent(c.scope, c.path_id, c.params),
            ),
            (
                "POST",
                one + "/capture",
                "payment_intents.capture",
                lambda c: state.capture(c.scope, c.path_id, c.params),
            ),
            (
                "POST",
                one + "/cancel",
                "payment_intents.cancel",
                lambda c: state.cancel(c.scope, c.path_id, c.params),
            ),
            (
                "POST",
                "/v1/refunds",
                "refunds.create",
                lambda c: state.create_refund(c.scope, c.params),
            ),
            ("GET", "/v1/refunds", "refunds.list", lambda c: state.list_refunds(c.scope, c.params)),
            (
                "GET",
                "/v1/refunds/{id}",
                "refunds.retrieve",
                lambda c: state.retrieve_refund(c.scope, c.path_id),
            ),
            (
                "GET",
                "/v1/balance_transactions",
                "balance_transactions.list",
                lambda c: state.list_balance_transactions(c.scope, c.params),
            ),
        ]
        return [
            Route(path, self._endpoint(operation, handler), methods=[method])
            for method, path, operation, handler in endpoints
        ]

    def _endpoint(
        self, operation: str, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await self._serve(request, operation, handler)
            except StripeApiError as error:
                return error.response(new_id("req"))

        return endpoint

    async def _serve(self, request: Request, operation: str, handler: Handler) -> Response:
        request_id = new_id("req")
        key = api_key_of(request)
        if key is None or key not in self._keys:
            raise responses.unauthorized(key)
        account = request.headers.get("stripe-account")
        post = request.method == "POST"
        raw = (await request.body()).decode("utf-8", "replace") if post else request.url.query
        params = decode_params(raw)
        ikey = request.headers.get("idempotency-key") if post else None
        self.requests.append(
            RecordedRequest(request.method, request.url.path, account, ikey, params)
        )
        fault = self.faults.arrival(operation)
        if isinstance(fault, Fail):
            return responses.failure(fault, request_id)
        if isinstance(fault, Hold) and not fault.applied:
            await self._hold(request)
            return Response(status_code=504)  # nobody is listening any more
        if isinstance(fault, Garble) and fault.kind == "html_502":
            return HTMLResponse(responses.HTML_502, status_code=502)
        scope = account or self._keys[key]
        path_id = str(request.path_params.get("id", ""))
        call = _Call(scope, account, params, path_id, str(request.base_url))
        response = await self._execute(operation, handler, call, request, ikey)
        headers = {**response.headers, "request-id": request_id}
        return await self._deliver(request, fault, response, headers)

    async def _execute(
        self, operation: str, handler: Handler, call: _Call, request: Request, ikey: str | None
    ) -> StoredResponse:
        scope = call.scope
        if ikey is not None:
            print_ = fingerprint(request.method, request.url.path, call.params)
            verdict, first = self.idempotency.begin(scope, ikey, print_)
            if verdict is Verdict.REPLAY and first is not None:
                return StoredResponse(
                    first.status, first.body, {**first.headers, "idempotent-replayed": "true"}
                )
            if verdict is Verdict.MISMATCH:
                raise responses.idempotency_mismatch(ikey)
            if verdict is Verdict.IN_FLIGHT:
                raise responses.in_flight()
        try:
            if self.faults.latency_s > 0:  # the vendor's processing time, with the key taken
                await asyncio.sleep(self.faults.latency_s)
            response, stored = self._run(operation, handler, call, self.faults.execution(operation))
        except BaseException:
            if ikey is not None:
                self.idempotency.abandon(scope, ikey)
            raise
        if ikey is not None:
            response.headers["idempotency-key"] = ikey
            if stored:
                self.idempotency.finish(scope, ikey, response)
            else:
                self.idempotency.abandon(scope, ikey)
        return response

    @staticmethod
    def _run(
        operation: str, handler: Handler, call: _Call, fault: Fault | None
    ) -> tuple[StoredResponse, bool]:
        """Execute a new request: its response, and whether the key keeps it."""
        outcome = fault.outcome if isinstance(fault, Script) else None
        if isinstance(fault, Fail):  # a stored 500: Stripe replays it and says not to retry
            error = StripeApiError(fault.status, "api_error", "An unknown error occurred.")
            return StoredResponse(
                fault.status, error.body(), {"stripe-should-retry": "false"}
            ), True
        declined = outcome is not None and outcome.kind == "decline"
        if outcome is not None and declined and operation != "payment_intents.create":
            error = StripeApiError(
                402,
                "card_error",
                "Your card was declined.",
                code=outcome.code,
                decline_code=outcome.decline_code,
            )
            return StoredResponse(402, error.body(), {}), True
        try:
            body = handler(replace(call, outcome=outcome))
        except StripeApiError as error:
            return StoredResponse(error.status, error.body(), dict(error.headers)), error.stored
        return StoredResponse(200, body, {}), True

    async def _deliver(
        self,
        request: Request,
        fault: Fault | None,
        response: StoredResponse,
        headers: dict[str, str],
    ) -> Response:
        ok = response.status < 300  # noqa: PLR2004 (2xx)
        if isinstance(fault, Hold):
            if fault.drop:
                return responses.DroppedResponse(json.dumps(response.body).encode())
            await self._hold(request)
        if isinstance(fault, Garble) and ok:
            return responses.garbled(fault.kind, response, headers)
        return responses.json_response(response.status, response.body, headers)

    async def _hold(self, request: Request) -> None:
        """Wait until the client hangs up (it timed out), at most ``max_hold_s``."""

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(disconnected(), self._max_hold_s)
