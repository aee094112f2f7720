"""payment-api's OpenAPI document: committed fresh, guarded against breaking changes, true."""

import copy
import json
from datetime import UTC, datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.routing import Route

from gateway import api_models
from gateway.api import ApiConfig, Probes, WebhookEndpoint, create_app
from gateway.api_models import Health, Ready, Unready, WebhookAccepted, WebhookError
from gateway.openapi import (
    OPENAPI_FILE,
    breaking_changes,
    differences,
    main,
    openapi_document,
    render,
)
from handlers.ports import NotAttachedError
from handlers.webhooks import (
    IngestionPausedError,
    IngressUnavailableError,
    Receipt,
    Stored,
    WebhookIngress,
)
from processors.errors import WebhookRejected
from processors.port import WebhookRequest
from schemas.export import CONTRACTS_DIR
from schemas.processors import Processor
from tenancy.errors import UnknownTenantError

TENANT_PATH = "/webhooks/{processor}/{tenant_id}"
CONNECT_PATH = "/webhooks/stripe/connect"
JSON_BODY = {"content-type": "application/json"}


def test_committed_document_is_what_the_code_generates() -> None:
    """schemas/contracts/openapi.json equals `python -m gateway.openapi --write`'s output."""
    assert differences(CONTRACTS_DIR) == []
    assert (CONTRACTS_DIR / OPENAPI_FILE).read_text(encoding="utf-8") == render()


def test_document_names_every_route_the_app_serves() -> None:
    """Each (path, method) of create_app is documented, and nothing else is."""
    app = create_app(endpoint(ScriptedIngress(Receipt(Stored.STORED))), Probes({}))
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {
        (path, method) for path, item in openapi_document()["paths"].items() for method in item
    }
    assert served == documented


def test_every_reference_resolves_to_a_documented_model() -> None:
    """Each response $ref names a components schema; every model is among them."""
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for model in (WebhookAccepted, WebhookError, Health, Ready, Unready):
        assert schemas[model.__name__]["additionalProperties"] is False
    for item in doc["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.removeprefix("#/components/schemas/") in schemas


DELETE = object()
Edit = tuple[tuple[str | int, ...], object]
TENANT_OP = ("paths", TENANT_PATH, "post")
SCHEMAS = ("components", "schemas")
HEADER = {"in": "header", "schema": {"type": "string"}}
REMOVE_PATH: tuple[Edit, ...] = ((("paths", "/healthz"), DELETE),)
ADD_PATH: tuple[Edit, ...] = ((("paths", "/webhooks/adyen/{tenant_id}"), {"post": {}}),)
ADD_STATUS: tuple[Edit, ...] = (
    (
        ("paths", "/healthz", "get", "responses", "503"),
        {"description": "Down.", "content": {"application/json": {"schema": {"type": "object"}}}},
    ),
)
WIDEN_STORED: tuple[Edit, ...] = (((*SCHEMAS, "Stored", "enum", "-"), "deferred"),)
REWORD: tuple[Edit, ...] = (
    ((*TENANT_OP, "summary"), "A webhook"),
    ((*SCHEMAS, "Health", "description"), "Alive."),
)


def edited(*edits: Edit) -> dict[str, Any]:
    """The current document, copied, with each path set to its value, appended to or deleted.

    A path ending in ``-`` appends to a list; the value ``DELETE`` removes the key.
    """
    doc = copy.deepcopy(openapi_document())
    for path, value in edits:
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        if value is DELETE:
            del node[path[-1]]
        elif path[-1] == "-":
            node.append(value)
        else:
            node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (REMOVE_PATH, "/healthz: path removed"),
        (
            ((("paths", "/healthz", "get"), DELETE), (("paths", "/healthz", "post"), {})),
            "GET /healthz: operation removed",
        ),
        (
            ((("paths", "/readyz", "get", "responses", "503"), DELETE),),
            "GET /readyz: response 503: removed",
        ),
        (
            (((*SCHEMAS, "WebhookError", "properties", "reason", "enum", 1), DELETE),),
            (
                f"POST {TENANT_PATH}: response 400: application/json:"
                " $.reason: enum values removed: ['stale']"
            ),
        ),
        (
            (((*TENANT_OP, "parameters", 0, "schema", "enum"), ["stripe", "paypal"]),),
            f"POST {TENANT_PATH}: path parameter processor: $: enum values removed: ['hesabpay']",
        ),
        (
            (((*TENANT_OP, "parameters", "-"), {"name": "X-Key", "required": True, **HEADER}),),
            f"POST {TENANT_PATH}: header parameter X-Key: newly required",
        ),
        (
            (((*TENANT_OP, "parameters", 2, "required"), True),),
            f"POST {TENANT_PATH}: header parameter Stripe-Signature: newly required",
        ),
        (
            (((*SCHEMAS, "Ready", "properties", "checks"), DELETE),),
            "GET /readyz: response 200: application/json: $.checks: property removed",
        ),
        (
            ((("paths", "/healthz", "get", "responses", "200", "content"), {"text/plain": {}}),),
            "GET /healthz: response 200: application/json: media type removed",
        ),
    ],
    ids=[
        "path",
        "method",
        "status",
        "reason enum",
        "processor enum",
        "required header",
        "header made required",
        "property",
        "media type",
    ],
)
def test_breaking_changes_are_reported(edits: tuple[Edit, ...], expected: str) -> None:
    """Removals, a narrowed enum and a newly required parameter are each reported."""
    assert expected in breaking_changes(openapi_document(), edited(*edits))


@pytest.mark.parametrize(
    "edits",
    [
        (((*SCHEMAS, "WebhookAccepted", "properties", "inbox_id"), {"type": "integer"}),),
        ADD_PATH,
        ADD_STATUS,
        (((*TENANT_OP, "parameters", "-"), {"name": "X-Trace", "required": False, **HEADER}),),
        WIDEN_STORED,
        REWORD,
    ],
    ids=["optional field", "path", "status", "optional header", "enum value", "words"],
)
def test_additive_changes_are_not_breaking(edits: tuple[Edit, ...]) -> None:
    """New optional fields, paths, statuses, optional headers, enum values or words break nobody."""
    assert breaking_changes(openapi_document(), edited(*edits)) == []


def test_a_narrowed_enum_is_breaking_even_when_only_the_committed_file_had_the_value() -> None:
    """The comparison runs from the committed document to the generated one, not back."""
    committed = edited(*WIDEN_STORED)
    assert breaking_changes(committed, openapi_document()) == [
        f"{where}: response 200: application/json: $.status: enum values removed: ['deferred']"
        for where in (f"POST {CONNECT_PATH}", f"POST {TENANT_PATH}")
    ]


def commit(folder: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` where --out ``folder`` looks for the committed file."""
    path = folder / OPENAPI_FILE
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def test_write_then_check_passes_and_a_stale_file_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write creates the file; --check then passes, and fails with a diff when it drifts."""
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().out == f"missing: {OPENAPI_FILE}\n"
    assert main(["--write", "--out", str(tmp_path)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 0
    commit(tmp_path, edited(*REWORD))
    capsys.readouterr()
    assert main(["--check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"stale: {OPENAPI_FILE}"
    assert any(line.startswith("+") and "One tenant's webhook" in line for line in out), out
    assert not [line for line in out if line.startswith("breaking: ")]


def test_check_reports_a_breaking_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A committed file with a status the code no longer answers fails --check as breaking."""
    commit(tmp_path, edited(*ADD_STATUS))
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "breaking: GET /healthz: response 503: removed" in capsys.readouterr().out


def test_write_refuses_a_breaking_change_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write leaves a committed document it would break alone, unless --allow-breaking."""
    path = commit(tmp_path, edited(*ADD_PATH))
    before = path.read_text(encoding="utf-8")
    assert main(["--write", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().out == "/webhooks/adyen/{tenant_id}: path removed\n"
    assert path.read_text(encoding="utf-8") == before
    assert main(["--write", "--allow-breaking", "--out", str(tmp_path)]) == 0
    assert differences(tmp_path) == []


def test_write_accepts_an_additive_change(tmp_path: Path) -> None:
    """A committed document the code only adds to is overwritten without --allow-breaking."""
    commit(tmp_path, edited(*REMOVE_PATH))
    assert main(["--write", "--out", str(tmp_path)]) == 0
    assert differences(tmp_path) == []


RESPONSES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (WebhookAccepted, {"status": "stored", "event_id": "evt_1"}),
    (WebhookAccepted, {"status": "ignored", "event_id": "WH-2"}),
    (WebhookAccepted, {"status": "duplicate", "event_id": "evt_1"}),
    (WebhookAccepted, {"status": "unrouted"}),
    *[
        (WebhookError, {"error": "rejected", "detail": "no", "reason": reason})
        for reason in ("bad_signature", "stale", "replayed", "malformed", "mismatch")
    ],
    (
        WebhookError,
        {"error": "source_not_allowed", "detail": "this address may not deliver webhooks"},
    ),
    (WebhookError, {"error": "unknown_processor", "detail": "no such processor"}),
    (
        WebhookError,
        {"error": "unknown_tenant", "detail": "no such tenant, or the processor is not attached"},
    ),
    (
        WebhookError,
        {"error": "too_large", "detail": "the body exceeds 262144 bytes", "limit": "262144"},
    ),
    (WebhookError, {"error": "unsupported_media_type", "detail": "webhooks are application/json"}),
    (WebhookError, {"error": "ingestion_paused", "detail": "vendor incident"}),
    (WebhookError, {"error": "unavailable", "detail": "the webhook inbox could not be written"}),
    (Health, {"status": "ok"}),
    (Ready, {"status": "ready", "checks": ["database", "pubsub"]}),
    (Ready, {"status": "ready", "checks": []}),
    (Unready, {"status": "unready", "failures": {"pubsub": "Pub/Sub did not answer"}}),
]


@pytest.mark.parametrize(("model", "body"), RESPONSES)
def test_each_answer_of_the_api_fits_its_model(
    model: type[BaseModel], body: dict[str, Any]
) -> None:
    """Every body shape gateway.api writes validates, and dumps back to the same JSON."""
    parsed = model.model_validate(body)
    assert parsed.model_dump(mode="json", exclude_none=True) == body


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (WebhookAccepted, {"status": "queued", "event_id": "evt_1"}),
        (WebhookAccepted, {"status": "stored", "tenant_id": "tnt_a"}),
        (WebhookError, {"error": "rejected", "detail": "no"}),
        (WebhookError, {"error": "rejected", "detail": "no", "reason": "expired"}),
        (WebhookError, {"error": "unknown_tenant", "detail": "no", "reason": "stale"}),
        (WebhookError, {"error": "too_large", "detail": "big"}),
        (WebhookError, {"error": "too_large", "detail": "big", "limit": "256 KiB"}),
        (WebhookError, {"error": "unavailable", "detail": "down", "limit": "1"}),
        (Health, {"status": "ready"}),
        (Unready, {"status": "unready", "failures": {"db": None}}),
    ],
)
def test_bodies_the_api_never_writes_are_refused(
    model: type[BaseModel], body: dict[str, Any]
) -> None:
    """Unknown codes, extra fields, and a reason or limit on the wrong error do not validate."""
    with pytest.raises(ValidationError):
        model.model_validate(body)


class ScriptedIngress(WebhookIngress):
    """An ingress that answers every webhook with one receipt, or raises one error."""

    def __init__(self, outcome: Receipt | Exception) -> None:
        """Answer ``outcome``; no database or adapters behind it."""
        self._outcome = outcome

    async def receive(
        self, processor: Processor, tenant_id: str, webhook: WebhookRequest
    ) -> Receipt:
        """The scripted outcome."""
        del processor, tenant_id, webhook
        return self._answer()

    async def receive_connect(self, webhook: WebhookRequest) -> Receipt:
        """The scripted outcome."""
        del webhook
        return self._answer()

    def _answer(self) -> Receipt:
        if isinstance(self._outcome, Exception):
            raise self._outcome
        return self._outcome


def endpoint(ingress: WebhookIngress, config: ApiConfig | None = None) -> WebhookEndpoint:
    """The real endpoint over ``ingress``, at a fixed time."""
    return WebhookEndpoint(ingress, config or ApiConfig(), lambda: datetime(2025, 1, 1, tzinfo=UTC))


async def failing_pubsub() -> str | None:
    """A readiness check that reports a problem."""
    return "Pub/Sub did not answer"


async def fine() -> str | None:
    """A readiness check that passes."""
    return None


async def post(
    ingress: WebhookIngress,
    path: str = "/webhooks/stripe/tnt_a",
    config: ApiConfig | None = None,
    headers: dict[str, str] = JSON_BODY,
) -> httpx.Response:
    """POST a small JSON event to the real app over ``ingress``, in process."""
    app = create_app(endpoint(ingress, config), Probes({}))
    async with client(app) as http:
        return await http.post(path, content=b'{"id": "evt_1"}', headers=headers)


def client(app: Starlette) -> httpx.AsyncClient:
    """An httpx client calling ``app`` in process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def check_documented(path: str, method: str, response: httpx.Response) -> None:
    """The response's status is documented for the route, and its body fits that model."""
    answer = openapi_document()["paths"][path][method]["responses"][str(response.status_code)]
    name = answer["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    model: type[BaseModel] = getattr(api_models, name)
    model.model_validate(response.json())
    for header in answer.get("headers", {}):
        assert response.headers[header].isdigit()


@pytest.mark.parametrize(
    ("outcome", "status", "body"),
    [
        (
            Receipt(Stored.STORED, "tnt_a", "evt_1", 7),
            200,
            {"status": "stored", "event_id": "evt_1"},
        ),
        (
            Receipt(Stored.DUPLICATE, "tnt_a", "evt_1"),
            200,
            {"status": "duplicate", "event_id": "evt_1"},
        ),
        (Receipt(Stored.UNROUTED), 200, {"status": "unrouted"}),
        (
            WebhookRejected("replayed", "this webhook was already received"),
            400,
            {
                "error": "rejected",
                "detail": "this webhook was already received",
                "reason": "replayed",
            },
        ),
        (
            UnknownTenantError("unknown tenant tnt_a"),
            404,
            {
                "error": "unknown_tenant",
                "detail": "no such tenant, or the processor is not attached",
            },
        ),
        (
            NotAttachedError("stripe"),
            404,
            {
                "error": "unknown_tenant",
                "detail": "no such tenant, or the processor is not attached",
            },
        ),
        (
            IngestionPausedError("vendor incident"),
            503,
            {"error": "ingestion_paused", "detail": "vendor incident"},
        ),
        (
            IngressUnavailableError("the webhook inbox could not be written"),
            503,
            {"error": "unavailable", "detail": "the webhook inbox could not be written"},
        ),
    ],
)
@pytest.mark.parametrize(
    ("url", "path"), [("/webhooks/paypal/tnt_a", TENANT_PATH), (CONNECT_PATH, CONNECT_PATH)]
)
async def test_the_app_answers_as_documented(
    outcome: Receipt | Exception,
    status: int,
    body: dict[str, Any],
    url: str,
    path: str,
) -> None:
    """What the ingress returns or raises reaches the vendor as the documented body."""
    response = await post(ScriptedIngress(outcome), url)
    assert (response.status_code, response.json()) == (status, body)
    check_documented(path, "post", response)


async def test_refusals_before_the_ingress_answer_as_documented() -> None:
    """Pause, allowlist, media type, body size and processor refusals match the document."""
    never = ScriptedIngress(AssertionError("the ingress must not be reached"))
    paused = ApiConfig(static_pause="maintenance")
    allowlisted = ApiConfig(allowlists={Processor.STRIPE: (ip_network("10.0.0.0/8"),)})
    cases = [
        (
            await post(never, config=paused),
            503,
            {"error": "ingestion_paused", "detail": "maintenance"},
        ),
        (
            await post(never, config=allowlisted),
            403,
            {"error": "source_not_allowed", "detail": "this address may not deliver webhooks"},
        ),
        (
            await post(never, headers={"content-type": "text/plain"}),
            415,
            {"error": "unsupported_media_type", "detail": "webhooks are application/json"},
        ),
        (
            await post(never, config=ApiConfig(max_body_bytes=8)),
            413,
            {"error": "too_large", "detail": "the body exceeds 8 bytes", "limit": "8"},
        ),
        (
            await post(never, path="/webhooks/adyen/tnt_a"),
            404,
            {"error": "unknown_processor", "detail": "no such processor"},
        ),
    ]
    for response, status, body in cases:
        assert (response.status_code, response.json()) == (status, body)
        check_documented(TENANT_PATH, "post", response)


async def test_probes_answer_as_documented() -> None:
    """/healthz, and /readyz both ready and unready, give the documented bodies."""
    ingress = ScriptedIngress(Receipt(Stored.STORED))
    ready = create_app(endpoint(ingress), Probes({"database": fine, "pubsub": fine}))
    unready = create_app(endpoint(ingress), Probes({"database": fine, "pubsub": failing_pubsub}))
    async with client(ready) as up, client(unready) as down:
        answers = [
            ("/healthz", await up.get("/healthz"), 200, {"status": "ok"}),
            (
                "/readyz",
                await up.get("/readyz"),
                200,
                {"status": "ready", "checks": ["database", "pubsub"]},
            ),
            (
                "/readyz",
                await down.get("/readyz"),
                503,
                {"status": "unready", "failures": {"pubsub": "Pub/Sub did not answer"}},
            ),
        ]
    for path, response, status, body in answers:
        assert (response.status_code, response.json()) == (status, body)
        check_documented(path, "get", response)
