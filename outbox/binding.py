"""CloudEvents on Pub/Sub in binary content mode, as Google's binding defines it.

Every context attribute travels as a message attribute named ``ce-<attribute>``, except
``datacontenttype``, which becomes ``content-type``; the message data is the event data.
Extensions ride the same way: ``ce-tenantid`` and ``ce-traceparent``.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent

from schemas.envelope import JSON, SPEC_VERSION, Envelope

PREFIX: Final = "ce-"
CONTENT_TYPE: Final = "content-type"
MAX_ATTRIBUTE_VALUE_BYTES: Final = 1024
_EXTENSIONS: Final = {"tenantid": "tenant_id", "traceparent": "traceparent"}


class MalformedEnvelopeError(ValueError):
    """A Pub/Sub message that is not a CloudEvent in binary mode; the message says why."""


@dataclass(frozen=True, slots=True)
class WireMessage:
    """What goes on (or came off) a Pub/Sub topic."""

    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    ordering_key: str = ""


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, microseconds kept."""
    if moment.tzinfo is None:
        raise MalformedEnvelopeError("event time must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_cloudevent(envelope: Envelope, data: bytes) -> CloudEvent:
    """A validated SDK CloudEvent from our envelope and JSON data."""
    attributes: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": envelope.id,
        "source": envelope.source,
        "type": envelope.type,
        "time": envelope.time,
        "datacontenttype": envelope.data_content_type,
    }
    if envelope.subject is not None:
        attributes["subject"] = envelope.subject
    if envelope.tenant_id is not None:
        attributes["tenantid"] = envelope.tenant_id
    if envelope.traceparent is not None:
        attributes["traceparent"] = envelope.traceparent
    try:
        return CloudEvent(attributes, data)
    except BaseCloudEventException as exc:
        raise MalformedEnvelopeError(f"invalid CloudEvent: {exc}") from exc


def encode(event: CloudEvent, ordering_key: str = "") -> WireMessage:
    """Binary-mode Pub/Sub message for ``event``."""
    attributes: dict[str, str] = {}
    for name, value in event.get_attributes().items():
        if name == "datacontenttype":
            attributes[CONTENT_TYPE] = str(value)
        elif isinstance(value, datetime):
            attributes[PREFIX + name] = format_time(value)
        else:
            attributes[PREFIX + name] = str(value)
    oversize = [k for k, v in attributes.items() if len(v.encode()) > MAX_ATTRIBUTE_VALUE_BYTES]
    if oversize:
        raise MalformedEnvelopeError(f"attribute(s) over 1024 bytes: {', '.join(oversize)}")
    data = event.get_data()
    if isinstance(data, dict):
        data = json.dumps(data, separators=(",", ":"), sort_keys=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    return WireMessage(data or b"", attributes, ordering_key)


def decode(data: bytes, attributes: Mapping[str, str]) -> CloudEvent:
    """The CloudEvent carried by a Pub/Sub message; ``MalformedEnvelopeError`` if none."""
    ce: dict[str, Any] = {}
    for key, value in attributes.items():
        if key == CONTENT_TYPE:
            ce["datacontenttype"] = value
        elif key.startswith(PREFIX):
            ce[key.removeprefix(PREFIX)] = value
    missing = [a for a in ("specversion", "id", "source", "type") if not ce.get(a)]
    if missing:
        raise MalformedEnvelopeError(f"missing CloudEvents attribute(s): {', '.join(missing)}")
    if ce["specversion"] != SPEC_VERSION:
        raise MalformedEnvelopeError(f"unsupported specversion {ce['specversion'][:20]!r}")
    if "time" in ce:
        ce["time"] = _parse_time(ce["time"])
    try:
        return CloudEvent(ce, data)
    except BaseCloudEventException as exc:
        raise MalformedEnvelopeError(f"invalid CloudEvent: {exc}") from exc


def _parse_time(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise MalformedEnvelopeError(f"ce-time {raw[:40]!r} is not RFC 3339") from exc
    if moment.tzinfo is None:
        raise MalformedEnvelopeError(f"ce-time {raw[:40]!r} has no UTC offset")
    return moment


def envelope_of(event: CloudEvent) -> Envelope:
    """Our transport-neutral view of a decoded event's context."""
    attributes = event.get_attributes()
    extensions = {ours: attributes.get(ce) for ce, ours in _EXTENSIONS.items()}
    time = event.get_time()
    if time is None:
        raise MalformedEnvelopeError("missing CloudEvents attribute: time")
    return Envelope(
        id=event.get_id(),
        source=event.get_source(),
        type=event.get_type(),
        time=time,
        subject=event.get_subject(),
        tenant_id=extensions["tenant_id"],
        traceparent=extensions["traceparent"],
        data_content_type=event.get_datacontenttype() or JSON,
    )


def data_bytes(event: CloudEvent) -> bytes:
    """The event's data as bytes (JSON text for our events)."""
    data = event.get_data()
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8")
