"""Answers the fake Stripe gives besides its endpoints' own results.

Injected failures (a 5xx, a 429 with ``Retry-After``, an HTML 502 page), malformed bodies,
a response cut off mid-body, and Stripe's errors for a bad API key, a reused idempotency
key and a request racing another with the same key.
"""

import json
from typing import Final

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from sandbox.stripe_faults import Fail, GarbleKind, StoredResponse
from sandbox.stripe_wire import Params, StripeApiError

HTML_502: Final = "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"


class DroppedResponse(Response):
    """Announces the whole body, sends half of it, then lets the server close the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 (the ASGI signature)
        """Send the headers and half the body; the response is never completed."""
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(self.body)),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        half = bytes(self.body[: len(self.body) // 2])
        await send({"type": "http.response.body", "body": half, "more_body": True})


def json_response(status: int, body: Params, headers: dict[str, str]) -> JSONResponse:
    """Stripe's JSON answer."""
    return JSONResponse(body, status_code=status, headers=headers)


def garbled(kind: GarbleKind, response: StoredResponse, headers: dict[str, str]) -> Response:
    """``response`` made malformed as ``kind`` says (a 200 either way)."""
    if kind == "truncated_json":
        raw = json.dumps(response.body).encode()
        return Response(raw[: len(raw) // 2], 200, headers, media_type="application/json")
    body = dict(response.body)
    if kind == "missing_field":
        body.pop("status", None)
    else:
        body["status"] = "requires_reticulation"
    return json_response(200, body, headers)


def failure(fault: Fail, request_id: str) -> Response:
    """An injected 429 (with ``Retry-After``) or 5xx that Stripe does not store."""
    headers = {"request-id": request_id}
    if fault.status == 429:  # noqa: PLR2004 (rate limited)
        if fault.retry_after is not None:
            headers["retry-after"] = f"{fault.retry_after:g}"
        error = StripeApiError(
            429,
            "invalid_request_error",
            "Too many requests hit the API too quickly.",
            code="rate_limit",
        )
    else:
        headers["stripe-should-retry"] = "true"
        error = StripeApiError(fault.status, "api_error", "The service is temporarily unavailable.")
    return json_response(fault.status, error.body(), headers)


def unauthorized(key: str | None) -> StripeApiError:
    """401 for a missing or unknown key; the key is masked as Stripe masks it."""
    if key is None:
        message = "You did not provide an API key."
    else:
        message = f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}"
    return StripeApiError(
        401, "invalid_request_error", message, code="api_key_invalid" if key else None
    )


def idempotency_mismatch(key: str) -> StripeApiError:
    """400 ``idempotency_error``: the key was first used with other parameters."""
    return StripeApiError(
        400,
        "idempotency_error",
        f"Keys for idempotent requests can only be used with the same parameters they were "
        f"first used with. Try using a key other than '{key[:60]}' if you meant to execute a "
        "different request.",
        stored=False,
    )


def in_flight() -> StripeApiError:
    """409: another request with this key is still running; safe to retry."""
    return StripeApiError(
        409,
        "invalid_request_error",
        "There is currently another in-progress request using this Idempotent Key (that "
        "probably means you submitted twice, and the other request is still going through): "
        "please retry in a few seconds.",
        code="idempotency_key_in_use",
        stored=False,
        headers={"stripe-should-retry": "true"},
    )
