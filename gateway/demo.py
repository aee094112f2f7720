"""The demo ``make run`` plays: booking commands in, vendors' webhooks, events out.

It acts as the booking service (publishing commands on ``payment-commands``), as the
customer at the sandboxes (approving a PayPal order, paying a HesabPay checkout), and as
a downstream consumer (printing each event from ``payment-events`` as it arrives):

1. Stripe: authorize 120.00 USD on a card, capture it, refund 20.00 of it.
2. PayPal: authorize 80.00 USD; the payer approves at PayPal; the approval webhook
   reaches payment-api, the worker authorizes the order; then capture.
3. HesabPay: a 2,500 AFN hosted checkout; the customer pays; HesabPay's webhook
   reaches payment-api and the worker records the payment as captured.
"""

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from gateway.sandboxes import Sandboxes
from outbox.binding import decode, encode, to_cloudevent
from outbox.transport import Delivery, Outgoing, Publisher, Subscriber
from schemas.catalog import type_of
from schemas.commands import AuthorizePayment, CapturePayment, Command, RefundPayment
from schemas.envelope import Envelope
from schemas.money import Money
from schemas.topology import EVENTS_TAIL_SUBSCRIPTION, PAYMENT_COMMANDS, Topology
from tenancy.db import Database

BOOKING_SOURCE: Final = "//booking.melmastoon.ghasi.io"
WAIT_S: Final = 60.0
CARD_TOKEN: Final = "pm_card_visa"  # noqa: S105 (the sandbox's test card token)
_STATE: Final = "SELECT state FROM payments WHERE payment_id = $1"
_WAITING_REFERENCE: Final = """
SELECT vendor_reference FROM payment_operations
 WHERE payment_id = $1 AND kind = 'authorize' AND status = 'action_required'
 ORDER BY seq DESC LIMIT 1
"""


@dataclass
class DemoOutput:
    """What the demo printed: each event as (type name, payment id)."""

    say: Callable[[str], None]
    events: list[tuple[str, str]] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)
    """The customer's redirect of each payment that waits for one."""

    async def on_event(self, delivery: Delivery) -> None:
        """Print and ack one event from the tail."""
        event = decode(delivery.message.data, delivery.message.attributes)
        body: dict[str, Any] = json.loads(delivery.message.data)
        name = ".".join(event.get_type().rsplit(".", 3)[-3:-1])
        subject = str(body.get("payment_id") or body.get("tenant_id") or "")
        self.events.append((name, subject))
        if isinstance(body.get("redirect_url"), str):
            self.redirects[subject] = body["redirect_url"]
        self.say(f"  event  {name:<24} {subject}  {_summary(body)}")
        delivery.ack()


def _summary(body: dict[str, Any]) -> str:
    amount = body.get("amount")
    if isinstance(amount, dict):
        return f"{amount.get('minor')} {amount.get('currency')} (minor units)"
    if "redirect_url" in body:
        return f"redirect {body['redirect_url']}"
    return ""


@dataclass
class Demo:
    """The demo's parts: the dev stack's database, transport and sandboxes."""

    db: Database
    tenant_id: str
    publisher: Publisher
    subscriber: Subscriber
    topology: Topology
    sandboxes: Sandboxes
    say: Callable[[str], None] = print
    _output: DemoOutput | None = None

    async def run(self, stop: asyncio.Event) -> DemoOutput:
        """Play the three flows, printing events as they arrive; what arrived."""
        output = DemoOutput(self.say)
        self._output = output
        done = asyncio.Event()
        tail = asyncio.create_task(
            self.subscriber.run(
                self.topology.name(EVENTS_TAIL_SUBSCRIPTION),
                output.on_event,
                stop=done,
                max_in_flight=50,
            )
        )
        try:
            await self._stripe()
            await self._paypal()
            await self._hesabpay()
            expected = {"payment.refunded", "payment.captured"}
            await self._until(lambda: expected <= {n for n, _ in output.events}, stop)
            await self._until(lambda: _count(output, "payment.captured") >= 3, stop)  # noqa: PLR2004 (three flows)
        finally:
            done.set()
            await tail
        self.say("demo: done; the stack keeps running (Ctrl-C stops)")
        return output

    async def _stripe(self) -> None:
        self.say("demo 1/3: Stripe card, authorize 120.00 USD, capture, refund 20.00")
        payment = _id("stripe")
        card = CARD_TOKEN
        await self._send(
            _authorize(payment, 12_000, "USD", method="card", processor="stripe", token=card)
        )
        await self._state(payment, "authorized")
        await self._send(CapturePayment(payment_id=payment, idempotency_key=f"{payment}-cap"))
        await self._state(payment, "captured")
        refund = RefundPayment(
            payment_id=payment,
            idempotency_key=f"{payment}-ref",
            amount=Money(minor=2_000, currency="USD"),
            reason="guest shortened the stay",
        )
        await self._send(refund)
        await self._state(payment, "partially_refunded")

    async def _paypal(self) -> None:
        self.say("demo 2/3: PayPal, authorize 80.00 USD; the payer approves; capture")
        self.sandboxes.paypal.set_auto_approve(on=False)
        payment = _id("paypal")
        await self._send(
            _authorize(payment, 8_000, "USD", method="paypal", processor="paypal", token=None)
        )
        order = await self._waiting(payment)
        self.say(f"  payer  approves PayPal order {order}")
        self.sandboxes.paypal.approve(order)
        await self._state(payment, "authorized")
        await self._send(CapturePayment(payment_id=payment, idempotency_key=f"{payment}-cap"))
        await self._state(payment, "captured")

    async def _hesabpay(self) -> None:
        self.say("demo 3/3: HesabPay hosted checkout, 2,500 AFN; the customer pays")
        payment = _id("hesabpay")
        await self._send(
            _authorize(
                payment,
                250_000,
                "AFN",
                method="wallet",
                processor="hesabpay",
                token=None,
                capture="automatic",
            )
        )
        await self._waiting(payment)
        output = self._output
        assert output is not None  # noqa: S101 (set by run)

        async def redirected() -> bool:
            return payment in output.redirects

        await _poll(redirected, f"{payment}'s checkout page")
        checkout = output.redirects[payment]
        self.say(f"  payer  pays at {checkout}")
        async with httpx.AsyncClient(timeout=10) as client:
            paid = await client.post(f"{checkout}/pay")  # 303 back to the shop: paid
            if paid.is_error:
                paid.raise_for_status()
        await self._state(payment, "captured")

    async def _send(self, command: Command) -> None:
        envelope = Envelope(
            id=str(uuid.uuid4()),
            source=BOOKING_SOURCE,
            type=type_of(type(command)),
            time=datetime.now(UTC),
            subject=command.payment_id,
            tenant_id=self.tenant_id,
        )
        message = encode(
            to_cloudevent(envelope, command.model_dump_json().encode()), command.payment_id
        )
        self.say(f"  cmd    {type(command).__name__:<24} {command.payment_id}")
        await self.publisher.publish_batch(
            [Outgoing(self.topology.name(PAYMENT_COMMANDS), message)]
        )

    async def _state(self, payment_id: str, wanted: str) -> None:
        async def reached() -> bool:
            async with self.db.tenant_transaction(self.tenant_id) as tx:
                return bool(await tx.conn.fetchval(_STATE, payment_id) == wanted)

        await _poll(reached, f"{payment_id} to become {wanted}")

    async def _waiting(self, payment_id: str) -> str:
        found: list[str] = []

        async def waiting() -> bool:
            async with self.db.tenant_transaction(self.tenant_id) as tx:
                reference = await tx.conn.fetchval(_WAITING_REFERENCE, payment_id)
            if reference:
                found.append(reference)
            return bool(reference)

        await _poll(waiting, f"{payment_id} to wait for the customer")
        return found[0]

    async def _until(self, check: Callable[[], bool], stop: asyncio.Event) -> None:
        async def ready() -> bool:
            return check() or stop.is_set()

        await _poll(ready, "the events to arrive")


def _count(output: DemoOutput, name: str) -> int:
    return sum(1 for n, _ in output.events if n == name)


def _id(processor: str) -> str:
    return f"demo-{processor}-{uuid.uuid4().hex[:8]}"


def _authorize(  # noqa: PLR0913 (the command's fields)
    payment_id: str,
    minor: int,
    currency: str,
    *,
    method: str,
    processor: str,
    token: str | None,
    capture: str = "manual",
) -> AuthorizePayment:
    return AuthorizePayment.model_validate(
        {
            "payment_id": payment_id,
            "idempotency_key": f"{payment_id}-auth",
            "amount": {"minor": minor, "currency": currency},
            "payment_method": {"type": method, "token": token},
            "processor": processor,
            "capture": capture,
            "booking_reference": f"BK-{payment_id[-8:]}",
            "return_url": "https://booking.melmastoon.ghasi.io/return",
        }
    )


async def _poll(check: Callable[[], Any], what: str) -> None:
    """Wait for ``check()`` (a coroutine function) to be true, up to ``WAIT_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not await check():
        if loop.time() >= deadline:
            raise TimeoutError(f"demo: waited {WAIT_S:g}s for {what}")
        await asyncio.sleep(0.1)
