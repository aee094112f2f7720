"""Reading the fake PayPal's ledger: PayPal's GET endpoints, the report, test helpers.

``LedgerReads`` holds the objects (``Store``) behind one lock; ``sandbox.paypal_ledger``
adds the operations that change them.
"""

import threading
from datetime import datetime

from sandbox.paypal_model import Authorization, Capture, Line, Order, Refund, Store
from sandbox.paypal_render import render_authorization, render_capture, render_order, render_refund

Json = dict[str, object]


class LedgerReads:
    """Every account's objects, behind one lock (tests look in from their own thread)."""

    def __init__(self) -> None:
        """Nothing stored; links point at ``base_url`` (set once the server has a port)."""
        self._lock = threading.RLock()
        self._store = Store()
        self.base_url = "http://127.0.0.1"

    def return_url_of(self, order_id: str) -> str | None:
        """Where the payer goes back to after approving the order."""
        with self._lock:
            order = self._store.orders.get(order_id)
            return order.return_url if order is not None else None

    def order(self, owner: str, order_id: str) -> Json:
        """``GET /v2/checkout/orders/{id}``."""
        with self._lock:
            return self._order_json(self._store.order(owner, order_id))

    def authorization(self, owner: str, auth_id: str) -> Json:
        """``GET /v2/payments/authorizations/{id}``."""
        with self._lock:
            return self._auth_json(self._store.authorization(owner, auth_id))

    def capture(self, owner: str, capture_id: str) -> Json:
        """``GET /v2/payments/captures/{id}``."""
        with self._lock:
            return self._capture_json(self._store.capture(owner, capture_id))

    def refund(self, owner: str, refund_id: str) -> Json:
        """``GET /v2/payments/refunds/{id}``."""
        with self._lock:
            return self._refund_json(self._store.refund(owner, refund_id))

    def lines(self, owner: str, start: datetime, end: datetime) -> list[Line]:
        """The report lines of ``owner`` from ``start`` to ``end``, both included."""
        with self._lock:
            return [x for x in self._store.lines if x.owner == owner and start <= x.at <= end]

    def event_about(self, reference: str) -> tuple[str, Json]:
        """The event type and resource PayPal would announce about the object ``reference``."""
        with self._lock:
            store = self._store
            if (auth := store.authorizations.get(reference)) is not None:
                kind = "VOIDED" if auth.status == "VOIDED" else "CREATED"
                return f"PAYMENT.AUTHORIZATION.{kind}", self._auth_json(auth)
            if (capture := store.captures.get(reference)) is not None:
                kind = "COMPLETED" if capture.status != "DECLINED" else "DECLINED"
                return f"PAYMENT.CAPTURE.{kind}", self._capture_json(capture)
            if (refund := store.refunds.get(reference)) is not None:
                return "PAYMENT.CAPTURE.REFUNDED", self._refund_json(refund)
            if (order := store.orders.get(reference)) is not None:
                return "CHECKOUT.ORDER.APPROVED", self._order_json(order)
        raise KeyError(reference)

    def order_of(self, reference: str) -> str:
        """The order an authorization, capture or order id belongs to (for tests)."""
        with self._lock:
            store = self._store
            if reference in store.orders:
                return reference
            if (auth := store.authorizations.get(reference)) is not None:
                return auth.order_id
            return store.captures[reference].order_id

    def refunds_of(self, capture_id: str) -> list[Json]:
        """The refunds made on a capture, oldest first (for tests)."""
        with self._lock:
            capture = self._store.captures[capture_id]
            return [self._refund_json(self._store.refunds[r]) for r in capture.refunds]

    def _order_json(self, order: Order) -> Json:
        return render_order(order, self._store, self.base_url)

    def _auth_json(self, auth: Authorization) -> Json:
        return render_authorization(auth, self.base_url)

    def _capture_json(self, capture: Capture) -> Json:
        return render_capture(capture, self.base_url)

    def _refund_json(self, refund: Refund) -> Json:
        return render_refund(refund, self.base_url)
