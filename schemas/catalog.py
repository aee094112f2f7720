"""The message registry: every CloudEvents type we accept or emit, its model and its topic.

A type string is ``TYPE_PREFIX + "<kind>.<name>.v<N>"``, e.g.
``io.ghasi.melmastoon.payments.command.authorize.v1``. A type never changes in a way that
could break its readers: an incompatible change is a new type with the next ``vN``, and
both are served until the old one is retired (``schemas.compat`` enforces this against the
committed contracts).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import BaseModel

from schemas import commands, events
from schemas.envelope import TYPE_PREFIX
from schemas.topology import PAYMENT_COMMANDS, PAYMENT_EVENTS

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_TYPE_PATTERN: Final = re.compile(
    re.escape(TYPE_PREFIX)
    + r"(?P<kind>[a-z]+)\.(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)"
)


ModelClass = type[BaseModel]
"""A pydantic model class (named so that ``MessageSpec.type`` does not hide ``type``)."""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One message type: its CloudEvents type, model, topic and direction."""

    type: str
    model: ModelClass
    channel: str
    kind: Literal["command", "event"]
    version: int
    summary: str

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the message body, as readers of this type rely on it.

        Commands are described as we validate them (what a sender may send); events as we
        serialise them (what a consumer receives: every field present).
        """
        mode: Literal["validation", "serialization"] = (
            "validation" if self.kind == "command" else "serialization"
        )
        schema: dict[str, Any] = self.model.model_json_schema(mode=mode)
        schema["$schema"] = JSON_SCHEMA_DIALECT
        schema["$id"] = self.type
        schema["title"] = self.model.__name__
        schema["description"] = self.summary
        return schema


def _command(name: str, model: type[BaseModel], summary: str, version: int = 1) -> MessageSpec:
    return MessageSpec(
        type=f"{TYPE_PREFIX}command.{name}.v{version}",
        model=model,
        channel=PAYMENT_COMMANDS,
        kind="command",
        version=version,
        summary=summary,
    )


def _event(
    name: str, model: type[BaseModel], summary: str, version: int = 1, prefix: str = "payment"
) -> MessageSpec:
    return MessageSpec(
        type=f"{TYPE_PREFIX}{prefix}.{name}.v{version}",
        model=model,
        channel=PAYMENT_EVENTS,
        kind="event",
        version=version,
        summary=summary,
    )


SPECS: Final[tuple[MessageSpec, ...]] = (
    _command("authorize", commands.AuthorizePayment, "Authorize an amount on a payment method."),
    _command("capture", commands.CapturePayment, "Capture all or part of an authorization."),
    _command("void", commands.VoidPayment, "Release an uncaptured authorization."),
    _command("refund", commands.RefundPayment, "Refund all or part of the captured amount."),
    _command("cancel", commands.CancelPayment, "Undo the payment from whatever state it is in."),
    _event("authorized", events.PaymentAuthorized, "The funds are reserved."),
    _event(
        "authorization_failed",
        events.PaymentAuthorizationFailed,
        "The payment could not be authorized.",
    ),
    _event(
        "action_required",
        events.PaymentActionRequired,
        "The customer must complete a redirect or 3-D Secure.",
    ),
    _event("captured", events.PaymentCaptured, "Funds were captured."),
    _event("capture_failed", events.PaymentCaptureFailed, "A capture failed."),
    _event("voided", events.PaymentVoided, "The authorization was released uncaptured."),
    _event("void_failed", events.PaymentVoidFailed, "A void failed; the authorization stands."),
    _event("refunded", events.PaymentRefunded, "Captured funds were returned."),
    _event("refund_failed", events.PaymentRefundFailed, "A refund failed."),
    _event("expired", events.PaymentExpired, "The payment lapsed before completing."),
    _event("cancelled", events.PaymentCancelled, "A CancelPayment has finished."),
    _event(
        "rejected",
        events.CommandRejected,
        "A command was refused before it reached a payment.",
        prefix="command",
    ),
    _event(
        "payments_ready",
        events.TenantPaymentsReady,
        "A tenant's processors passed verification; it may take payments.",
        prefix="tenant",
    ),
)
"""Every message type, commands first; the order is the order of the published contracts."""


def _index(specs: tuple[MessageSpec, ...]) -> Mapping[str, MessageSpec]:
    """Specs by type, after checking types are well formed and types and models unique."""
    by_type: dict[str, MessageSpec] = {}
    models: set[type[BaseModel]] = set()
    for spec in specs:
        match = _TYPE_PATTERN.fullmatch(spec.type)
        if match is None or int(match.group("version")) != spec.version:
            raise ValueError(f"malformed message type {spec.type!r}")
        if spec.type in by_type or spec.model in models:
            raise ValueError(f"message type or model registered twice: {spec.type!r}")
        by_type[spec.type] = spec
        models.add(spec.model)
    return MappingProxyType(by_type)


BY_TYPE: Final = _index(SPECS)
COMMANDS: Final[Mapping[str, type[BaseModel]]] = MappingProxyType(
    {s.type: s.model for s in SPECS if s.kind == "command"}
)
EVENTS: Final[Mapping[str, type[BaseModel]]] = MappingProxyType(
    {s.type: s.model for s in SPECS if s.kind == "event"}
)
_TYPE_OF_MODEL: Final[Mapping[type[BaseModel], str]] = MappingProxyType(
    {s.model: s.type for s in SPECS}
)


def spec_for(ce_type: str) -> MessageSpec | None:
    """The spec of CloudEvents type ``ce_type``, or None if we do not know it."""
    return BY_TYPE.get(ce_type)


def model_for(ce_type: str) -> type[BaseModel] | None:
    """The model of CloudEvents type ``ce_type``, or None if we do not know it."""
    spec = BY_TYPE.get(ce_type)
    return None if spec is None else spec.model


def type_of(model_class: type[BaseModel]) -> str:
    """The CloudEvents type of a registered model; ``LookupError`` for any other class."""
    try:
        return _TYPE_OF_MODEL[model_class]
    except KeyError:
        raise LookupError(f"{model_class.__name__} is not a registered message model") from None
