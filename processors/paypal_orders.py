"""Authorizations at PayPal: an order, the payer's approval, then its authorization.

``authorize`` creates the order (intent AUTHORIZE, or CAPTURE when capture is automatic)
with the request's key as ``PayPal-Request-Id``. An order waiting for the payer is
``ActionRequired`` (reference: the order id; redirect: its approve link). An approved order
(approved at creation, or by the payer since) is authorized (captured) at once with the
id ``key:authorize`` (``key:capture``): ``Approved`` with the authorization's (capture's)
id. A replayed order for our key whose amount or intent differ is ``idempotency_mismatch``.

``inquire`` reads the order: named by the inquiry (the saga's reference from the
``ActionRequired``), or remembered from this adapter's own create call. An order never
seen is ``NotFound``, which is safe: resending the authorization with its key replays every
step. An order the payer approved is authorized then; one approved at creation but not
authorized is ``NotFound``, as the authorization never reached PayPal.
"""

from collections import OrderedDict
from typing import Final

from processors.errors import DeclinedError, InDoubtError
from processors.paypal_client import PayPalClient
from processors.paypal_errors import Call, PayerActionNeededError, mismatch, refused, segment
from processors.paypal_mapping import (
    Order,
    Pending,
    Refused,
    completion,
    malformed,
    order,
    order_body,
    request_id,
)
from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    Failed,
    InquiryRequest,
    InquiryResult,
    NotFound,
    OperationKind,
    OperationResult,
    StillPending,
)

_WAITING: Final = frozenset({"CREATED", "PAYER_ACTION_REQUIRED"})
_ALREADY: Final = frozenset({"ORDER_ALREADY_AUTHORIZED", "ORDER_ALREADY_CAPTURED"})
_REMEMBERED: Final = 10_000

Outcome = Approved | ActionRequired | Pending | Refused


class OrderFlow:
    """Creates, follows and completes orders; remembers the orders it created, by key."""

    def __init__(self, client: PayPalClient) -> None:
        """Send through ``client``."""
        self._client = client
        self._orders: OrderedDict[str, tuple[str, bool]] = OrderedDict()

    async def authorize(self, request: AuthorizeRequest) -> OperationResult:
        """Create the order; authorize it if approved, else ask for the payer's approval."""
        call = Call(OperationKind.AUTHORIZE)
        key = request.idempotency_key
        body = order_body(request)
        created = order(
            await self._client.post("/v2/checkout/orders", call, body, request_id=request_id(key))
        )
        if created.amount != request.amount or created.intent != body["intent"]:
            raise mismatch(call)
        waits = created.status in _WAITING
        self._remember(key, created.id, waits=waits)
        current = await self._order(created.id, call) if waits else created
        outcome = await self._advance(current, key, call)
        if isinstance(outcome, Pending):
            raise InDoubtError("PayPal holds the authorization for review", vendor_code="PENDING")
        if isinstance(outcome, Refused):
            raise refused(call, outcome.vendor_code)
        return outcome

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """Where the order of the authorization sent with ``request``'s key stands."""
        call = Call(OperationKind.AUTHORIZE)
        remembered = self._orders.get(request.idempotency_key)
        if request.reference is not None:
            order_id, waited = request.reference, True
        elif remembered is not None:
            order_id, waited = remembered
        else:
            return NotFound()
        current = await self._order(order_id, call)
        if current.status == "APPROVED" and not waited:
            return NotFound()  # approved at creation, never authorized: it was not received
        try:
            outcome = await self._advance(current, request.idempotency_key, call)
        except DeclinedError as exc:
            return Failed(exc.code, exc.vendor_code, exc.message)
        if isinstance(outcome, Pending):
            return StillPending()
        if isinstance(outcome, Refused):
            error = refused(call, outcome.vendor_code)
            return Failed(error.code, error.vendor_code, error.message)
        return outcome

    async def _order(self, order_id: str, call: Call) -> Order:
        path = f"/v2/checkout/orders/{segment(order_id, call)}"
        return order(await self._client.get(path, call))

    async def _advance(self, current: Order, key: str, call: Call) -> Outcome:
        """Where the order stands; an approved one is authorized (or captured) now."""
        if current.status == "COMPLETED":
            return completion(current)
        if current.status == "APPROVED":
            return await self._complete(current, key, call)
        if current.status in _WAITING:
            return _action(current)
        if current.status == "VOIDED":
            return Refused("ORDER_VOIDED")
        raise malformed(f"unknown order status {current.status[:40]}")

    async def _complete(self, approved: Order, key: str, call: Call) -> Outcome:
        action = "authorize" if approved.intent == "AUTHORIZE" else "capture"
        path = f"/v2/checkout/orders/{segment(approved.id, call)}/{action}"
        try:
            done = order(
                await self._client.post(path, call, {}, request_id=request_id(key, action))
            )
        except PayerActionNeededError:
            current = await self._order(approved.id, call)
            return _action(current) if current.status in _WAITING else completion(current)
        except DeclinedError as exc:
            if exc.vendor_code not in _ALREADY:
                raise
            return completion(await self._order(approved.id, call))
        if done.status != "COMPLETED":
            raise malformed(f"order {done.id} is {done.status[:40]} after {action}")
        return completion(done)

    def _remember(self, key: str, order_id: str, *, waits: bool) -> None:
        self._orders[key] = (order_id, waits)
        self._orders.move_to_end(key)
        while len(self._orders) > _REMEMBERED:
            self._orders.popitem(last=False)


def _action(waiting: Order) -> ActionRequired:
    if waiting.approve_url is None:
        raise malformed(f"order {waiting.id} waits for the payer but has no approve link")
    return ActionRequired(waiting.id, waiting.approve_url, "redirect")
