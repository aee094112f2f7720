"""The fake PayPal's orders and payments in memory: the business rules, no HTTP.

Orders v2 (create, approve, authorize or capture) and Payments v2 (authorizations,
captures, refunds) for many merchant accounts, one per REST client id: every object
belongs to the client that made it and is not found by the others. Amounts are ``Money``;
PayPal's decimal strings are parsed here and rendered by ``sandbox.paypal_render``. Each
change PayPal announces by webhook is handed to ``emit`` as (event type, resource).

Deliberate simplifications: no over-capture (PayPal may let a merchant capture up to 115%
of an authorization); the three-day honour period is not enforced; a reauthorization makes
a new authorization and leaves the first as it is; the transaction report shows a line at
once (PayPal: up to three hours later).
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, Literal

from sandbox.paypal_model import (
    Authorization,
    Capture,
    Decline,
    Line,
    Order,
    PayPalApiError,
    Refund,
    money_of,
    new_id,
    optional_text,
    return_url_in,
    unprocessable,
)
from sandbox.paypal_reads import LedgerReads
from schemas.money import Money

Emit = Callable[[str, dict[str, object]], None]
Json = dict[str, object]

HOLD: Final = timedelta(days=29)
"""How long an authorization can be captured."""

MAGIC_DECLINES: Final[dict[str, Decline]] = {
    "9.01": Decline(issue="INSTRUMENT_DECLINED"),
    "9.02": Decline(response_code="5120"),
    "9.03": Decline(issue="CARD_EXPIRED"),
}
"""Order amounts (decimal strings, any currency) that are declined when authorized."""


class Ledger(LedgerReads):
    """Every account's orders and payments, and the operations on them."""

    def __init__(self, clock: Callable[[], datetime], emit: Emit) -> None:
        """Start empty; ``clock`` stamps objects, ``emit`` announces events."""
        super().__init__()
        self._clock = clock
        self._emit = emit

    def _now(self) -> datetime:
        return self._clock().replace(microsecond=0)

    def _announce(self, event_type: str, resource: Json) -> None:
        self._emit(event_type, resource)

    def create_order(self, owner: str, body: Json, *, approved: bool) -> Json:
        """``POST /v2/checkout/orders``: one purchase unit; APPROVED when ``approved``."""
        intent = body.get("intent")
        if intent not in {"AUTHORIZE", "CAPTURE"}:
            raise PayPalApiError.invalid("INVALID_PARAMETER_VALUE", "intent must be AUTHORIZE")
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            raise PayPalApiError.invalid(
                "INVALID_PARAMETER_VALUE", "exactly one purchase unit is supported"
            )
        unit: Json = units[0]
        now = self._now()
        order = Order(
            id=new_id(),
            owner=owner,
            intent=str(intent),
            status="APPROVED" if approved else "CREATED",
            amount=money_of(unit.get("amount"), "purchase_units[0].amount"),
            reference_id=optional_text(unit, "reference_id", 256),
            custom_id=optional_text(unit, "custom_id", 127),
            invoice_id=optional_text(unit, "invoice_id", 127),
            return_url=return_url_in(body),
            created=now,
            updated=now,
        )
        with self._lock:
            self._store.orders[order.id] = order
            return self._order_json(order)

    def approve(self, order_id: str) -> Json:
        """The payer approves the order (what PayPal's checkout page does)."""
        with self._lock:
            order = self._store.orders.get(order_id)
            if order is None:
                raise PayPalApiError.not_found(order_id)
            if order.status in {"CREATED", "PAYER_ACTION_REQUIRED"}:
                order.status, order.updated = "APPROVED", self._now()
                self._announce("CHECKOUT.ORDER.APPROVED", self._order_json(order))
            return self._order_json(order)

    def complete_order(
        self,
        owner: str,
        order_id: str,
        action: Literal["authorize", "capture"],
        decline: Decline | None,
    ) -> Json:
        """``POST /v2/checkout/orders/{id}/authorize`` (or ``/capture``) of an approved order."""
        with self._lock:
            order = self._store.order(owner, order_id)
            if order.intent != action.upper():
                raise unprocessable("ACTION_DOES_NOT_MATCH_INTENT", "the order's intent differs")
            if order.status == "COMPLETED":
                issue = (
                    "ORDER_ALREADY_AUTHORIZED"
                    if action == "authorize"
                    else "ORDER_ALREADY_CAPTURED"
                )
                raise unprocessable(issue, "the order is already completed")
            if order.status != "APPROVED":
                raise unprocessable("ORDER_NOT_APPROVED", "the payer has not approved the order")
            decline = decline or MAGIC_DECLINES.get(order.amount.to_decimal_string())
            if decline is not None and decline.issue is not None:
                raise unprocessable(decline.issue, "the instrument was declined")
            code = decline.response_code if decline is not None else None
            if action == "authorize":
                self._authorize(order, code)
            else:
                self._capture(order, None, order.amount, final=True, response_code=code)
            order.status, order.updated = "COMPLETED", self._now()
            return self._order_json(order)

    def _authorize(self, order: Order, response_code: str | None) -> None:
        now = self._now()
        auth = Authorization(
            id=new_id(),
            owner=order.owner,
            order_id=order.id,
            amount=order.amount,
            status="DENIED" if response_code else "CREATED",
            captured=Money.zero(order.amount.currency),
            custom_id=order.custom_id,
            invoice_id=order.invoice_id,
            created=now,
            updated=now,
            expires=now + HOLD,
            response_code=response_code,
        )
        self._store.authorizations[auth.id] = auth
        order.authorizations.append(auth.id)
        if auth.status == "CREATED":
            self._line(order.owner, "T1300", auth.id, auth.amount, custom=order.custom_id)
            self._announce("PAYMENT.AUTHORIZATION.CREATED", self._auth_json(auth))

    def _capture(
        self,
        order: Order,
        auth: Authorization | None,
        amount: Money,
        *,
        final: bool,
        response_code: str | None = None,
    ) -> Capture:
        now = self._now()
        capture = Capture(
            id=new_id(),
            owner=order.owner,
            order_id=order.id,
            authorization_id=auth.id if auth is not None else None,
            amount=amount,
            refunded=Money.zero(amount.currency),
            final=final,
            status="DECLINED" if response_code else "COMPLETED",
            custom_id=order.custom_id,
            invoice_id=order.invoice_id,
            created=now,
            updated=now,
            response_code=response_code,
        )
        self._store.captures[capture.id] = capture
        order.captures.append(capture.id)
        if capture.status == "COMPLETED":
            fee = Money(minor=amount.minor * 29 // 1000, currency=amount.currency)
            parent = auth.id if auth is not None else None
            self._line(
                order.owner,
                "T0006",
                capture.id,
                amount,
                fee=fee,
                parent=parent,
                custom=order.custom_id,
            )
            self._announce("PAYMENT.CAPTURE.COMPLETED", self._capture_json(capture))
        else:
            self._announce("PAYMENT.CAPTURE.DECLINED", self._capture_json(capture))
        return capture

    def capture_authorization(
        self, owner: str, auth_id: str, body: Json, decline: Decline | None
    ) -> Json:
        """``POST /v2/payments/authorizations/{id}/capture``: all or part of what is left."""
        with self._lock:
            auth = self._usable(owner, auth_id, refuse_captured=False)
            if decline is not None and decline.issue is not None:
                raise unprocessable(decline.issue, "the capture was declined")
            if auth.status == "CAPTURED":
                raise unprocessable("AUTHORIZATION_ALREADY_CAPTURED", "nothing is left to capture")
            left = auth.amount - auth.captured
            amount = money_of(body["amount"], "amount") if "amount" in body else left
            if amount.currency != auth.amount.currency:
                raise unprocessable("CURRENCY_MISMATCH", "the capture's currency differs")
            if not amount.le(left):
                raise unprocessable(
                    "MAX_CAPTURE_AMOUNT_EXCEEDED", "the amount exceeds what is left to capture"
                )
            final = body.get("final_capture") is True or amount == left
            order = self._store.orders[auth.order_id]
            code = decline.response_code if decline is not None else None
            capture = self._capture(order, auth, amount, final=final, response_code=code)
            if code is not None:  # DECLINED by the card processor: nothing was taken
                return self._capture_json(capture)
            auth.captured = auth.captured + amount
            auth.captures.append(capture.id)
            auth.status = "CAPTURED" if final else "PARTIALLY_CAPTURED"
            auth.updated = self._now()
            return self._capture_json(capture)

    def void(self, owner: str, auth_id: str, decline: Decline | None) -> Json:
        """``POST /v2/payments/authorizations/{id}/void`` of an uncaptured authorization."""
        with self._lock:
            auth = self._usable(owner, auth_id, refuse_captured=True)
            if decline is not None and decline.issue is not None:
                raise unprocessable(decline.issue, "the void was refused")
            auth.status, auth.updated = "VOIDED", self._now()
            self._line(owner, "T1302", auth.id, auth.amount, custom=auth.custom_id)
            self._announce("PAYMENT.AUTHORIZATION.VOIDED", self._auth_json(auth))
            return self._auth_json(auth)

    def reauthorize(self, owner: str, auth_id: str, body: Json) -> Json:
        """``POST /v2/payments/authorizations/{id}/reauthorize``: a new authorization."""
        with self._lock:
            auth = self._usable(owner, auth_id, refuse_captured=True)
            amount = money_of(body["amount"], "amount") if "amount" in body else auth.amount
            order = self._store.orders[auth.order_id]
            before = len(order.authorizations)
            self._authorize(order, None)
            fresh = self._store.authorizations[order.authorizations[before]]
            fresh.amount = amount
            return self._auth_json(fresh)

    def _usable(self, owner: str, auth_id: str, *, refuse_captured: bool) -> Authorization:
        auth = self._store.authorization(owner, auth_id)
        if auth.status in {"CREATED", "PARTIALLY_CAPTURED"} and self._now() > auth.expires:
            auth.status = "EXPIRED"
        if auth.status == "VOIDED":
            raise unprocessable("PREVIOUSLY_VOIDED", "the authorization was voided")
        if auth.status == "EXPIRED":
            raise unprocessable("AUTHORIZATION_EXPIRED", "the authorization has expired")
        if auth.status == "DENIED":
            raise unprocessable("AUTHORIZATION_DENIED", "the authorization was denied")
        if refuse_captured and auth.status in {"CAPTURED", "PARTIALLY_CAPTURED"}:
            raise unprocessable("PREVIOUSLY_CAPTURED", "the authorization has captures")
        return auth

    def refund_capture(
        self, owner: str, capture_id: str, body: Json, decline: Decline | None
    ) -> Json:
        """``POST /v2/payments/captures/{id}/refund``: all or part of what is not refunded."""
        with self._lock:
            capture = self._store.capture(owner, capture_id)
            if decline is not None and decline.issue is not None:
                raise unprocessable(decline.issue, "the refund was refused")
            if capture.status == "REFUNDED":
                raise unprocessable("CAPTURED_AMOUNT_FULLY_REFUNDED", "nothing is left to refund")
            if capture.status not in {"COMPLETED", "PARTIALLY_REFUNDED"}:
                raise unprocessable("CAPTURE_NOT_REFUNDABLE", "the capture is not completed")
            left = capture.amount - capture.refunded
            amount = money_of(body["amount"], "amount") if "amount" in body else left
            if amount.currency != capture.amount.currency:
                raise unprocessable("CURRENCY_MISMATCH", "the refund's currency differs")
            if not amount.le(left):
                raise unprocessable("REFUND_AMOUNT_EXCEEDED", "the amount exceeds what is left")
            now = self._now()
            refund = Refund(
                id=new_id(),
                owner=owner,
                capture_id=capture.id,
                amount=amount,
                status="COMPLETED",
                custom_id=optional_text(body, "custom_id", 127),
                invoice_id=optional_text(body, "invoice_id", 127),
                note=optional_text(body, "note_to_payer", 255),
                created=now,
                updated=now,
            )
            self._store.refunds[refund.id] = refund
            capture.refunds.append(refund.id)
            capture.refunded = capture.refunded + amount
            capture.status = (
                "REFUNDED" if capture.refunded == capture.amount else "PARTIALLY_REFUNDED"
            )
            capture.updated = now
            self._line(
                owner,
                "T1107",
                refund.id,
                amount,
                negative=True,
                parent=capture.id,
                custom=refund.custom_id,
            )
            self._announce("PAYMENT.CAPTURE.REFUNDED", self._refund_json(refund))
            return self._refund_json(refund)

    def _line(  # noqa: PLR0913 (one report line's fields)
        self,
        owner: str,
        event_code: str,
        reference: str,
        amount: Money,
        *,
        negative: bool = False,
        fee: Money | None = None,
        parent: str | None = None,
        custom: str | None = None,
    ) -> None:
        at = self._now()
        line = Line(reference, owner, event_code, amount, negative, fee, at, parent, custom)
        self._store.lines.append(line)
