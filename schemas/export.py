"""Publish the catalog as contracts: one JSON Schema per message type and an AsyncAPI 3.0 file.

``python -m schemas.export`` (``make contracts``) writes ``schemas/contracts/json/<type>.json``
and ``schemas/contracts/asyncapi.json``; it refuses to overwrite a committed schema with one
that breaks its readers (see ``schemas.compat``) unless given ``--allow-breaking``.
``python -m schemas.export --check`` writes nothing and exits 1 if any file is stale, missing
or extra. This is the only module of ``schemas`` that touches files.
"""

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from schemas.catalog import SPECS, MessageSpec
from schemas.compat import check_against_committed
from schemas.envelope import JSON, SOURCE, SPEC_VERSION
from schemas.ids import TENANT_ID_PATTERN
from schemas.topology import (
    PAYMENT_COMMANDS,
    PAYMENT_COMMANDS_DEAD_LETTER,
    PAYMENT_EVENTS,
    TOPOLOGY,
    WORKER_COMMANDS_SUBSCRIPTION,
    TopicSpec,
)

CONTRACTS_VERSION: Final = "1.0.0"
"""The version of the AsyncAPI document; bump the minor for additions, the major never."""
ASYNCAPI_VERSION: Final = "3.0.0"
PUBSUB_BINDING_VERSION: Final = "0.2.0"
CONTRACTS_DIR: Final = Path(__file__).parent / "contracts"
JSON_SUBDIR: Final = "json"
ASYNCAPI_FILE: Final = "asyncapi.json"

_TRACEPARENT: Final = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_DEFS_REF: Final = "#/$defs/"
_SCHEMAS_REF: Final = "#/components/schemas/"


def json_schemas() -> dict[str, dict[str, Any]]:
    """``<ce type>.json`` -> the JSON Schema of that message's body, for every catalog type."""
    return {f"{spec.type}.json": spec.json_schema() for spec in SPECS}


def _headers(spec: MessageSpec) -> dict[str, Any]:
    """The Pub/Sub attributes of a message: CloudEvents binary mode plus our extensions."""
    is_event = spec.kind == "event"
    source: dict[str, Any] = {"type": "string", "minLength": 1, "format": "uri-reference"}
    if is_event:
        source["const"] = SOURCE
    required = ["ce-specversion", "ce-id", "ce-source", "ce-type"]
    required += ["ce-time"] if is_event else ["ce-tenantid"]
    return {
        "type": "object",
        "required": required,
        "properties": {
            "ce-specversion": {"type": "string", "const": SPEC_VERSION},
            "ce-id": {"type": "string", "minLength": 1, "maxLength": 255},
            "ce-source": source,
            "ce-type": {"type": "string", "const": spec.type},
            "ce-time": {"type": "string", "format": "date-time"},
            "ce-subject": {"type": "string", "description": "The payment id."},
            "content-type": {"type": "string", "const": JSON},
            "ce-tenantid": {
                "type": "string",
                "pattern": f"^{TENANT_ID_PATTERN.pattern}$",
                "description": "The tenant the payment belongs to.",
            },
            "ce-traceparent": {
                "type": "string",
                "pattern": _TRACEPARENT,
                "description": "W3C trace context of the sender.",
            },
        },
        "additionalProperties": {"type": "string"},
    }


def _rewrite_refs(node: object) -> Any:  # noqa: ANN401 - JSON of any shape
    """``node`` with every ``#/$defs/X`` reference pointed at ``#/components/schemas/X``."""
    if isinstance(node, Mapping):
        return {
            key: _SCHEMAS_REF + value.removeprefix(_DEFS_REF)
            if key == "$ref" and isinstance(value, str) and value.startswith(_DEFS_REF)
            else _rewrite_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


def _hoist(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Move a schema's ``$defs`` into ``components``; return the rest, ready to embed.

    ``$id`` and ``$schema`` are dropped: inside the AsyncAPI document a relative ``$id``
    would change the base that ``#/components/...`` references resolve against.
    """
    body = {k: v for k, v in schema.items() if k not in {"$defs", "$id", "$schema"}}
    for name, definition in schema.get("$defs", {}).items():
        hoisted = _rewrite_refs(definition)
        if components.setdefault(name, hoisted) != hoisted:
            raise ValueError(f"two different schemas are both named {name!r}")
    result: dict[str, Any] = _rewrite_refs(body)
    return result


def _message(spec: MessageSpec) -> dict[str, Any]:
    return {
        "name": spec.model.__name__,
        "title": spec.model.__name__,
        "summary": spec.summary,
        "contentType": JSON,
        "headers": _headers(spec),
        "payload": {"$ref": _SCHEMAS_REF + spec.type},
        "correlationId": {
            "description": "The payment the message is about.",
            "location": "$message.payload#/payment_id",
        },
        "bindings": {
            "googlepubsub": {
                "orderingKey": "payment id",
                "bindingVersion": PUBSUB_BINDING_VERSION,
            }
        },
    }


_CHANNEL_DESCRIPTIONS: Final = {
    PAYMENT_COMMANDS: "Commands from the booking service; ordering key = payment id.",
    PAYMENT_EVENTS: "Events the gateway emits; ordering key = payment id.",
}
_DEAD_LETTER_DESCRIPTION: Final = (
    f"Commands that failed delivery "
    f"{TOPOLOGY.subscription(WORKER_COMMANDS_SUBSCRIPTION).max_delivery_attempts} times, with "
    "their attributes unchanged, and messages the worker could not read at all (these may be "
    "any bytes)."
)


def _channel(topic: TopicSpec, messages: Sequence[MessageSpec]) -> dict[str, Any]:
    """A topic; its retention goes in the text (the Pub/Sub channel binding needs a schema)."""
    days = topic.retention.days
    described = _CHANNEL_DESCRIPTIONS.get(topic.name, _DEAD_LETTER_DESCRIPTION)
    return {
        "address": topic.name,
        "description": f"{described} Messages are kept {days} days.",
        "messages": {s.type: {"$ref": f"#/components/messages/{s.type}"} for s in messages},
    }


def _operation(
    action: str, topic: str, messages: Sequence[MessageSpec], summary: str
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{topic}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{topic}/messages/{s.type}"} for s in messages],
    }


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 description of every topic, message and operation of the service."""
    commands = [s for s in SPECS if s.kind == "command"]
    events = [s for s in SPECS if s.kind == "event"]
    schemas: dict[str, Any] = {}
    for spec in SPECS:
        schemas[spec.type] = _hoist(spec.json_schema(), schemas)
    by_topic = {
        PAYMENT_COMMANDS: commands,
        PAYMENT_EVENTS: events,
        PAYMENT_COMMANDS_DEAD_LETTER: commands,
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "payment-gateway-service",
            "version": CONTRACTS_VERSION,
            "description": "Multi-tenant payment gateway of the Melmastoon hotel platform. "
            "Messages are CloudEvents in Pub/Sub binary mode: the ce-* attributes carry the "
            "context, the data is the JSON body.",
        },
        "defaultContentType": JSON,
        "servers": {
            "production": {
                "host": "pubsub.googleapis.com",
                "protocol": "googlepubsub",
                "description": "Google Cloud Pub/Sub in the deployment's project.",
            },
            "dev": {
                "host": "localhost:8085",
                "protocol": "googlepubsub",
                "description": "The Pub/Sub emulator, for development and tests.",
            },
        },
        "channels": {t.name: _channel(t, by_topic.get(t.name, ())) for t in TOPOLOGY.topics},
        "operations": {
            "receivePaymentCommands": _operation(
                "receive", PAYMENT_COMMANDS, commands, "Workers run each command as a saga step."
            ),
            "sendPaymentEvents": _operation(
                "send", PAYMENT_EVENTS, events, "The outbox relay publishes every event."
            ),
        },
        "components": {
            "messages": {spec.type: _message(spec) for spec in SPECS},
            "schemas": schemas,
        },
    }


def render(document: object) -> str:
    """The committed form of a JSON document: sorted keys, 2-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_files() -> dict[str, str]:
    """Relative path under the contracts folder -> the text export writes there."""
    files = {f"{JSON_SUBDIR}/{name}": render(s) for name, s in json_schemas().items()}
    files[ASYNCAPI_FILE] = render(asyncapi_document())
    return files


def differences(folder: Path) -> list[str]:
    """``stale: ...``, ``missing: ...`` or ``extra: ...`` for each file not as export writes it."""
    expected = rendered_files()
    lines: list[str] = []
    for relative, text in sorted(expected.items()):
        path = folder / relative
        if not path.is_file():
            lines.append(f"missing: {relative}")
        elif path.read_text(encoding="utf-8") != text:
            lines.append(f"stale: {relative}")
    present = {f"{JSON_SUBDIR}/{p.name}" for p in (folder / JSON_SUBDIR).glob("*.json")}
    lines.extend(f"extra: {relative}" for relative in sorted(present - expected.keys()))
    return lines


def write(folder: Path, *, allow_breaking: bool = False) -> list[str]:
    """Write every contract file that differs; return breaking changes instead, if any.

    Extra schema files of retired types are deleted only with ``allow_breaking``: retiring
    a type breaks its readers as surely as changing it.
    """
    breaking = check_against_committed(folder / JSON_SUBDIR)
    if breaking and not allow_breaking:
        return breaking
    for relative, text in rendered_files().items():
        path = folder / relative
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for line in differences(folder):
        if line.startswith("extra: "):
            (folder / line.removeprefix("extra: ")).unlink()
    return []


def contracts_cli(  # noqa: PLR0913 (one command line, several documents)
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str | None,
    differences: Callable[[Path], list[str]],
    write: Callable[[Path, bool], list[str]],
    breaking_hint: str,
) -> int:
    """A contract document's command line: write it (the default) or ``--check`` it.

    Prints each difference or breaking change on stdout and a hint on stderr; exit 1 if
    there was any.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the files (the default)")
    mode.add_argument(
        "--check", action="store_true", help="compare only; exit 1 if stale or breaking"
    )
    parser.add_argument(
        "--allow-breaking", action="store_true", help="overwrite what readers rely on"
    )
    parser.add_argument("--out", type=Path, default=CONTRACTS_DIR, help="contracts folder")
    args = parser.parse_args(argv)
    folder: Path = args.out
    if args.check:
        lines = differences(folder)
        hint = "run `make contracts` to regenerate"
    else:
        lines = write(folder, args.allow_breaking)
        hint = breaking_hint
    for line in lines:
        sys.stdout.write(line + "\n")
    if lines:
        sys.stderr.write(hint + "\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the contracts, or with ``--check`` only compare them."""
    return contracts_cli(
        argv,
        prog="python -m schemas.export",
        description=__doc__,
        differences=differences,
        write=lambda folder, allow: write(folder, allow_breaking=allow),
        breaking_hint="these break readers: add a new type version instead, or pass"
        " --allow-breaking",
    )


if __name__ == "__main__":
    raise SystemExit(main())
