"""Compare two JSON Schemas of one message type and list what would break its readers.

A message type is a promise: once published, its schema may only widen (new optional
fields, new enum values, looser limits). ``breaking_changes`` lists every way a new schema
breaks that promise; ``check_against_committed`` applies it to the contracts committed under
``schemas/contracts/json``. An incompatible change belongs in a new type (``.v2``) next to the
old one, which then stays unchanged until it is retired.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from schemas.catalog import SPECS

Schema = Mapping[str, Any]

_UPPER_BOUNDS: Final = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
_LOWER_BOUNDS: Final = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
_EXACT: Final = ("pattern", "format", "multipleOf")
_EMPTY: Final[Schema] = {}
_ANNOTATIONS: Final = frozenset({"title", "description", "default", "examples", "deprecated"})


@dataclass
class _Diff:
    """Both documents, so that ``$ref`` resolves in each, and the ref pairs already compared."""

    old_root: Schema
    new_root: Schema
    seen: set[tuple[str, str]] = field(default_factory=set)

    def compare(self, old: Schema, new: Schema, path: str) -> list[str]:
        """Every breaking change from ``old`` to ``new`` at ``path``.

        A ``new`` with no constraints (only annotations) accepts anything, so breaks nothing;
        that is also where the walk into ``items`` or ``propertyNames`` ends.
        """
        pair = (str(old.get("$ref")), str(new.get("$ref")))
        if "$ref" in old and "$ref" in new:
            if pair in self.seen:
                return []
            self.seen.add(pair)
        old_resolved = _resolve(self.old_root, old)
        new_resolved = _resolve(self.new_root, new)
        if old_resolved is None:
            return []
        if new_resolved is None:
            return [f"{path}: definition {new['$ref']!r} was removed but is still referenced"]
        if _ANNOTATIONS.issuperset(new_resolved):
            return []
        if _options(old_resolved) is not None or _options(new_resolved) is not None:
            return self._compare_options(old_resolved, new_resolved, path)
        return [
            *_type_changes(old_resolved, new_resolved, path),
            *_value_changes(old_resolved, new_resolved, path),
            *_constraint_changes(old_resolved, new_resolved, path),
            *self._object_changes(old_resolved, new_resolved, path),
            *self.compare(
                old_resolved.get("items", _EMPTY), new_resolved.get("items", _EMPTY), path + "[]"
            ),
        ]

    def _compare_options(self, old: Schema, new: Schema, path: str) -> list[str]:
        """Each ``anyOf``/``oneOf`` option of ``old`` must survive in some option of ``new``."""
        changes: list[str] = []
        new_options = _options(new) or [new]
        for option in _options(old) or [old]:
            trials = [
                _Diff(self.old_root, self.new_root, set(self.seen)).compare(option, candidate, path)
                for candidate in new_options
            ]
            if all(trials):
                fewest: list[str] = min(trials, key=len)
                changes.extend(fewest)
        return changes

    def _object_changes(self, old: Schema, new: Schema, path: str) -> list[str]:
        old_props: Schema = old.get("properties", _EMPTY)
        new_props: Schema = new.get("properties", _EMPTY)
        changes = [
            f"{path}.{name}: property removed" for name in old_props if name not in new_props
        ]
        old_required = set(old.get("required", ()))
        changes.extend(
            f"{path}.{name}: property newly required"
            for name in new.get("required", ())
            if name not in old_required
        )
        for name in old_props:
            if name in new_props:
                changes.extend(self.compare(old_props[name], new_props[name], f"{path}.{name}"))
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            changes.append(f"{path}: additional properties no longer allowed")
        elif isinstance(new_extra, Mapping):
            old_schema = old_extra if isinstance(old_extra, Mapping) else _EMPTY
            changes.extend(self.compare(old_schema, new_extra, path + "{}"))
        changes.extend(
            self.compare(
                old.get("propertyNames", _EMPTY),
                new.get("propertyNames", _EMPTY),
                path + "{keys}",
            )
        )
        return changes


def _resolve(root: Schema, schema: Schema) -> Schema | None:
    """``schema`` with a local ``$ref`` replaced by its target (siblings kept); None if dangling."""
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    if not ref.startswith("#/"):
        return None
    target: Any = root
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, Mapping) or key not in target:
            return None
        target = target[key]
    siblings = {k: v for k, v in schema.items() if k != "$ref"}
    return {**target, **siblings}


def _options(schema: Schema) -> Sequence[Schema] | None:
    options = schema.get("anyOf", schema.get("oneOf"))
    return options if isinstance(options, list) else None


def _types(schema: Schema) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _type_changes(old: Schema, new: Schema, path: str) -> list[str]:
    """A type that was accepted before and no longer is (``number`` covers ``integer``)."""
    old_types = _types(old)
    new_types = _types(new)
    if new_types is None:
        return []
    if "number" in new_types:
        new_types = new_types | {"integer"}
    if old_types is None or not old_types <= new_types:
        before = "any" if old_types is None else sorted(old_types)
        return [f"{path}: type changed from {before} to {sorted(_types(new) or ())}"]
    return []


def _values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    values = schema.get("enum")
    return list(values) if isinstance(values, list) else None


def _value_changes(old: Schema, new: Schema, path: str) -> list[str]:
    """Enum or const values that were accepted and no longer are."""
    new_values = _values(new)
    if new_values is None:
        return []
    old_values = _values(old)
    if old_values is None:
        return [f"{path}: now limited to the values {new_values}"]
    removed = [value for value in old_values if value not in new_values]
    return [f"{path}: enum values removed: {removed}"] if removed else []


def _constraint_changes(old: Schema, new: Schema, path: str) -> list[str]:
    """Limits that tightened: a smaller maximum, a larger minimum, a new or changed pattern."""
    narrowed = [
        key
        for key in (*_UPPER_BOUNDS, *_LOWER_BOUNDS)
        if key in new
        and (
            key not in old or (new[key] < old[key] if key in _UPPER_BOUNDS else new[key] > old[key])
        )
    ]
    changed = [key for key in _EXACT if key in new and new[key] != old.get(key)]
    return [
        *(f"{path}: {key} narrowed from {old.get(key, 'none')} to {new[key]}" for key in narrowed),
        *(f"{path}: {key} changed from {old.get(key)!r} to {new[key]!r}" for key in changed),
    ]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every way ``new`` breaks readers of ``old``, one human-readable line each.

    Both are JSON Schemas of the same message type, as ``MessageSpec.json_schema`` writes
    them. Flagged: a removed property, a property newly required, a type no longer accepted,
    enum values removed, a tightened limit (length, range, item or property count), a new or
    changed pattern or format, and a ``$ref`` to a definition that no longer exists.
    """
    return _Diff(old, new).compare(old, new, "$")


def check_against_committed(folder: Path) -> list[str]:
    """Breaking changes of the current catalog against every ``<type>.json`` in ``folder``.

    A committed type that the catalog no longer has is reported as removed. Types that are
    not committed yet (a new ``.v2`` next to its ``.v1``) are new, and so never breaking.
    """
    current = {spec.type: spec.json_schema() for spec in SPECS}
    problems: list[str] = []
    for file in sorted(folder.glob("*.json")):
        ce_type = file.name.removesuffix(".json")
        if ce_type not in current:
            problems.append(f"{ce_type}: type removed")
            continue
        committed = json.loads(file.read_text(encoding="utf-8"))
        problems.extend(
            f"{ce_type}: {line}" for line in breaking_changes(committed, current[ce_type])
        )
    return problems
