"""What a verified vendor notification means for a payment saga (pure).

A webhook is one more source of operation outcomes, next to the vendor's responses,
status inquiries and operators; whatever it says goes through the same ``decide``. This
module only finds which operation a notification answers and cross-checks it against the
payment, giving one of:

* ``Resolve(outcome)``: it settles an operation still in flight (a lost response, a
  customer's redirect finished, an in-doubt request); apply ``outcome`` to the saga.
* ``Inquire(seq)``: the customer finished the action an authorization waited for; ask
  the processor (which, for PayPal, authorizes the approved order).
* ``Known``: the saga already knows it (the response arrived first; a redelivery; an
  earlier failed attempt). Nothing to do.
* ``Later``: it cannot be applied yet (the operation it answers is not in flight yet, as
  when the webhook beats the command, or captured arrives before authorized); retry.
* ``Conflict``: it contradicts the payment (another currency or amount, an authorization
  the saga recorded as failed): an operator must look; it is never applied.

Amounts are compared in minor units. Stripe reports captured and refunded amounts as the
running total, so there a notification fits an operation of ``amount`` when it says what
was already settled plus ``amount``; PayPal reports each operation's own amount. A
notification that names a finished operation by its own id, or whose running total is
already recorded, is ``Known``: a late delivery never settles the next operation of the
same amount. One that fits several operations in flight waits (their inquiries decide).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sagas.messages import Declined, Outcome, Succeeded
from sagas.model import Operation, OperationKind, OperationStatus, Payment
from sagas.states import TERMINAL_STATES
from schemas.notifications import Notification, NotificationKind
from schemas.processors import Processor

if TYPE_CHECKING:
    from schemas.events import FailureCode

CAPTURES_AT_ONCE = frozenset({Processor.HESABPAY})
"""Processors that cannot hold funds: their authorization is a capture."""
RUNNING_TOTALS = frozenset({Processor.STRIPE})
"""Processors whose captured and refunded amounts are the total so far, not per operation."""


@dataclass(frozen=True, slots=True)
class Resolve:
    """Apply ``outcome`` to the saga."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Inquire:
    """Ask the processor about operation ``seq`` (the customer acted)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Known:
    """Nothing new for the saga."""

    reason: str


@dataclass(frozen=True, slots=True)
class Later:
    """Not applicable yet; try again later."""

    reason: str


@dataclass(frozen=True, slots=True)
class Conflict:
    """Contradicts the payment; for an operator."""

    reason: str


Verdict = Resolve | Inquire | Known | Later | Conflict


def interpret(payment: Payment, notification: Notification) -> Verdict:
    """What ``notification`` means for ``payment``."""
    amount = notification.amount
    if amount is not None and amount.currency != payment.currency:
        return Conflict(
            f"the notification is in {amount.currency}, the payment in {payment.currency}"
        )
    return _BY_KIND[notification.kind](payment, notification)


def _approved(payment: Payment, notification: Notification) -> Verdict:
    waiting = _in_flight(payment, notification, OperationKind.AUTHORIZE)
    actionable = [op for op in waiting if op.status is OperationStatus.ACTION_REQUIRED]
    if actionable:
        return Inquire(actionable[-1].seq)
    return Known("no authorization waits for the customer")


def _informational(_payment: Payment, notification: Notification) -> Verdict:
    return Known(f"{notification.kind}: the saga learns it from the processor's answer")


def _ops(payment: Payment, notification: Notification, kind: OperationKind) -> list[Operation]:
    return [
        op
        for op in payment.operations
        if op.kind is kind and op.processor is notification.processor
    ]


def _in_flight(
    payment: Payment, notification: Notification, kind: OperationKind
) -> list[Operation]:
    return [op for op in _ops(payment, notification, kind) if op.in_flight]


def _names(notification: Notification) -> set[str]:
    return {r for r in (notification.reference, notification.authorization_reference) if r}


def _about(op: Operation, notification: Notification) -> bool:
    """Whether the notification names what ``op`` created or acted on."""
    return bool({op.reference, op.target} & _names(notification))


def _pick(ops: list[Operation], notification: Notification) -> Operation:
    """The operation the notification names, else the latest."""
    named = [op for op in ops if _about(op, notification)]
    return (named or ops)[-1]


def _amount_is(notification: Notification, *candidates: int) -> bool:
    """Whether the notification's amount (when it has one) is one of ``candidates``."""
    return notification.amount is None or notification.amount.minor in candidates


def _reference(notification: Notification, op: Operation) -> str:
    return notification.reference or notification.authorization_reference or op.reference or "?"


def _authorized(payment: Payment, notification: Notification) -> Verdict:
    waiting = _in_flight(payment, notification, OperationKind.AUTHORIZE)
    if waiting:
        op = _pick(waiting, notification)
        if not _amount_is(notification, op.amount):
            return Conflict(_amounts("authorized", notification, op.amount))
        reference = notification.authorization_reference or _reference(notification, op)
        return Resolve(Succeeded(op.seq, reference, op.amount))
    done = _ops(payment, notification, OperationKind.AUTHORIZE)
    if any(op.status is OperationStatus.SUCCEEDED for op in done):
        return Known("the authorization is already recorded")
    if done and any(_about(op, notification) for op in done):
        return Conflict("the processor reports an authorization the saga recorded as failed")
    return Later("no authorization is in flight at this processor yet")


def _named_settled(payment: Payment, notification: Notification, kind: OperationKind) -> bool:
    """Whether the notification names a finished operation of ``kind`` by its own id.

    Only ids no other operation shares count: a Stripe capture's reference is its
    PaymentIntent's, the same as the authorization's, so it identifies nothing.
    """
    names = _names(notification)
    references = [op.reference for op in payment.operations if op.reference]
    return any(
        not op.in_flight and op.reference in names and references.count(op.reference) == 1
        for op in _ops(payment, notification, kind)
    )


def _settling(notification: Notification, ops: list[Operation], settled: int) -> list[Operation]:
    """The operations in flight the notification's amount fits (``settled``: so far).

    Stripe reports the running total (what was settled so far plus this one); the others
    report each operation's own amount. Without an amount, every one fits.
    """
    amount = notification.amount
    if amount is None:
        return ops
    if notification.processor in RUNNING_TOTALS:
        return [op for op in ops if amount.minor == settled + op.amount]
    return [op for op in ops if amount.minor == op.amount]


def _settle_one(
    payment: Payment,
    notification: Notification,
    kind: OperationKind,
    settled: int,
) -> Verdict | None:
    """Resolve the one operation in flight the notification fits; None if none is."""
    ops = sorted(_in_flight(payment, notification, kind), key=lambda o: o.seq)
    if not ops:
        return None
    if _named_settled(payment, notification, kind):
        return Known(f"the {kind} it names is already recorded")
    named = [op for op in ops if _about(op, notification) and op.reference is not None]
    fitting = [op for op in (named or ops) if op in _settling(notification, ops, settled)]
    if len(fitting) == 1:
        op = fitting[0]
        return Resolve(Succeeded(op.seq, _reference(notification, op), op.amount))
    if len(fitting) > 1:
        return Later(f"it fits {len(fitting)} {kind}s in flight; waiting for their inquiries")
    amount = notification.amount
    if amount is not None and amount.minor <= settled:
        return Known(f"the {kind}d amount is already recorded")
    return Conflict(_amounts(f"{kind}d", notification, *(op.amount for op in ops)))


def _captured(payment: Payment, notification: Notification) -> Verdict:
    verdict = _settle_one(payment, notification, OperationKind.CAPTURE, payment.captured)
    if verdict is not None:
        return verdict
    waiting = _in_flight(payment, notification, OperationKind.AUTHORIZE)
    at_once = payment.request.capture == "automatic" or notification.processor in CAPTURES_AT_ONCE
    if waiting and at_once:
        op = _pick(waiting, notification)
        if not _amount_is(notification, op.amount):
            return Conflict(_amounts("captured", notification, op.amount))
        return Resolve(Succeeded(op.seq, _reference(notification, op), op.amount, captured=True))
    settled = notification.amount.minor if notification.amount is not None else 1
    if payment.captured >= settled:
        return Known("the capture is already recorded")
    return Later("no capture is in flight at this processor yet")


def _refunded(payment: Payment, notification: Notification) -> Verdict:
    verdict = _settle_one(payment, notification, OperationKind.REFUND, payment.refunded)
    if verdict is not None:
        return verdict
    settled = notification.amount.minor if notification.amount is not None else 1
    if payment.refunded >= settled:
        return Known("the refund is already recorded")
    return Later("no refund is in flight at this processor yet")


def _voided(payment: Payment, notification: Notification) -> Verdict:
    voids = _in_flight(payment, notification, OperationKind.VOID)
    if voids:
        op = _pick(voids, notification)
        return Resolve(Succeeded(op.seq, _reference(notification, op), op.amount))
    if payment.voided or payment.ending == "expired" or payment.state in TERMINAL_STATES:
        return Known("the payment no longer holds an authorization")
    if payment.authorized > payment.captured and not payment.capture_final:
        return Conflict(
            f"the processor reports the authorization {notification.kind}"
            " while the saga still holds it"
        )
    return Later("no void is in flight at this processor yet")


def _failed(payment: Payment, notification: Notification, kind: OperationKind) -> Verdict:
    waiting = _in_flight(payment, notification, kind)
    settled = [
        op
        for op in _ops(payment, notification, kind)
        if not op.in_flight and op.reference is not None and op.reference in _names(notification)
    ]
    if settled and not any(_about(op, notification) for op in waiting):
        return Known(f"the {kind} it names already has its outcome")
    if waiting:
        op = _pick(waiting, notification)
        code: FailureCode = (
            "card_declined" if kind is OperationKind.AUTHORIZE else "processor_error"
        )
        message = f"the processor reported that the {kind} failed ({notification.vendor_type})"
        return Resolve(Declined(op.seq, code, message))
    if _ops(payment, notification, kind):
        return Known(f"the {kind} already has its outcome")
    return Later(f"no {kind} is in flight at this processor yet")


def _amounts(what: str, notification: Notification, *expected: int) -> str:
    said = notification.amount.minor if notification.amount is not None else None
    return f"{what} {said} matches no operation in flight (expected one of {list(expected)})"


_BY_KIND: Final[Mapping[NotificationKind, Callable[[Payment, Notification], Verdict]]] = {
    "authorized": _authorized,
    "approved": _approved,
    "action_required": _informational,
    "ignored": _informational,
    "authorization_failed": lambda p, n: _failed(p, n, OperationKind.AUTHORIZE),
    "captured": _captured,
    "capture_failed": lambda p, n: _failed(p, n, OperationKind.CAPTURE),
    "voided": _voided,
    "expired": _voided,
    "refunded": _refunded,
    "refund_failed": lambda p, n: _failed(p, n, OperationKind.REFUND),
}
