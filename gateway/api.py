"""``payment-api``: the only HTTP the service serves. Vendors' webhooks, and the probes.

::

    POST /webhooks/stripe/connect               Stripe Connect platform events, by account
    POST /webhooks/{processor}/{tenant_id}      one tenant's webhooks from one processor
    GET  /healthz                               the process is alive
    GET  /readyz                                database, migrations and Pub/Sub are fine

A webhook is read once, up to ``max_body_bytes`` (413 beyond, before the rest is read),
as JSON only (415 otherwise), from an allowed address when the processor has an allowlist
(403 otherwise), then handed to ``WebhookIngress``: 200 once stored (or a duplicate),
400 when it does not verify, 404 for an unknown tenant or processor, 503 while ingestion
is paused or the inbox is unreachable (the vendor retries; nothing is lost). Every answer
is a small JSON object; a refusal names its reason and never echoes the body.
"""

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Final

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from handlers.ports import NotAttachedError
from handlers.webhooks import (
    IngestionPausedError,
    IngressUnavailableError,
    Receipt,
    WebhookIngress,
)
from processors.errors import WebhookRejected
from processors.port import WebhookRequest
from schemas.clock import Clock
from schemas.processors import Processor
from tenancy.errors import UnknownTenantError

_log = structlog.get_logger(__name__)

DEFAULT_MAX_BODY_BYTES: Final = 256 * 1024
RETRY_AFTER_SECONDS: Final = "60"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ReadinessCheck = Callable[[], Awaitable[str | None]]
"""A readiness check: None when fine, else what is wrong (no secrets)."""


class BodyTooLargeError(Exception):
    """The request body exceeds the limit."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Limits and allowlists of the webhook endpoint."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    allowlists: Mapping[Processor, tuple[IpNetwork, ...]] = field(default_factory=dict)
    """Source networks per processor; a processor without an entry accepts any address."""
    static_pause: str | None = None
    """A pause set in the configuration (works while the database is unreachable)."""

    def allows(self, processor: Processor, address: str | None) -> bool:
        """Whether ``address`` may deliver ``processor``'s webhooks."""
        networks = self.allowlists.get(processor)
        if not networks:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)


def _error(status: int, error: str, detail: str, **extra: str) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None  # noqa: PLR2004 (HTTP status)
    return JSONResponse({"error": error, "detail": detail, **extra}, status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (before reading it) a declared length over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class WebhookEndpoint:
    """The webhook routes, over a ``WebhookIngress``."""

    def __init__(self, ingress: WebhookIngress, config: ApiConfig, clock: Clock) -> None:
        """Serve ``ingress`` with ``config``'s limits."""
        self._ingress = ingress
        self._config = config
        self._clock = clock

    async def tenant_webhook(self, request: Request) -> JSONResponse:
        """``POST /webhooks/{processor}/{tenant_id}``."""
        try:
            processor = Processor(request.path_params["processor"])
        except ValueError:
            return _error(404, "unknown_processor", "no such processor")
        tenant_id = str(request.path_params["tenant_id"])
        return await self._handle(
            request, processor, lambda hook: self._ingress.receive(processor, tenant_id, hook)
        )

    async def connect_webhook(self, request: Request) -> JSONResponse:
        """``POST /webhooks/stripe/connect``."""
        return await self._handle(request, Processor.STRIPE, self._ingress.receive_connect)

    async def _handle(  # noqa: PLR0911 (one answer per HTTP status)
        self,
        request: Request,
        processor: Processor,
        receive: Callable[[WebhookRequest], Awaitable[Receipt]],
    ) -> JSONResponse:
        if self._config.static_pause is not None:
            return _error(503, "ingestion_paused", self._config.static_pause)
        address = request.client.host if request.client is not None else None
        if not self._config.allows(processor, address):
            _log.warning("webhook_source_refused", processor=processor, address=address)
            return _error(403, "source_not_allowed", "this address may not deliver webhooks")
        if not _is_json(request.headers.get("content-type")):
            return _error(415, "unsupported_media_type", "webhooks are application/json")
        try:
            body = await _read_body(request, self._config.max_body_bytes)
        except BodyTooLargeError:
            limit = str(self._config.max_body_bytes)
            return _error(413, "too_large", f"the body exceeds {limit} bytes", limit=limit)
        headers = {name.lower(): value for name, value in request.headers.items()}
        hook = WebhookRequest(headers, body, self._clock(), address)
        try:
            receipt = await receive(hook)
        except WebhookRejected as exc:
            return _error(400, "rejected", str(exc), reason=exc.reason)
        except (UnknownTenantError, NotAttachedError):
            return _error(404, "unknown_tenant", "no such tenant, or the processor is not attached")
        except IngestionPausedError as exc:
            return _error(503, "ingestion_paused", exc.reason)
        except IngressUnavailableError as exc:
            return _error(503, "unavailable", str(exc))
        answer = {"status": receipt.outcome.value}
        if receipt.event_id is not None:
            answer["event_id"] = receipt.event_id
        return JSONResponse(answer)


class Probes:
    """``/healthz`` and ``/readyz``."""

    def __init__(self, checks: Mapping[str, ReadinessCheck], timeout_s: float = 3.0) -> None:
        """Readiness runs every check (each within ``timeout_s``)."""
        self._checks = checks
        self._timeout_s = timeout_s

    async def healthz(self, _request: Request) -> JSONResponse:
        """The process answers: nothing else is checked (a liveness probe)."""
        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> JSONResponse:
        """Every dependency is fine: 200, else 503 naming what is not."""
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        failures = {name: problem for name, problem in zip(names, results, strict=True) if problem}
        if failures:
            _log.warning("not_ready", failures=failures)
            return JSONResponse({"status": "unready", "failures": failures}, 503)
        return JSONResponse({"status": "ready", "checks": names})

    async def _run(self, check: ReadinessCheck) -> str | None:
        try:
            return await asyncio.wait_for(check(), self._timeout_s)
        except TimeoutError:
            return f"no answer within {self._timeout_s:g}s"
        except Exception as exc:  # noqa: BLE001 (a probe reports any failure as unready)
            return f"{type(exc).__name__}"


def create_app(endpoint: WebhookEndpoint, probes: Probes) -> Starlette:
    """The payment-api application."""
    return Starlette(
        routes=[
            Route("/webhooks/stripe/connect", endpoint.connect_webhook, methods=["POST"]),
            Route("/webhooks/{processor}/{tenant_id}", endpoint.tenant_webhook, methods=["POST"]),
            Route("/healthz", probes.healthz, methods=["GET"]),
            Route("/readyz", probes.readyz, methods=["GET"]),
        ]
    )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the process's own stop event governs."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serving(
    app: Starlette, host: str = "127.0.0.1", port: int = 0, *, forwarded_allow_ips: str = ""
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn for the block; yields its base URL (port 0: a free one)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,
        timeout_graceful_shutdown=10,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("payment-api stopped while starting")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        await task
