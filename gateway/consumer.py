"""The command consumer: Pub/Sub deliveries in, typed handler calls out.

Each delivery is decoded (CloudEvents binary mode), routed on ``ce-type``, checked for a
known serving tenant and for card numbers, validated into its pydantic model and handed
to the registered handler. A handler that returns acks the message; one that raises
nacks it, and the subscription's retry and dead-letter policies take over. A message
that can never succeed is poison: it gets a ``command.rejected`` event (through the
outbox, with an id derived from the message so redeliveries cannot repeat it), a copy on
the dead-letter topic with the reason in its attributes (its data dropped if it held a
card number), and an ack. The worker keeps consuming.
"""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import structlog
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import BaseModel, ValidationError

from outbox.binding import MalformedEnvelopeError, WireMessage, decode, envelope_of
from outbox.transport import Delivery, Outgoing, Publisher, PublishError
from schemas.cards import contains_card_number
from schemas.catalog import type_of
from schemas.clock import Clock
from schemas.envelope import TYPE_PREFIX, Envelope, rejection_id
from schemas.events import CommandRejected, RejectionReason
from schemas.ids import TENANT_ID_PATTERN
from schemas.topology import PAYMENT_COMMANDS_DEAD_LETTER, Topology

_log = structlog.get_logger(__name__)
_tracer = trace.get_tracer("payments.consumer")
_propagator = TraceContextTextMapPropagator()
M = TypeVar("M", bound=BaseModel)
_PAYMENT_ID_KEY: Final = "payment_id"
_SAFE_ATTRIBUTES: Final = frozenset(
    {"ce-id", "ce-type", "ce-source", "ce-specversion", "ce-tenantid", "ce-time"}
)


@dataclass(frozen=True, slots=True)
class MessageContext:
    """What a handler knows about the message besides its body."""

    envelope: Envelope
    tenant_id: str
    message_id: str
    delivery_attempt: int


Handler = Callable[[MessageContext, M], Awaitable[None]]
TenantCheck = Callable[[str], Awaitable[str | None]]
"""Returns None when the tenant may be served, else a reason: unknown or not serving."""
RejectionSink = Callable[[CommandRejected, Envelope], Awaitable[None]]


class Router:
    """Maps CloudEvents types to typed handlers."""

    def __init__(self) -> None:
        """An empty router."""
        self._routes: dict[str, tuple[type[BaseModel], Handler[BaseModel]]] = {}

    def register(self, model: type[M], handler: Handler[M]) -> None:
        """Send messages of ``model``'s catalog type to ``handler``."""
        self._routes[type_of(model)] = (model, handler)  # type: ignore[assignment]

    def route(self, ce_type: str) -> tuple[type[BaseModel], Handler[BaseModel]] | None:
        """The model and handler for ``ce_type``, if registered."""
        return self._routes.get(ce_type)


@dataclass(frozen=True, slots=True)
class Poison(Exception):  # noqa: N818 (a message category, not an error of ours)
    """A message that no retry can make succeed."""

    reason: RejectionReason
    detail: str
    payment_id: str | None = None
    drop_data: bool = False
    tenant_id: str | None = None
    """Set only once the tenant was found in the registry and served."""


@dataclass(slots=True)
class CommandConsumer:
    """Handles deliveries from the commands subscription."""

    router: Router
    publisher: Publisher
    topology: Topology
    tenants: TenantCheck
    reject: RejectionSink
    clock: Clock
    source: str

    async def handle(self, delivery: Delivery) -> None:
        """Process one delivery and settle it exactly once."""
        with structlog.contextvars.bound_contextvars(
            message_id=delivery.message_id, delivery_attempt=delivery.delivery_attempt
        ):
            try:
                await self._dispatch(delivery)
            except Poison as poison:
                try:
                    await self._dead_letter(delivery, poison)
                except Exception:  # noqa: BLE001 (whatever failed, the message must be retried)
                    _log.exception("command_dead_letter_failed", reason=poison.reason)
                    delivery.nack()
                    return
            except Exception:  # noqa: BLE001 (any handler failure means: try again later)
                _log.exception("command_failed_will_retry")
                delivery.nack()
                return
            delivery.ack()

    async def _dispatch(self, delivery: Delivery) -> None:
        message = delivery.message
        if _holds_card_number(message):
            raise Poison("card_data", "the message contains a card number", drop_data=True)
        try:
            event = decode(message.data, message.attributes)
            envelope = envelope_of(event)
        except MalformedEnvelopeError as exc:
            raise Poison("malformed_envelope", f"not a CloudEvent: {exc}") from exc
        structlog.contextvars.bind_contextvars(
            ce_id=envelope.id, ce_type=envelope.type, tenant_id=envelope.tenant_id
        )
        body = _parse_json(message.data)
        payment_id = body.get(_PAYMENT_ID_KEY) if isinstance(body, dict) else None
        payment_id = payment_id if isinstance(payment_id, str) else None
        route = self.router.route(envelope.type)
        if route is None:
            raise Poison("unknown_type", f"no handler for type {envelope.type[:200]}", payment_id)
        tenant_id = await self._tenant(envelope, payment_id)
        model, handler = route
        try:
            command = model.model_validate(body)
        except ValidationError as exc:
            raise Poison(
                "schema_invalid", _summarize(exc), payment_id, tenant_id=tenant_id
            ) from exc
        context = MessageContext(
            envelope, tenant_id, delivery.message_id, delivery.delivery_attempt
        )
        carrier = {"traceparent": envelope.traceparent} if envelope.traceparent else {}
        with _tracer.start_as_current_span(
            f"process {envelope.type.removeprefix(TYPE_PREFIX)}",
            context=_propagator.extract(carrier),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "gcp_pubsub",
                "messaging.message.id": envelope.id,
                "payments.tenant_id": tenant_id,
            },
        ):
            await handler(context, command)
        _log.info("command_handled")

    async def _tenant(self, envelope: Envelope, payment_id: str | None) -> str:
        tenant_id = envelope.tenant_id
        if tenant_id is None or TENANT_ID_PATTERN.fullmatch(tenant_id) is None:
            raise Poison("unknown_tenant", "missing or malformed ce-tenantid", payment_id)
        refusal = await self.tenants(tenant_id)
        if refusal is not None:
            reason: RejectionReason = (
                "unknown_tenant" if refusal == "unknown" else "tenant_not_serving"
            )
            raise Poison(reason, f"tenant {tenant_id} is {refusal}", payment_id)
        return tenant_id

    async def _dead_letter(self, delivery: Delivery, poison: Poison) -> None:
        attributes = dict(delivery.message.attributes)
        if poison.drop_data:
            attributes = {
                k: v
                for k, v in attributes.items()
                if k in _SAFE_ATTRIBUTES and not contains_card_number(v)
            }
        rejected_id = attributes.get("ce-id") or f"pubsub:{delivery.message_id}"
        rejection = CommandRejected(
            payment_id=_valid_payment_id(poison.payment_id),
            rejected_message_id=rejected_id[:255],
            rejected_type=attributes.get("ce-type", "")[:255] or None,
            reason=poison.reason,
            detail=poison.detail[:1000],
        )
        envelope = Envelope(
            id=rejection_id(attributes.get("ce-source", ""), rejected_id),
            source=self.source,
            type=type_of(CommandRejected),
            time=self.clock(),
            subject=rejection.payment_id,
            tenant_id=poison.tenant_id,
            traceparent=attributes.get("ce-traceparent"),
        )
        await self.reject(rejection, envelope)
        attributes.update(
            {"dead-letter-reason": poison.reason, "dead-letter-detail": poison.detail[:1000]}
        )
        data = b"" if poison.drop_data else delivery.message.data
        key = "" if poison.drop_data else delivery.message.ordering_key
        copy = WireMessage(data, attributes, key)
        target = self.topology.name(PAYMENT_COMMANDS_DEAD_LETTER)
        [result] = await self.publisher.publish_batch([Outgoing(target, copy)])
        if isinstance(result, PublishError):
            raise result
        _log.warning("command_dead_lettered", reason=poison.reason, detail=poison.detail[:200])


def _holds_card_number(message: WireMessage) -> bool:
    """Whether the raw data, or any attribute key or value, holds a card number."""
    texts = [message.data.decode("utf-8", errors="replace"), message.ordering_key]
    texts += [part for item in message.attributes.items() for part in item]
    return any(contains_card_number(text) for text in texts)


def _parse_json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Poison("malformed_json", f"data is not JSON: {exc.__class__.__name__}") from exc


def _valid_payment_id(payment_id: str | None) -> str | None:
    if payment_id is None:
        return None
    try:
        CommandRejected.model_validate(
            {
                "payment_id": payment_id,
                "rejected_message_id": "x",
                "rejected_type": None,
                "reason": "malformed_json",
                "detail": "",
            }
        )
    except ValidationError:
        return None
    return payment_id


def _summarize(error: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors()[:5]]
    return "; ".join(parts)[:1000]
