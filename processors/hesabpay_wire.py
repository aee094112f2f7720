"""HesabPay's HTTP API as the adapter calls it: one JSON POST, its answer, its failures.

``HesabPayClient.call`` sends a request with ``Authorization: API-KEY <key>`` and returns
the answer, or raises the ``ProcessorError`` the error taxonomy gives for a transport
failure. ``expect_success`` then turns an answer that is not ``status_code`` 10 into the
taxonomy's error:

- 429 and 5xx: classified by the HTTP status (retryable), whatever the body says;
- other statuses: by the body's ``status_code`` (``status_code_<n>``) when the body is
  HesabPay's JSON, else by the HTTP status (``http_<n>``);
- a 2xx whose body cannot be read (an HTML page from a proxy, truncated JSON, no
  ``status_code``, a success without ``success: true``) is ``malformed_response``: the
  request was received, so its effect is in doubt.

Messages name the operation, the path, the HTTP status, the content type and the size of
the answer; never the API key, and never the body (it may echo customer details).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Final

import httpx
from pydantic import JsonValue, SecretStr

from processors.errors import ProcessorError
from processors.port import OperationKind
from processors.taxonomy import classify, http_status_code, to_error
from schemas.processors import Processor

SUCCESS: Final = 10
"""HesabPay's ``status_code`` for success."""

_RETRYABLE_STATUSES: Final = frozenset({429, *range(500, 600)})
_TRANSPORT_CODES: Final[tuple[tuple[type[httpx.TransportError], str, bool], ...]] = (
    # (exception, taxonomy code, whether the request may have reached HesabPay); the
    # first match wins, so subclasses come before their bases.
    (httpx.ConnectTimeout, "connect_error", False),
    (httpx.ConnectError, "connect_error", False),
    (httpx.PoolTimeout, "pool_timeout", False),
    (httpx.ReadTimeout, "read_timeout", True),
    (httpx.WriteTimeout, "write_timeout", True),
    (httpx.TransportError, "connection_lost", True),
)


@dataclass(frozen=True, slots=True)
class Answer:
    """HesabPay's answer to one call: the HTTP status and the JSON object, if it was one."""

    operation: str
    path: str
    http_status: int
    content_type: str
    size: int
    body: Mapping[str, JsonValue] | None
    retry_after: float | None = None

    @property
    def status_code(self) -> int | None:
        """The body's ``status_code``, when it is an integer."""
        value = self.body.get("status_code") if self.body is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def succeeded(self) -> bool:
        """A 2xx with ``status_code`` 10 and ``success: true``."""
        return (
            200 <= self.http_status < 300  # noqa: PLR2004 (the 2xx range)
            and self.status_code == SUCCESS
            and self.body is not None
            and self.body.get("success") is True
        )

    def describe(self) -> str:
        """Context for a log line or an error message, without the body."""
        return (
            f"hesabpay {self.operation} {self.path}: HTTP {self.http_status}, "
            f"{self.content_type or 'no content type'}, {self.size} bytes"
        )

    def vendor_code(self) -> str:
        """The taxonomy code of a refusal (see the module docstring)."""
        if self.http_status in _RETRYABLE_STATUSES:
            return http_status_code(self.http_status)
        if self.status_code is not None and self.status_code != SUCCESS:
            return f"status_code_{self.status_code}"
        if 200 <= self.http_status < 300:  # noqa: PLR2004 (the 2xx range)
            return "malformed_response"
        return http_status_code(self.http_status)


def expect_success(answer: Answer, operation: OperationKind) -> Mapping[str, JsonValue]:
    """The body of a successful answer; otherwise the taxonomy's error for it."""
    if answer.succeeded and answer.body is not None:
        return answer.body
    code = answer.vendor_code()
    if code == "malformed_response" and answer.status_code == SUCCESS:
        detail = "status_code 10 without success: true"
    elif code == "malformed_response":
        detail = "not HesabPay's JSON answer"
    else:
        detail = "refused"
    raise to_error(
        classify(Processor.HESABPAY, operation, code),
        f"{answer.describe()}: {detail} ({code})",
        vendor_code=code,
        sent=True,
        retry_after=answer.retry_after,
    )


def transport_error(
    exc: httpx.TransportError, operation: OperationKind, name: str, path: str
) -> ProcessorError:
    """The taxonomy's error for a request that got no answer."""
    code, sent = next((c, s) for kind, c, s in _TRANSPORT_CODES if isinstance(exc, kind))
    return to_error(
        classify(Processor.HESABPAY, operation, code),
        f"hesabpay {name} {path}: no answer ({type(exc).__name__})",
        vendor_code=code,
        sent=sent,
    )


def _retry_after(headers: httpx.Headers) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    date_header = headers.get("date")
    now = parsedate_to_datetime(date_header) if date_header else None
    return None if now is None else max(0.0, (moment - now).total_seconds())


def _json_object(content: bytes) -> Mapping[str, JsonValue] | None:
    try:
        parsed = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None


class HesabPayClient:
    """Posts JSON to HesabPay with a tenant's API key; translates transport failures."""

    def __init__(self, base_url: str, *, http: httpx.AsyncClient | None, timeout_s: float) -> None:
        """Call ``base_url`` with ``http``, or with a client made per call when it is None."""
        self._base_url = base_url.rstrip("/")
        self._http = http
        self._timeout = httpx.Timeout(timeout_s)

    async def call(
        self,
        path: str,
        body: Mapping[str, JsonValue],
        *,
        api_key: SecretStr,
        operation: OperationKind,
        name: str,
    ) -> Answer:
        """POST ``body`` to ``path``; the answer, or the error for a request that got none.

        ``operation`` picks the taxonomy rules; ``name`` is the call's name in messages.
        """
        headers = {
            "Authorization": f"API-KEY {api_key.get_secret_value()}",
            "Accept": "application/json",
        }
        try:
            if self._http is not None:
                response = await self._send(self._http, path, body, headers)
            else:
                async with httpx.AsyncClient() as http:
                    response = await self._send(http, path, body, headers)
        except httpx.TransportError as exc:
            raise transport_error(exc, operation, name, path) from exc
        return Answer(
            operation=name,
            path=path,
            http_status=response.status_code,
            content_type=response.headers.get("content-type", "").split(";")[0],
            size=len(response.content),
            body=_json_object(response.content),
            retry_after=_retry_after(response.headers),
        )

    async def _send(
        self,
        http: httpx.AsyncClient,
        path: str,
        body: Mapping[str, JsonValue],
        headers: Mapping[str, str],
    ) -> httpx.Response:
        return await http.post(
            self._base_url + path, json=body, headers=headers, timeout=self._timeout
        )
