"""Failure injection for hesabpay-mock's API (``/api/...``); checkout and admin pages are spared.

``FaultPlan`` holds what to do to the next requests, ``FaultInjector`` (ASGI middleware)
does it. Each armed fault is used by one request whose path starts with its prefix:

- ``5xx``: HesabPay's internal error (``status_code`` 50, HTTP 500 unless told);
- ``429``: too many requests, with ``Retry-After``;
- ``refuse``: a refusal with the given ``status_code`` (HTTP 400 unless told);
- ``html``: an HTML page (HTTP 200 unless told), as a proxy or firewall sends;
- ``truncated_json``: a 200 whose JSON body is cut short;
- ``timeout_before_apply``: no answer, nothing applied;
- ``timeout_after_apply``: applied, then no answer.

The two timeouts hold the connection until the client gives up and closes it (at most
``HANG_LIMIT_S``). ``latency`` delays every API request by that many seconds.
"""

import asyncio
import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Final, Literal, get_args

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.hesabpay_mock_model import INTERNAL_ERROR, MESSAGES, MockError

FaultKind = Literal[
    "5xx", "429", "refuse", "html", "truncated_json", "timeout_before_apply", "timeout_after_apply"
]
FAULT_KINDS: Final = frozenset(get_args(FaultKind))
API_PREFIX: Final = "/api/"
HANG_LIMIT_S: Final = 30.0
_HTML: Final = "<html><body><h1>502 Bad Gateway</h1><p>Upstream unavailable.</p></body></html>"


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure (see the module docstring)."""

    kind: FaultKind
    path_prefix: str = API_PREFIX
    status_code: int | None = None
    http_status: int | None = None
    retry_after: int = 1


class FaultPlan:
    """The armed faults and the latency; thread-safe."""

    def __init__(self) -> None:
        """Nothing armed, no latency."""
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latency = 0.0
        self._requests = 0

    @property
    def request_count(self) -> int:
        """How many API requests arrived so far (failed ones included)."""
        with self._lock:
            return self._requests

    @property
    def latency(self) -> float:
        """Seconds added to every API request."""
        with self._lock:
            return self._latency

    def arm(self, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` matching API requests."""
        if fault.kind not in FAULT_KINDS:
            raise MockError(400, 12, f"fault must be one of {sorted(FAULT_KINDS)}")
        if fault.kind == "refuse" and fault.status_code is None:
            raise MockError(400, 12, "a refusal needs a status_code")
        with self._lock:
            self._faults.extend([fault] * times)

    def set_latency(self, seconds: float) -> None:
        """Delay every API request by ``seconds``."""
        with self._lock:
            self._latency = max(0.0, seconds)

    def clear(self) -> None:
        """Disarm every fault and remove the latency."""
        with self._lock:
            self._faults.clear()
            self._latency = 0.0

    def take(self, path: str) -> Fault | None:
        """Count an API request and take the first fault armed for its path."""
        with self._lock:
            self._requests += 1
            for index, fault in enumerate(self._faults):
                if path.startswith(fault.path_prefix):
                    return self._faults.pop(index)
        return None


async def _until_disconnect(receive: Receive) -> None:
    """Hold the request until the client closes the connection."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(HANG_LIMIT_S):
            while (await receive())["type"] != "http.disconnect":
                pass


def _answer(fault: Fault) -> Response:
    if fault.kind == "5xx":
        body = {"status_code": INTERNAL_ERROR, "success": False, "message": MESSAGES[50]}
        return JSONResponse(body, status_code=fault.http_status or 500)
    if fault.kind == "429":
        headers = {"Retry-After": str(fault.retry_after)}
        body = {"success": False, "message": "Too many requests"}
        return JSONResponse(body, status_code=429, headers=headers)
    if fault.kind == "refuse" and fault.status_code is not None:
        message = MESSAGES.get(fault.status_code, "Request refused")
        body = {"status_code": fault.status_code, "success": False, "message": message}
        return JSONResponse(body, status_code=fault.http_status or 400)
    if fault.kind == "html":
        return HTMLResponse(_HTML, status_code=fault.http_status or 200)
    cut = json.dumps({"status_code": 10, "success": True, "url": "https://x"})[:24]
    return Response(cut, media_type="application/json")


class FaultInjector:
    """ASGI middleware applying a ``FaultPlan`` to API requests."""

    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        """Wrap ``app``."""
        self._app = app
        self._plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Delay, fail or hold the request as planned, else pass it on."""
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self._app(scope, receive, send)
            return
        fault = self._plan.take(scope["path"])
        if (latency := self._plan.latency) > 0:
            await asyncio.sleep(latency)  # the vendor's simulated slowness
        if fault is None:
            await self._app(scope, receive, send)
        elif fault.kind == "timeout_before_apply":
            await _until_disconnect(receive)
        elif fault.kind == "timeout_after_apply":
            await self._app(scope, receive, _discard)
            await _until_disconnect(receive)
        else:
            await _answer(fault)(scope, receive, send)


async def _discard(_: Message) -> None:
    """Drop the response of a request whose answer is to be lost."""
