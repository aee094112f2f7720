"""The OpenAPI 3.1 document of ``payment-api``, and the check that keeps it compatible.

``python -m gateway.openapi --write`` (``make contracts``) writes
``schemas/contracts/openapi.json`` from the models of ``gateway.api_models`` and the route
table below; it refuses to overwrite a committed document that the new one breaks, unless
given ``--allow-breaking``. ``--check`` writes nothing and exits 1 if the committed file
is missing or stale, printing how it differs and what of that breaks clients.

Breaking, from the committed document to the new one: a path or an operation removed; a
response status, or a media type of a request or response, removed; a request parameter or
body newly required; and whatever ``schemas.compat`` calls breaking in a response,
parameter or request body schema (a property removed or newly required, a type no longer
accepted, enum values removed, a limit or pattern tightened). New paths, operations,
statuses and optional fields are additive.
"""

import copy
import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.api import DEFAULT_MAX_BODY_BYTES, RETRY_AFTER_SECONDS
from gateway.api_models import Health, Ready, Unready, WebhookAccepted, WebhookError
from schemas import compat
from schemas.envelope import JSON
from schemas.export import contracts_cli
from schemas.export import render as render_json
from schemas.ids import TENANT_ID_PATTERN
from schemas.processors import Processor

Document = Mapping[str, Any]

API_VERSION: Final = "1.0.0"
"""The version of the document; bump the minor for additions, the major never."""
OPENAPI_VERSION: Final = "3.1.0"
OPENAPI_FILE: Final = "openapi.json"
_SCHEMAS_REF: Final = "#/components/schemas/"
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_WRAPPED: Final = "$.body"
_TAGS: Final = (
    {"name": "webhooks", "description": "Vendors' event notifications."},
    {"name": "probes", "description": "Liveness and readiness, for the orchestrator."},
)
_DESCRIPTION: Final = (
    "The HTTP side of the payment gateway: vendors' webhooks and the probes. A webhook is "
    "accepted as application/json, up to a body limit "
    f"({DEFAULT_MAX_BODY_BYTES} bytes unless configured otherwise), from the vendor's "
    "addresses where the deployment lists them. It is verified through the tenant's own "
    "credentials and stored once; a 503 asks the vendor to deliver again later. Every "
    "answer is a small JSON object; a refusal names its reason and never repeats the body."
)


@dataclass(frozen=True, slots=True)
class Answer:
    """One response of an operation: what it means, and the model of its body."""

    description: str
    model: type[BaseModel]
    retry_after: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    """One route of ``gateway.api.create_app``, as the document describes it."""

    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    description: str
    answers: Mapping[int, Answer]
    parameters: tuple[Mapping[str, Any], ...] = ()
    request_body: Mapping[str, Any] | None = None


def _parameter(name: str, where: str, description: str, **schema: object) -> dict[str, Any]:
    """A parameter; path parameters are required, headers (each vendor's own) are not."""
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string", **schema},
    }


_STRIPE_SIGNATURE: Final = _parameter(
    "Stripe-Signature", "header", "Stripe: t=<unix time>,v1=<hex HMAC-SHA256>[,v1=...]."
)
_PAYPAL_HEADERS: Final = tuple(
    _parameter(f"PAYPAL-{name}", "header", f"PayPal: {what}.")
    for name, what in (
        ("TRANSMISSION-ID", "the transmission's id, part of the signed message"),
        ("TRANSMISSION-TIME", "when PayPal sent it (ISO 8601), part of the signed message"),
        ("TRANSMISSION-SIG", "base64 RSA SHA-256 signature of the transmission"),
        ("CERT-URL", "the PayPal certificate whose key made the signature"),
        ("AUTH-ALGO", "the signature algorithm, SHA256withRSA"),
    )
)
_TENANT_PARAMETERS: Final = (
    _parameter(
        "processor",
        "path",
        "The vendor sending the webhook; any other is 404 unknown_processor.",
        enum=[p.value for p in Processor],
    ),
    _parameter(
        "tenant_id",
        "path",
        "The tenant the webhook URL was registered for.",
        pattern=f"^{TENANT_ID_PATTERN.pattern}$",
    ),
)
_EVENT: Final = {
    "required": True,
    "description": "The vendor's event exactly as sent (signatures cover the raw bytes). "
    "HesabPay signs inside the body and is verified by asking HesabPay.",
    "content": {JSON: {"schema": {"type": "object", "description": "Opaque to this API."}}},
}
_RETRY: Final = "deliver it again later; nothing was kept"
_WEBHOOK_ANSWERS: Final = {
    200: Answer("Accepted (stored, or known already): do not send it again.", WebhookAccepted),
    400: Answer("rejected, with a reason: not verified or not readable.", WebhookError),
    403: Answer("source_not_allowed: not from the processor's allowed addresses.", WebhookError),
    404: Answer("unknown_tenant, or not attached; unknown_processor (tenant route).", WebhookError),
    413: Answer("too_large, with the limit: the body was not read.", WebhookError),
    415: Answer(
        "unsupported_media_type: only application/json or application/*+json.", WebhookError
    ),
    503: Answer(f"ingestion_paused or unavailable: {_RETRY}.", WebhookError, retry_after=True),
}
OPERATIONS: Final = (
    Operation(
        "post",
        "/webhooks/stripe/connect",
        "receiveStripeConnectWebhook",
        "webhooks",
        "A Stripe Connect platform event",
        "Routed to the tenant that attached the connected account the event's `account` "
        "names, then verified with that tenant's signing secret; answered `unrouted` (and "
        "not kept) when no tenant has attached the account.",
        _WEBHOOK_ANSWERS,
        (_STRIPE_SIGNATURE,),
        _EVENT,
    ),
    Operation(
        "post",
        "/webhooks/{processor}/{tenant_id}",
        "receiveTenantWebhook",
        "webhooks",
        "One tenant's webhook from one processor",
        "Verified with the tenant's own credentials for the processor, then stored once "
        "per vendor event id: a redelivery is answered `duplicate`, an event the gateway "
        "does not act on `ignored`.",
        _WEBHOOK_ANSWERS,
        (*_TENANT_PARAMETERS, _STRIPE_SIGNATURE, *_PAYPAL_HEADERS),
        _EVENT,
    ),
    Operation(
        "get",
        "/healthz",
        "healthz",
        "probes",
        "Liveness",
        "The process answers; nothing else is checked.",
        {200: Answer("Alive.", Health)},
    ),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "probes",
        "Readiness",
        "Runs every check (the database with its central migrations, Pub/Sub), each "
        "within a few seconds, and names those that failed.",
        {200: Answer("Every check passed.", Ready), 503: Answer("Not ready.", Unready)},
    ),
)
"""Every route ``gateway.api.create_app`` serves, in its order."""


def _models() -> tuple[type[BaseModel], ...]:
    """Every response model of the route table, in order of first use."""
    models = (a.model for op in OPERATIONS for a in op.answers.values())
    return tuple(dict.fromkeys(models))


def _response(answer: Answer, ref: Mapping[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": answer.description,
        "content": {JSON: {"schema": dict(ref)}},
    }
    if answer.retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": f"Seconds to wait before delivering again ({RETRY_AFTER_SECONDS}).",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return response


def _operation(
    operation: Operation, refs: Mapping[type[BaseModel], Mapping[str, Any]]
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
        "description": operation.description,
        "responses": {
            str(status): _response(answer, refs[answer.model])
            for status, answer in sorted(operation.answers.items())
        },
    }
    if operation.parameters:
        document["parameters"] = copy.deepcopy(list(operation.parameters))
    if operation.request_body is not None:
        document["requestBody"] = copy.deepcopy(dict(operation.request_body))
    return document


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1.0 description of every route ``gateway.api.create_app`` serves."""
    models = _models()
    by_mode, definitions = models_json_schema(
        [(model, "serialization") for model in models], ref_template=_SCHEMAS_REF + "{model}"
    )
    refs = {model: by_mode[model, "serialization"] for model in models}
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation, refs)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "payment-api", "version": API_VERSION, "description": _DESCRIPTION},
        "tags": list(_TAGS),
        "paths": paths,
        "components": {"schemas": definitions["$defs"]},
    }


def render() -> str:
    """The document as committed: sorted keys, 2-space indent, final newline."""
    return render_json(openapi_document())


@dataclass(frozen=True, slots=True)
class _Documents:
    """The committed and the new document, so that each schema's ``$ref`` resolves in its own."""

    old: Document
    new: Document

    def schema_changes(self, label: str, old: Document, new: Document) -> list[str]:
        """``schemas.compat`` on two schemas taken from the documents, each line labelled.

        Each schema is wrapped as the one property of a schema that also holds its
        document's ``components``; the wrapping is taken off the paths in the answer.
        """
        lines = compat.breaking_changes(_wrap(self.old, old), _wrap(self.new, new))
        return [f"{label}: ${line.removeprefix(_WRAPPED)}" for line in lines]

    def content_changes(self, label: str, old: Document, new: Document) -> list[str]:
        """Media types of a request body or a response that are gone or changed incompatibly."""
        new_content: Document = new.get("content", {})
        lines: list[str] = []
        for media, old_media in old.get("content", {}).items():
            if media not in new_content:
                lines.append(f"{label}: {media}: media type removed")
                continue
            old_schema = old_media.get("schema", {})
            new_schema = new_content[media].get("schema", {})
            lines.extend(self.schema_changes(f"{label}: {media}", old_schema, new_schema))
        return lines

    def operation_changes(self, old: Document, new: Document) -> list[str]:
        """Parameters or body newly required or narrowed; responses gone or changed."""
        lines: list[str] = []
        old_parameters = _parameters(old)
        for key, parameter in _parameters(new).items():
            before = old_parameters.get(key, {})
            label = f"{parameter['in']} parameter {parameter['name']}"
            if parameter.get("required") and not before.get("required"):
                lines.append(f"{label}: newly required")
            if before:
                old_schema, new_schema = before.get("schema", {}), parameter.get("schema", {})
                lines.extend(self.schema_changes(label, old_schema, new_schema))
        old_body, new_body = old.get("requestBody", {}), new.get("requestBody", {})
        if new_body.get("required") and not old_body.get("required"):
            lines.append("request body: newly required")
        lines.extend(self.content_changes("request body", old_body, new_body))
        new_responses: Document = new.get("responses", {})
        for status, old_response in old.get("responses", {}).items():
            label = f"response {status}"
            if status in new_responses:
                lines.extend(self.content_changes(label, old_response, new_responses[status]))
            else:
                lines.append(f"{label}: removed")
        return lines


def _wrap(document: Document, schema: Document) -> dict[str, Any]:
    return {
        "properties": {_WRAPPED.removeprefix("$."): schema},
        "components": document.get("components", {}),
    }


def _parameters(operation: Document) -> dict[tuple[str, str], Document]:
    """An operation's parameters by location and name (a header's name in any case)."""
    found: dict[tuple[str, str], Document] = {}
    for parameter in operation.get("parameters", ()):
        name = str(parameter["name"])
        found[parameter["in"], name.lower() if parameter["in"] == "header" else name] = parameter
    return found


def breaking_changes(old: Document, new: Document) -> list[str]:
    """Every way the OpenAPI document ``new`` breaks clients of ``old``, one line each."""
    documents = _Documents(old, new)
    new_paths: Document = new.get("paths", {})
    lines: list[str] = []
    for path, old_item in old.get("paths", {}).items():
        if path not in new_paths:
            lines.append(f"{path}: path removed")
            continue
        for method in (m for m in _METHODS if m in old_item):
            where = f"{method.upper()} {path}"
            if method not in new_paths[path]:
                lines.append(f"{where}: operation removed")
                continue
            changes = documents.operation_changes(old_item[method], new_paths[path][method])
            lines.extend(f"{where}: {line}" for line in changes)
    return lines


def _committed(path: Path) -> tuple[str, Document | None] | None:
    """The committed text and its document (None if it is not JSON); None if there is none."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except ValueError:
        return text, None
    return text, document if isinstance(document, Mapping) else None


def differences(folder: Path) -> list[str]:
    """``missing: ...``, or ``stale: ...`` then a diff and ``breaking: ...`` lines; or none."""
    committed = _committed(folder / OPENAPI_FILE)
    if committed is None:
        return [f"missing: {OPENAPI_FILE}"]
    text, document = committed
    generated = render()
    if text == generated:
        return []
    lines = [f"stale: {OPENAPI_FILE}"]
    lines.extend(
        difflib.unified_diff(
            text.splitlines(),
            generated.splitlines(),
            fromfile=f"committed {OPENAPI_FILE}",
            tofile=f"generated {OPENAPI_FILE}",
            lineterm="",
        )
    )
    if document is not None:
        changes = breaking_changes(document, openapi_document())
        lines.extend(f"breaking: {line}" for line in changes)
    return lines


def write(folder: Path, *, allow_breaking: bool = False) -> list[str]:
    """Write the document if it differs; return the breaking changes instead, if any.

    A committed file that is not a JSON object is replaced: there is nothing to compare.
    """
    path = folder / OPENAPI_FILE
    committed = _committed(path)
    if committed is not None and committed[1] is not None and not allow_breaking:
        breaking = breaking_changes(committed[1], openapi_document())
        if breaking:
            return breaking
    text = render()
    if committed is None or committed[0] != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the document (``--write``, the default), or ``--check`` it."""
    return contracts_cli(
        argv,
        prog="python -m gateway.openapi",
        description=__doc__,
        differences=differences,
        write=lambda folder, allow: write(folder, allow_breaking=allow),
        breaking_hint="these break payment-api's clients: keep the old shape, or pass"
        " --allow-breaking",
    )


if __name__ == "__main__":
    raise SystemExit(main())
