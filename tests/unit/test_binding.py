"""CloudEvents <-> Pub/Sub binary-mode mapping."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from outbox.binding import (
    MalformedEnvelopeError,
    WireMessage,
    data_bytes,
    decode,
    encode,
    envelope_of,
    to_cloudevent,
)
from schemas.envelope import Envelope

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def envelope(**changes: object) -> Envelope:
    """A full envelope, with ``changes`` applied."""
    values: dict[str, object] = {
        "id": "evt-1",
        "source": "//payments.test",
        "type": "io.ghasi.melmastoon.payments.payment.authorized.v1",
        "time": datetime(2026, 11, 22, 10, 30, 0, 123456, tzinfo=UTC),
        "subject": "pay_1",
        "tenant_id": "tnt_a",
        "traceparent": TRACE,
    }
    values.update(changes)
    return Envelope(**values)  # type: ignore[arg-type]


def test_encode_uses_ce_prefixed_attributes_and_content_type() -> None:
    """Every attribute travels as ce-<name>; datacontenttype becomes content-type."""
    wire = encode(to_cloudevent(envelope(), b'{"a":1}'), ordering_key="pay_1")
    assert wire.attributes == {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "//payments.test",
        "ce-type": "io.ghasi.melmastoon.payments.payment.authorized.v1",
        "ce-time": "2026-11-22T10:30:00.123456Z",
        "ce-subject": "pay_1",
        "ce-tenantid": "tnt_a",
        "ce-traceparent": TRACE,
        "content-type": "application/json",
    }
    assert wire.data == b'{"a":1}'
    assert wire.ordering_key == "pay_1"


def test_round_trip_keeps_every_attribute() -> None:
    """decode(encode(e)) gives back the same envelope and data."""
    original = envelope(time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=4))))
    wire = encode(to_cloudevent(original, b"{}"))
    event = decode(wire.data, wire.attributes)
    assert envelope_of(event) == original
    assert data_bytes(event) == b"{}"


def test_optional_attributes_may_be_absent() -> None:
    """Without subject, tenant or trace the mapping omits those attributes."""
    wire = encode(to_cloudevent(envelope(subject=None, tenant_id=None, traceparent=None), b""))
    assert "ce-subject" not in wire.attributes
    assert "ce-tenantid" not in wire.attributes
    back = envelope_of(decode(wire.data, wire.attributes))
    assert back.tenant_id is None
    assert back.subject is None


@pytest.mark.parametrize(
    ("drop", "override", "message"),
    [
        ("ce-id", {}, "missing CloudEvents attribute"),
        ("ce-type", {}, "missing CloudEvents attribute"),
        ("ce-specversion", {}, "missing CloudEvents attribute"),
        (None, {"ce-specversion": "0.3"}, "unsupported specversion"),
        (None, {"ce-time": "yesterday"}, "not RFC 3339"),
        (None, {"ce-time": "2026-11-22T10:30:00"}, "no UTC offset"),
        (None, {"ce-source": ""}, "missing CloudEvents attribute"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(
    drop: str | None, override: dict[str, str], message: str
) -> None:
    """A message that is not a valid binary-mode CloudEvent raises MalformedEnvelopeError."""
    attributes = dict(encode(to_cloudevent(envelope(), b"{}")).attributes)
    if drop:
        del attributes[drop]
    attributes.update(override)
    with pytest.raises(MalformedEnvelopeError, match=message):
        decode(b"{}", attributes)


def test_naive_times_and_oversize_attributes_are_refused() -> None:
    """Events must carry aware times, and Pub/Sub's 1024-byte attribute limit is enforced."""
    with pytest.raises(MalformedEnvelopeError):
        encode(to_cloudevent(envelope(time=datetime(2026, 1, 1)), b"{}"))  # noqa: DTZ001
    with pytest.raises(MalformedEnvelopeError, match="over 1024 bytes"):
        encode(to_cloudevent(envelope(subject="x" * 1100), b"{}"))


def test_foreign_attributes_are_ignored_on_decode() -> None:
    """Attributes without the ce- prefix (say, a dead-letter reason) are not CloudEvents context."""
    wire = encode(to_cloudevent(envelope(), b"{}"))
    attributes = {**wire.attributes, "dead-letter-reason": "card_data"}
    event = decode(WireMessage(b"{}", attributes).data, attributes)
    assert "dead-letter-reason" not in event.get_attributes()
