"""Refunds at PayPal: which captures a refund takes from, and finding our refunds again.

PayPal refunds a capture, while the gateway refunds a payment: ``RefundRequest.reference``
is the authorization (or, for a payment captured at once, its capture). The refund is
split over the payment's captures, oldest first, each part sent with its own
``PayPal-Request-Id`` ``key:n`` (n: the capture's place, from 1), which is also the part's
``custom_id``. A part's amount leaves out only the refunds of *other* requests, so the plan
is the same on every resend of the request, and a part already made is replayed, not
made twice. The ``custom_id`` lets an inquiry find the parts again.

When a part is refused after an earlier part went through, the error is a plain
``ProcessorError``: money did move, so the refund must not read as refused.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from processors.errors import DeclinedError, ProcessorError
from processors.paypal_client import PayPalClient
from processors.paypal_errors import Call, mismatch, refused, segment
from processors.paypal_mapping import (
    CAPTURED,
    Payment,
    amount_json,
    malformed,
    order,
    payment,
    request_id,
)
from processors.port import (
    Approved,
    Failed,
    InquiryRequest,
    InquiryResult,
    NotFound,
    OperationKind,
    RefundRequest,
    StillPending,
)
from processors.taxonomy import classify, to_error
from schemas.money import Money
from schemas.processors import Processor

_NOT_FOUND: Final = frozenset({"http_404", "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID"})

_LIVE = frozenset({"COMPLETED", "PENDING"})


@dataclass(frozen=True, slots=True)
class Part:
    """One refund to make: ``amount`` of capture ``capture_id``, sent as ``part_id``."""

    capture_id: str
    part_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Shortfall:
    """The captures do not hold the amount: PayPal's issue for it."""

    issue: str
    available: Money


def part_ids(key: str, captures: Sequence[Payment]) -> dict[str, str]:
    """The ``PayPal-Request-Id`` (and ``custom_id``) of each capture's part: id -> part id."""
    return {c.id: request_id(key, str(n)) for n, c in enumerate(captures, start=1)}


def plan(
    captures: Sequence[Payment], refunds: Sequence[Payment], key: str, amount: Money
) -> list[Part] | Shortfall:
    """The parts that refund ``amount`` over ``captures``, or why they cannot."""
    ours = set(part_ids(key, captures).values())
    ids = part_ids(key, captures)
    remaining = amount.minor
    available_total = 0
    parts: list[Part] = []
    for capture in captures:
        if capture.status not in CAPTURED or capture.amount.currency != amount.currency:
            continue
        others = sum(
            r.amount.minor
            for r in refunds
            if r.parent == capture.id and r.custom_id not in ours and r.status in _LIVE
        )
        available = max(0, capture.amount.minor - others)
        available_total += available
        take = min(remaining, available)
        if take > 0:
            parts.append(
                Part(capture.id, ids[capture.id], Money(minor=take, currency=amount.currency))
            )
            remaining -= take
    if remaining > 0:
        issue = "REFUND_AMOUNT_EXCEEDED" if available_total else "CAPTURED_AMOUNT_FULLY_REFUNDED"
        return Shortfall(issue, Money(minor=available_total, currency=amount.currency))
    return parts


@dataclass(frozen=True, slots=True)
class Found:
    """Our refunds for one request, in part order."""

    refunds: tuple[Payment, ...]

    @property
    def completed(self) -> Money | None:
        """The total of the completed parts, or None when none completed."""
        done = [r.amount for r in self.refunds if r.status == "COMPLETED"]
        if not done:
            return None
        return Money(minor=sum(m.minor for m in done), currency=done[0].currency)


def ours(captures: Sequence[Payment], refunds: Sequence[Payment], key: str) -> Found:
    """The refunds made for the request with idempotency key ``key``, in part order."""
    order = {part: n for n, part in enumerate(part_ids(key, captures).values())}
    mine = [r for r in refunds if r.custom_id in order]
    return Found(tuple(sorted(mine, key=lambda r: order[r.custom_id or ""])))


class RefundFlow:
    """Refunds a payment over its captures, and finds such refunds again."""

    def __init__(self, client: PayPalClient) -> None:
        """Send through ``client``."""
        self._client = client

    async def refund(self, request: RefundRequest) -> Approved:
        """Refund ``amount`` over the payment's captures, oldest first."""
        call = Call(OperationKind.REFUND)
        captures, refunds = await self._captures_of(request.reference, call)
        parts = plan(captures, refunds, request.idempotency_key, request.amount)
        if isinstance(parts, Shortfall):
            raise to_error(
                classify(Processor.PAYPAL, call.op, parts.issue),
                f"only {parts.available.to_decimal_string()} can be refunded",
                vendor_code=parts.issue,
                sent=call.posted,
            )
        made: list[Payment] = []
        for part in parts:
            try:
                made.append(await self._refund_part(part, call))
            except DeclinedError as exc:
                if not made:
                    raise
                raise ProcessorError(
                    f"refund stopped after {len(made)} part(s): {exc.message}",
                    vendor_code=exc.vendor_code,
                ) from exc
        return Approved(made[0].id, request.amount)

    async def _refund_part(self, part: Part, call: Call) -> Payment:
        body: dict[str, object] = {"amount": amount_json(part.amount), "custom_id": part.part_id}
        path = f"/v2/payments/captures/{segment(part.capture_id, call)}/refund"
        made = payment(await self._client.post(path, call, body, request_id=part.part_id), "refund")
        if made.amount != part.amount:
            raise mismatch(call)
        if made.status not in _LIVE:
            raise refused(call, made.status)
        return made

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """Find the parts of the refund sent with ``request``'s key by their ``custom_id``."""
        call = Call(OperationKind.REFUND)
        captures, refunds = await self._captures_of(request.reference or "", call)
        found = ours(captures, refunds, request.idempotency_key)
        if not found.refunds:
            return NotFound()
        if any(r.status == "PENDING" for r in found.refunds):
            return StillPending()
        completed = found.completed
        if completed is None:
            error = refused(call, found.refunds[0].status)
            return Failed(error.code, error.vendor_code, error.message)
        if completed != request.amount:
            return NotFound()  # some parts never arrived: resending the key completes them
        return Approved(found.refunds[0].id, completed)

    async def _captures_of(
        self, reference: str, call: Call
    ) -> tuple[list[Payment], tuple[Payment, ...]]:
        """The captures a refund of ``reference`` may take from, and the order's refunds."""
        name = segment(reference, call)
        only: str | None = None
        try:
            path = f"/v2/payments/authorizations/{name}"
            found = payment(await self._client.get(path, call), "authorization")
        except DeclinedError as exc:
            if exc.vendor_code not in _NOT_FOUND:
                raise
            found = payment(
                await self._client.get(f"/v2/payments/captures/{name}", call), "capture"
            )
            only = found.id
        if found.order_id is None:
            raise malformed(f"{found.id} names no order")
        path = f"/v2/checkout/orders/{segment(found.order_id, call)}"
        current = order(await self._client.get(path, call))
        captures = [c for c in current.captures if only is None or c.id == only]
        return captures, current.refunds
