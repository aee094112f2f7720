"""Runs a fake Google API (an ASGI app) with uvicorn on loopback, in a background thread.

Shared by the Secret Manager and Cloud Storage fakes: a free port on 127.0.0.1, readiness
checked by asking the server itself, injectable failures, and Google's JSON error shape.
"""

import socket
import threading
import time
from types import TracebackType
from typing import Final, Self

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

HEALTH_PATH: Final = "/_sandbox/health"
_READY_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 10.0

_STATUS_NAMES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(status: int, message: str) -> JSONResponse:
    """A response with Google's JSON error body, as ``google.api_core`` parses it."""
    reason = _STATUS_NAMES.get(status, "UNKNOWN")
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": reason,
            "errors": [{"message": message, "domain": "global", "reason": reason.lower()}],
        }
    }
    return JSONResponse(body, status_code=status)


class ApiError(Exception):
    """Raised by a fake's handler to answer with Google's JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        """An error answered with HTTP ``status`` and ``message``."""
        super().__init__(message)
        self.status = status
        self.message = message


async def api_error_response(_: Request, exc: Exception) -> Response:
    """Starlette exception handler: ``ApiError`` as Google's error, ``ValueError`` as a 400."""
    if isinstance(exc, ApiError):
        return google_error(exc.status, exc.message)
    if isinstance(exc, ValueError):
        return google_error(400, str(exc) or "Bad request.")
    raise exc  # pragma: no cover - handlers are registered for these two types only


class FaultInjector:
    """ASGI middleware: answers the next queued requests with an injected error status.

    Also counts the API requests it lets through or fails (the health probe excluded), so
    that tests can check that a client did, or did not, talk to the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``; no failure is queued at first."""
        self._app = app
        self._faults: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._requests = 0

    @property
    def request_count(self) -> int:
        """How many API requests reached the server so far."""
        with self._lock:
            return self._requests

    def fail_next(self, status: int, times: int = 1, *, path_prefix: str = "/") -> None:
        """Answer the next ``times`` API requests under ``path_prefix`` with ``status``."""
        with self._lock:
            self._faults.extend([(status, path_prefix)] * times)

    def _take_fault(self, path: str) -> int | None:
        for index, (status, prefix) in enumerate(self._faults):
            if path.startswith(prefix):
                del self._faults[index]
                return status
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request, then fail it if a fault is queued, else pass it on."""
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            await self._app(scope, receive, send)
            return
        with self._lock:
            self._requests += 1
            status = self._take_fault(scope["path"])
        if status is None:
            await self._app(scope, receive, send)
            return
        await google_error(status, "injected failure")(scope, receive, send)


class LoopbackServer:
    """One ASGI app served by uvicorn on 127.0.0.1 at a free port, in a daemon thread.

    Use as a context manager, or call ``start()`` (which returns the base URL) and
    ``stop()``. The app must answer ``GET /_sandbox/health`` with 200.
    """

    def __init__(self, app: ASGIApp, *, name: str) -> None:
        """Prepare to serve ``app``; nothing is bound until ``start()``."""
        self._app = app
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``; only while started."""
        if self._url is None:
            raise RuntimeError(f"{self._name} is not started")
        return self._url

    def start(self) -> str:
        """Bind a free port, serve in a background thread, wait until ready; return the URL."""
        if self._url is not None:
            return self._url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, log_config=None, log_level="warning", access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        self._url = f"http://127.0.0.1:{port}"
        thread.start()
        try:
            self._await_ready(thread)
        except BaseException:
            self.stop()
            raise
        return self._url

    def _await_ready(self, thread: threading.Thread) -> None:
        # The socket already listens, so a probe waits in the backlog until uvicorn
        # serves it: each attempt blocks for at most its own timeout, never sleeps.
        deadline = time.monotonic() + _READY_TIMEOUT_S
        with httpx.Client(timeout=0.5) as client:
            while True:
                if not thread.is_alive():
                    raise RuntimeError(f"{self._name} stopped while starting")
                try:
                    response = client.get(self.url + HEALTH_PATH)
                except httpx.TransportError:
                    response = None
                if response is not None:
                    response.raise_for_status()
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self._name} not ready after {_READY_TIMEOUT_S}s")

    def stop(self) -> None:
        """Ask uvicorn to exit, join its thread and release the port; idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(_STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
        self._url = None

    def __enter__(self) -> Self:
        """Start serving."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()
