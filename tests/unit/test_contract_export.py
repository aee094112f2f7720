"""The catalog, its exported contracts, and the breaking-change check that guards them."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from schemas import catalog
from schemas.catalog import COMMANDS, EVENTS, SPECS, model_for, spec_for, type_of
from schemas.commands import AuthorizePayment, CapturePayment
from schemas.compat import breaking_changes, check_against_committed
from schemas.envelope import TYPE_PREFIX
from schemas.events import CommandRejected, PaymentAuthorized
from schemas.export import (
    ASYNCAPI_FILE,
    CONTRACTS_DIR,
    JSON_SUBDIR,
    asyncapi_document,
    differences,
    json_schemas,
    main,
)
from schemas.topology import PAYMENT_COMMANDS, PAYMENT_EVENTS, TOPOLOGY

AUTHORIZE = TYPE_PREFIX + "command.authorize.v1"


def test_type_strings_follow_the_naming_rule() -> None:
    """Types are prefix + kind.name.vN, commands travel on commands and events on events."""
    assert type_of(AuthorizePayment) == "io.ghasi.melmastoon.payments.command.authorize.v1"
    assert type_of(PaymentAuthorized) == "io.ghasi.melmastoon.payments.payment.authorized.v1"
    assert type_of(CommandRejected) == "io.ghasi.melmastoon.payments.command.rejected.v1"
    for spec in SPECS:
        assert spec.type.endswith(f".v{spec.version}")
        assert spec.channel == (PAYMENT_COMMANDS if spec.kind == "command" else PAYMENT_EVENTS)
    assert set(COMMANDS) | set(EVENTS) == {s.type for s in SPECS}
    assert not set(COMMANDS) & set(EVENTS)


def test_lookups_both_ways() -> None:
    """model_for and type_of invert each other; unknown types and models are answered safely."""
    for ce_type, model in {**COMMANDS, **EVENTS}.items():
        assert model_for(ce_type) is model
        assert type_of(model) == ce_type
    assert model_for(TYPE_PREFIX + "command.teleport.v1") is None
    assert spec_for("nonsense") is None
    with pytest.raises(LookupError, match="not a registered"):
        type_of(catalog.MessageSpec)  # type: ignore[arg-type]


def test_catalog_refuses_duplicates_and_malformed_types() -> None:
    """Registering a type twice, or a type not matching its version, fails at import time."""
    spec = SPECS[0]
    with pytest.raises(ValueError, match="twice"):
        catalog._index((spec, spec))
    bad = catalog.MessageSpec("x.authorize.v1", spec.model, spec.channel, "command", 1, "s")
    with pytest.raises(ValueError, match="malformed"):
        catalog._index((bad,))


def test_json_schemas_carry_id_title_and_description() -> None:
    """Each exported schema is named <type>.json and carries $id, title and description."""
    schemas = json_schemas()
    assert len(schemas) == len(SPECS)
    for spec in SPECS:
        schema = schemas[f"{spec.type}.json"]
        assert schema["$id"] == spec.type
        assert schema["title"] == spec.model.__name__
        assert schema["description"] == spec.summary


def test_event_schemas_list_every_field_as_required() -> None:
    """Consumers can rely on every event field being present (null where optional)."""
    for spec in SPECS:
        schema = spec.json_schema()
        if spec.kind == "event":
            assert set(schema["required"]) == set(schema["properties"]), spec.type
    authorize = json_schemas()[f"{AUTHORIZE}.json"]
    assert "capture" not in authorize["required"]


def test_committed_contracts_are_fresh() -> None:
    """The files under schemas/contracts equal what `python -m schemas.export` would write."""
    assert differences(CONTRACTS_DIR) == []


def test_catalog_has_no_breaking_change_against_committed_contracts() -> None:
    """No committed message type has been changed incompatibly or removed."""
    assert check_against_committed(CONTRACTS_DIR / JSON_SUBDIR) == []


def test_asyncapi_document_structure() -> None:
    """AsyncAPI 3.0.0 with every catalog type as a message and channels on topology topics."""
    doc = asyncapi_document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "payment-gateway-service"
    assert doc["defaultContentType"] == "application/json"
    assert {s["protocol"] for s in doc["servers"].values()} == {"googlepubsub"}
    assert {s["host"] for s in doc["servers"].values()} == {
        "pubsub.googleapis.com",
        "localhost:8085",
    }
    messages = doc["components"]["messages"]
    assert set(messages) == {s.type for s in SPECS}
    topics = {t.name for t in TOPOLOGY.topics}
    assert {c["address"] for c in doc["channels"].values()} == topics
    for spec in SPECS:
        message = messages[spec.type]
        assert message["headers"]["properties"]["ce-type"]["const"] == spec.type
        assert message["bindings"]["googlepubsub"]["orderingKey"] == "payment id"
        assert resolve(doc, message["payload"]["$ref"])["title"] == spec.model.__name__


def resolve(doc: dict[str, Any], ref: str) -> Any:  # noqa: ANN401 - JSON of any shape
    """Follow a local JSON pointer such as '#/components/schemas/X' inside ``doc``."""
    assert ref.startswith("#/")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    """No $ref is left pointing at a schema's own $defs or at nothing."""
    doc = asyncapi_document()
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    collect(doc)
    assert refs
    for ref in refs:
        resolve(doc, ref)
    receive = doc["operations"]["receivePaymentCommands"]
    assert receive["action"] == "receive"
    assert len(receive["messages"]) == len(COMMANDS)
    assert doc["operations"]["sendPaymentEvents"]["action"] == "send"


OLD: dict[str, Any] = {
    "$defs": {
        "Money": {
            "type": "object",
            "properties": {"minor": {"type": "integer", "minimum": 0}},
            "required": ["minor"],
        }
    },
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "maxLength": 64, "pattern": "^[a-z]+$"},
        "kind": {"enum": ["a", "b"], "type": "string"},
        "count": {"type": "integer", "minimum": 0, "maximum": 10},
        "amount": {"$ref": "#/$defs/Money"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}},
    },
    "required": ["id"],
}


def edited(path: list[str], value: object) -> dict[str, Any]:
    """A deep copy of OLD with the key at ``path`` set to ``value`` (or removed for None)."""
    new = copy.deepcopy(OLD)
    node = new
    for part in path[:-1]:
        node = node[part]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return new


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["properties", "kind"], None, "$.kind: property removed"),
        (["required"], ["id", "count"], "$.count: property newly required"),
        (["properties", "count", "type"], "string", "$.count: type changed"),
        (["properties", "kind", "enum"], ["a"], "$.kind: enum values removed: ['b']"),
        (["properties", "id", "maxLength"], 32, "$.id: maxLength narrowed from 64 to 32"),
        (["properties", "count", "minimum"], 1, "$.count: minimum narrowed from 0 to 1"),
        (["properties", "count", "maximum"], 9, "$.count: maximum narrowed"),
        (["properties", "id", "pattern"], "^[a-z0-9]+$", "$.id: pattern changed"),
        (["properties", "note", "anyOf"], [{"type": "string"}], "$.note: type changed"),
        (["properties", "tags", "items", "maxLength"], 4, "$.tags[]: maxLength narrowed"),
        (["$defs", "Money", "properties", "minor", "minimum"], 1, "$.amount.minor: minimum"),
        (["$defs", "Money"], None, "$.amount: definition '#/$defs/Money' was removed"),
        (["properties", "kind", "const"], "a", "$.kind: enum values removed: ['b']"),
    ],
)
def test_each_breaking_rule_is_detected(path: list[str], value: object, expected: str) -> None:
    """Removing, requiring, retyping, narrowing or de-referencing is reported in words."""
    changes = breaking_changes(OLD, edited(path, value))
    assert any(line.startswith(expected) for line in changes), changes


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["properties", "extra"], {"type": "string"}),
        (["properties", "kind", "enum"], ["a", "b", "c"]),
        (["properties", "id", "maxLength"], 128),
        (["properties", "count", "type"], "number"),
        (["properties", "count", "minimum"], None),
        (["properties", "id", "description"], "now documented"),
        (
            ["properties", "note", "anyOf"],
            [{"type": "string"}, {"type": "null"}, {"type": "integer"}],
        ),
        (["required"], []),
    ],
)
def test_widening_is_not_breaking(path: list[str], value: object) -> None:
    """New optional fields, more enum values, looser limits and new docs break nobody."""
    assert breaking_changes(OLD, edited(path, value)) == []


def test_identical_schemas_have_no_changes() -> None:
    """Every real catalog schema is compatible with itself."""
    assert breaking_changes(OLD, copy.deepcopy(OLD)) == []
    for spec in SPECS:
        assert breaking_changes(spec.json_schema(), spec.json_schema()) == []


def write_json(path: Path, value: object) -> None:
    """Write ``value`` as JSON, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def test_a_new_version_beside_the_old_passes_but_a_removed_type_fails(tmp_path: Path) -> None:
    """A committed type missing from the catalog is 'type removed'; uncommitted ones are new."""
    folder = tmp_path / "json"
    write_json(folder / f"{AUTHORIZE}.json", json_schemas()[f"{AUTHORIZE}.json"])
    assert check_against_committed(folder) == []
    retired = TYPE_PREFIX + "command.teleport.v1"
    write_json(folder / f"{retired}.json", {"type": "object"})
    assert check_against_committed(folder) == [f"{retired}: type removed"]


def test_a_committed_schema_with_a_field_we_dropped_is_breaking(tmp_path: Path) -> None:
    """If the committed capture command had a field the model lacks now, it is reported."""
    capture = type_of(CapturePayment)
    old = json_schemas()[f"{capture}.json"]
    old["properties"]["partial_reason"] = {"type": "string"}
    write_json(tmp_path / f"{capture}.json", old)
    assert check_against_committed(tmp_path) == [f"{capture}: $.partial_reason: property removed"]


def test_export_writes_then_check_passes_then_detects_drift(tmp_path: Path) -> None:
    """Export writes every file; --check then passes, and fails on stale, missing or extra files."""
    assert main(["--out", str(tmp_path)]) == 0
    asyncapi = tmp_path / ASYNCAPI_FILE
    text = asyncapi.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert main(["--check", "--out", str(tmp_path)]) == 0
    asyncapi.write_text("{}\n", encoding="utf-8")
    (tmp_path / JSON_SUBDIR / f"{AUTHORIZE}.json").unlink()
    (tmp_path / JSON_SUBDIR / "stray.json").write_text("{}", encoding="utf-8")
    assert differences(tmp_path) == [
        f"stale: {ASYNCAPI_FILE}",
        f"missing: {JSON_SUBDIR}/{AUTHORIZE}.json",
        f"extra: {JSON_SUBDIR}/stray.json",
    ]
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_export_refuses_to_overwrite_a_breaking_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A committed schema the catalog would break is left alone unless --allow-breaking."""
    capture = type_of(CapturePayment)
    committed = tmp_path / JSON_SUBDIR / f"{capture}.json"
    old = json_schemas()[f"{capture}.json"]
    old["properties"]["partial_reason"] = {"type": "string"}
    write_json(committed, old)
    assert main(["--out", str(tmp_path)]) == 1
    assert "partial_reason: property removed" in capsys.readouterr().out
    assert json.loads(committed.read_text(encoding="utf-8")) == old
    assert not (tmp_path / ASYNCAPI_FILE).exists()
    assert main(["--out", str(tmp_path), "--allow-breaking"]) == 0
    assert differences(tmp_path) == []
