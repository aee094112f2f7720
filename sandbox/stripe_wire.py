"""Stripe's wire format, as the fake Stripe reads and writes it.

Requests carry form-encoded parameters with bracketed nesting (``metadata[payment_id]=x``,
``expand[0]=latest_charge``, ``created[gte]=1700000000``); the API key arrives as a Bearer
token or as the user of HTTP basic auth. Errors are ``{"error": {...}}`` with the HTTP
status Stripe uses for their type. Webhooks are signed as Stripe signs them.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse

Params = dict[str, object]
"""Decoded request parameters: strings, nested dicts and lists of strings."""

_SEGMENT: Final = re.compile(r"\[([^\[\]]*)\]")


def new_id(prefix: str) -> str:
    """A Stripe-like object id, e.g. ``pi_3Nx...``."""
    return f"{prefix}_{secrets.token_hex(12)}"


def _insert(target: Params, path: list[str], value: str) -> None:
    node: Params = target
    for index, part in enumerate(path):
        last = index == len(path) - 1
        if last:
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise StripeApiError.invalid(f"Invalid parameter nesting at {part}.", param=part)
        node = child


def _listify(value: object) -> object:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(item) for key, item in value.items()}
    if items and all(key.isdigit() or key == "" for key in items):
        return [items[key] for key in sorted(items, key=lambda k: int(k or "0"))]
    return items


def decode_params(raw: str) -> Params:
    """Decode Stripe's bracketed form encoding into nested dicts and lists."""
    decoded: Params = {}
    appended = 0
    for key, value in parse_qsl(raw, keep_blank_values=True):
        head, _, rest = key.partition("[")
        path = [head, *_SEGMENT.findall("[" + rest)] if rest else [head]
        if path[-1] == "":  # ``expand[]=x``: append
            path[-1] = str(appended)
            appended += 1
        _insert(decoded, path, value)
    listed = _listify(decoded)
    return listed if isinstance(listed, dict) else {}


def api_key_of(request: Request) -> str | None:
    """The API key a request authenticates with (Bearer, or basic auth's user)."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer":
        return credential.strip() or None
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(credential, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None
    return None


@dataclass(eq=False)
class StripeApiError(Exception):
    """An error answered in Stripe's JSON shape: ``{"error": {type, code, ...}}``.

    ``stored``: whether Stripe's idempotency layer keeps this answer for the key (an
    endpoint that began executing); validation failures and conflicts are not kept.
    """

    status: int
    type: str
    message: str
    code: str | None = None
    decline_code: str | None = None
    param: str | None = None
    payment_intent: Params | None = None
    stored: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Give the exception its message."""
        super().__init__(self.message)

    @classmethod
    def invalid(
        cls, message: str, *, param: str | None = None, code: str | None = None
    ) -> "StripeApiError":
        """A 400 ``invalid_request_error`` that is not stored (failed validation)."""
        return cls(400, "invalid_request_error", message, code=code, param=param, stored=False)

    @classmethod
    def missing(cls, kind: str, object_id: str, param: str = "id") -> "StripeApiError":
        """A 404 ``resource_missing``."""
        return cls(
            404,
            "invalid_request_error",
            f"No such {kind}: '{object_id}'",
            code="resource_missing",
            param=param,
            stored=False,
        )

    def body(self) -> Params:
        """The JSON body Stripe sends."""
        error: Params = {"type": self.type, "message": self.message}
        for name in ("code", "decline_code", "param", "payment_intent"):
            value = getattr(self, name)
            if value is not None:
                error[name] = value
        if self.decline_code is not None or self.code is not None:
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code}"
        return {"error": error}

    def response(self, request_id: str) -> JSONResponse:
        """The HTTP response carrying this error."""
        headers = {"request-id": request_id, **self.headers}
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.{body}"`` keyed with the whole ``whsec_`` secret."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    """``Stripe-Signature`` with one ``v1`` per secret (several during a rotation)."""
    parts = [f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets_)]
    return ",".join(parts)


def as_str(params: Params, name: str, *, required: bool = False) -> str | None:
    """A string parameter; 400 if it is missing while ``required`` or not a string."""
    value = params.get(name)
    if value is None:
        if required:
            raise StripeApiError.invalid(
                f"Missing required param: {name}.", param=name, code="parameter_missing"
            )
        return None
    if not isinstance(value, str):
        raise StripeApiError.invalid(f"Invalid string: {name}.", param=name)
    return value


def as_int(params: Params, name: str, *, required: bool = False) -> int | None:
    """A non-negative integer parameter; 400 if malformed."""
    value = as_str(params, name, required=required)
    if value is None:
        return None
    if not value.isdigit():
        raise StripeApiError.invalid(
            f"Invalid integer: {value[:20]}", param=name, code="parameter_invalid_integer"
        )
    return int(value)


def as_bool(params: Params, name: str, *, default: bool) -> bool:
    """A boolean parameter (``true``/``false``)."""
    value = as_str(params, name)
    if value is None:
        return default
    if value not in {"true", "false"}:
        raise StripeApiError.invalid(f"Invalid boolean: {value[:20]}", param=name)
    return value == "true"


def as_metadata(params: Params) -> dict[str, str]:
    """The ``metadata`` hash: string keys to string values."""
    value = params.get("metadata", {})
    if value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StripeApiError.invalid("Invalid metadata.", param="metadata")
    return {str(key): str(item) for key, item in value.items()}


def expands(params: Params) -> frozenset[str]:
    """The ``expand[]`` paths asked for."""
    value = params.get("expand", [])
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(str(item) for item in value)
    raise StripeApiError.invalid("Invalid array: expand.", param="expand")
