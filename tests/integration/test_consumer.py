"""The command consumer on real Postgres with the in-memory broker: routing and poison."""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
import structlog

from gateway.consumer import MessageContext, Router
from gateway.worker import Worker
from outbox.binding import WireMessage, encode, to_cloudevent
from outbox.memory import InMemoryBroker
from outbox.store import current_traceparent
from outbox.transport import Outgoing
from schemas.catalog import type_of
from schemas.commands import AuthorizePayment, CapturePayment
from schemas.envelope import Envelope
from schemas.topology import PAYMENT_COMMANDS, PAYMENT_COMMANDS_DEAD_LETTER, TOPOLOGY
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.integration.outbox_helpers import eventually, provisioned

pytestmark = pytest.mark.integration
COMMANDS = TOPOLOGY.name(PAYMENT_COMMANDS)
DEAD = TOPOLOGY.name(PAYMENT_COMMANDS_DEAD_LETTER)
AUTHORIZE = type_of(AuthorizePayment)
CAPTURE = type_of(CapturePayment)


def authorize_body(payment_id: str, **overrides: object) -> dict[str, object]:
    """A valid AuthorizePayment body."""
    body: dict[str, object] = {
        "payment_id": payment_id,
        "idempotency_key": f"idem-{payment_id}",
        "amount": {"minor": 1250, "currency": "USD"},
        "payment_method": {"type": "card", "token": "pm_card_visa"},
        "booking_reference": "BK-1",
    }
    body.update(overrides)
    return body


def command(
    ce_type: str, body: object, tenant: str | None, *, ce_id: str | None = None
) -> WireMessage:
    """A command as the booking service would publish it."""
    envelope = Envelope(
        id=ce_id or str(uuid.uuid4()),
        source="//booking.melmastoon.ghasi.io",
        type=ce_type,
        time=datetime.now(UTC),
        tenant_id=tenant,
    )
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return encode(to_cloudevent(envelope, data))


class Harness:
    """A worker's consumer over an in-memory broker, recording handled commands."""

    def __init__(self, db: Database) -> None:
        """Declare the subscriptions and the handlers."""
        self.broker = InMemoryBroker()
        self.broker.declare("cmd", COMMANDS, dead_letter_topic=DEAD, max_delivery_attempts=5)
        self.broker.declare("dead", DEAD)
        self.handled: list[tuple[str, str]] = []
        self.capture_attempts = 0
        router = Router()
        router.register(AuthorizePayment, self._authorize)
        router.register(CapturePayment, self._capture)
        self.worker = Worker(
            db, self.broker, self.broker, TOPOLOGY, router, lambda: datetime.now(UTC)
        )

    async def _authorize(self, context: MessageContext, command: AuthorizePayment) -> None:
        self.handled.append((context.tenant_id, command.payment_id))

    async def _capture(self, context: MessageContext, command: CapturePayment) -> None:
        self.capture_attempts += 1
        raise RuntimeError(f"processor unavailable for {command.payment_id} ({context.tenant_id})")

    async def send(self, *messages: WireMessage) -> None:
        """Publish commands."""
        await self.broker.publish_batch([Outgoing(COMMANDS, m) for m in messages])

    def dead_letters(self) -> list[WireMessage]:
        """Messages on the dead-letter topic so far."""
        return [item.message for item in self.broker.published if item.topic == DEAD]


@pytest.fixture
async def harness(
    fresh_dsn: str, tenant_migrations: tuple[Migration, ...], tenant_ids: Callable[[], str]
) -> AsyncIterator[tuple[Harness, str, Database]]:
    """A running consumer, a provisioned tenant, and the database."""
    db = await Database.open(fresh_dsn, min_size=1, max_size=10)
    tenant = await provisioned(db, tenant_migrations, tenant_ids())
    h = Harness(db)
    stop = asyncio.Event()
    consumer = h.worker.consumer()
    task = asyncio.create_task(h.broker.run("cmd", consumer.handle, stop=stop, max_in_flight=8))
    yield h, tenant, db
    stop.set()
    await asyncio.wait_for(task, 10)
    await db.close()


async def rejections(db: Database) -> list[dict[str, object]]:
    """Bodies of the command-rejected events in the outbox."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT data FROM payments_central.outbox"
            " WHERE attributes->>'ce-type' LIKE '%command.rejected%' ORDER BY outbox_id"
        )
    return [json.loads(row["data"]) for row in rows]


async def test_a_valid_command_reaches_its_handler(
    harness: tuple[Harness, str, Database],
) -> None:
    """A well-formed command for a served tenant is handled once and acked."""
    h, tenant, _ = harness
    await h.send(command(AUTHORIZE, authorize_body("pay_ok"), tenant))
    await eventually(lambda: h.handled == [(tenant, "pay_ok")])
    assert h.broker.pending("cmd") == 0


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda t: command(AUTHORIZE, b"{not json", t), "malformed_json"),
        (lambda t: command(AUTHORIZE.replace("authorize", "teleport"), {}, t), "unknown_type"),
        (
            lambda t: command(
                AUTHORIZE, authorize_body("pay_f", amount={"minor": 12.5, "currency": "USD"}), t
            ),
            "schema_invalid",
        ),
        (lambda _: command(AUTHORIZE, authorize_body("pay_n"), None), "unknown_tenant"),
        (lambda _: command(AUTHORIZE, authorize_body("pay_u"), "tnt_nobody"), "unknown_tenant"),
        (
            lambda t: command(
                AUTHORIZE, authorize_body("pay_c", metadata={"note": "4242 4242 4242 4242"}), t
            ),
            "card_data",
        ),
    ],
)
async def test_poison_is_dead_lettered_and_rejected(
    harness: tuple[Harness, str, Database],
    make: Callable[[str], WireMessage],
    reason: str,
) -> None:
    """Each kind of poison gets a rejection event and a dead-letter copy; nothing is handled."""
    h, tenant, db = harness
    await h.send(make(tenant))
    await eventually(lambda: len(h.dead_letters()) == 1)
    [dead] = h.dead_letters()
    assert dead.attributes["dead-letter-reason"] == reason
    bodies = await rejections(db)
    assert [b["reason"] for b in bodies] == [reason]
    assert h.handled == []
    assert "4242" not in json.dumps(bodies)
    assert b"4242" not in dead.data
    assert "4242" not in json.dumps(dict(dead.attributes))


async def test_a_message_that_is_not_a_cloudevent_is_poison(
    harness: tuple[Harness, str, Database],
) -> None:
    """A message without ce-* attributes is dead-lettered and answered with a rejection."""
    h, _, db = harness
    await h.send(WireMessage(b"{}", {"content-type": "application/json"}))
    await eventually(lambda: len(h.dead_letters()) == 1)
    bodies = await rejections(db)
    assert len(bodies) == 1
    assert str(bodies[0]["rejected_message_id"]).startswith("pubsub:")
    assert bodies[0]["reason"] == "malformed_envelope"


async def test_redelivered_poison_is_rejected_once(
    harness: tuple[Harness, str, Database],
) -> None:
    """The same poison message twice (same ce-id) yields one rejection event."""
    h, tenant, db = harness
    ce_id = str(uuid.uuid4())
    poison = command(AUTHORIZE, b"nope", tenant, ce_id=ce_id)
    await h.send(poison, poison)
    await eventually(lambda: len(h.dead_letters()) == 2)
    assert len(await rejections(db)) == 1


async def test_a_failing_handler_is_retried_then_dead_lettered_by_policy(
    harness: tuple[Harness, str, Database],
) -> None:
    """A handler error nacks: 5 deliveries, then the dead-letter policy moves it; no rejection."""
    h, tenant, db = harness
    await h.send(command(CAPTURE, {"payment_id": "pay_r", "idempotency_key": "k1"}, tenant))
    await eventually(lambda: len(h.dead_letters()) == 0 and h.broker.pending("dead") == 1)
    assert h.capture_attempts == 5
    assert await rejections(db) == []


async def test_the_worker_keeps_consuming_after_poison(
    harness: tuple[Harness, str, Database],
) -> None:
    """Poison between valid commands does not stop the valid ones."""
    h, tenant, _ = harness
    await h.send(
        command(AUTHORIZE, authorize_body("pay_1"), tenant),
        command(AUTHORIZE, b"garbage", tenant),
        command(AUTHORIZE, authorize_body("pay_2"), tenant),
    )
    await eventually(lambda: len(h.handled) == 2)
    assert sorted(p for _, p in h.handled) == ["pay_1", "pay_2"]


async def test_handlers_continue_the_senders_trace(
    harness: tuple[Harness, str, Database],
) -> None:
    """Events written while handling a command carry the command's trace id."""
    h, tenant, _ = harness
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    seen: list[str | None] = []

    async def record(context: MessageContext, command: AuthorizePayment) -> None:
        seen.append(current_traceparent())
        h.handled.append((context.tenant_id, command.payment_id))

    h.worker.router.register(AuthorizePayment, record)
    message = command(AUTHORIZE, authorize_body("pay_t"), tenant)
    traced = WireMessage(
        message.data,
        {**message.attributes, "ce-traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    await h.send(traced)
    await eventually(lambda: len(seen) == 1)
    assert seen[0] is not None
    assert seen[0].split("-")[1] == trace_id


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda t: command(AUTHORIZE, authorize_body("4111111111111111"), t), id="payment_id"
        ),
        pytest.param(
            lambda t: command(AUTHORIZE, b'{"payment_id":"p1","pan":"4111111111111111"', t),
            id="malformed_json",
        ),
        pytest.param(
            lambda t: WireMessage(
                b"{}",
                {
                    **command(AUTHORIZE, {}, t).attributes,
                    "ce-time": "4111 1111 1111 1111",
                },
            ),
            id="envelope_attribute",
        ),
        pytest.param(
            lambda t: WireMessage(
                b"{}", {**command(AUTHORIZE, {}, t).attributes, "ce-id": "4111111111111111"}
            ),
            id="ce_id",
        ),
    ],
)
async def test_card_numbers_never_leave_in_rejections_copies_or_logs(
    harness: tuple[Harness, str, Database],
    make: Callable[[str], WireMessage],
) -> None:
    """A card number anywhere in a command is refused before anything repeats it."""
    h, tenant, db = harness
    with structlog.testing.capture_logs() as logs:
        await h.send(make(tenant))
        await eventually(lambda: len(h.dead_letters()) == 1)
    [dead] = h.dead_letters()
    assert dead.attributes["dead-letter-reason"] == "card_data"
    assert dead.data == b""
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT ordering_key, attributes::text, data FROM payments_central.outbox"
        )
    exposed = json.dumps([dict(dead.attributes), dead.ordering_key, logs]) + repr(
        [tuple(r) for r in rows]
    )
    # The whole number, separators removed: "4111" alone also turns up in random ids.
    assert "4111111111111111" not in re.sub(r"[\s-]", "", exposed)
    assert [b["reason"] for b in await rejections(db)] == ["card_data"]


async def test_a_failing_dead_letter_nacks_instead_of_leaving_the_message(
    harness: tuple[Harness, str, Database],
) -> None:
    """If the dead-letter copy cannot be published, the poison is nacked, not left hanging.

    Five nacks later the subscription's own dead-letter policy moves it.
    """
    h, tenant, _ = harness
    h.broker.fail_topics.add(DEAD)
    await h.send(command(AUTHORIZE, b"{broken", tenant))
    await eventually(lambda: h.broker.pending("dead") == 1)
    assert h.broker.redelivered == 5
    assert h.dead_letters() == []


async def test_rejections_name_a_tenant_only_after_the_registry_check(
    harness: tuple[Harness, str, Database],
) -> None:
    """Poison found before the tenant check is not attributed to the tenant it claims."""
    h, _, db = harness
    await h.send(command(AUTHORIZE.replace("authorize", "x"), {}, "not-a-tenant"))
    await eventually(lambda: len(h.dead_letters()) == 1)
    async with db.connection() as conn:
        tenants = await conn.fetch("SELECT tenant_id FROM payments_central.outbox")
    assert [r["tenant_id"] for r in tenants] == [None]
