"""The fake Stripe's ledger: PaymentIntents, charges, refunds, balance transactions, events.

Objects live in an account: the connected account named by ``Stripe-Account``, or the
platform account of the API key. Each operation runs under one lock (the server thread
and tests in other threads both call in) and raises ``StripeApiError`` as Stripe answers.
Every state change emits an event through ``on_event`` (the webhook sender).

Test payment methods decide a confirmation's outcome, as in Stripe's test mode:
``pm_card_visa`` (and ``pm_card_mastercard``) succeed, ``pm_card_chargeDeclined``,
``pm_card_insufficientFunds`` and ``pm_card_expiredCard`` are declined (402),
``pm_card_authenticationRequired`` waits for 3-D Secure (``requires_action``).
A scripted ``Outcome`` overrides the payment method for one confirmation.
"""

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from sandbox import stripe_money as money
from sandbox import stripe_objects as obj
from sandbox.stripe_money import Book
from sandbox.stripe_objects import BalanceTransaction, Charge, Event, Intent
from sandbox.stripe_wire import (
    Params,
    StripeApiError,
    as_bool,
    as_int,
    as_str,
    expands,
    new_id,
)

_DECLINES: Final[dict[str, tuple[str, str]]] = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_insufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_expiredCard": ("expired_card", "expired_card"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card"),
}
_APPROVE: Final = frozenset({"pm_card_visa", "pm_card_mastercard"})
_AUTHENTICATE: Final = frozenset(
    {"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"}
)
_CANCEL_REASONS: Final = frozenset(
    {"abandoned", "duplicate", "fraudulent", "requested_by_customer"}
)
_CANCELABLE: Final = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "requires_capture"}
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A scripted result of the next confirmation: a decline, or 3-D Secure."""

    kind: Literal["decline", "require_action"]
    code: str = "card_declined"
    decline_code: str | None = None


class StripeState:
    """Every account's objects, and the events they produced."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, on_event: Callable[[Event], None]
    ) -> None:
        """An empty ledger; ``on_event`` receives each new event (under the lock)."""
        self._lock = threading.RLock()
        self._clock = clock
        self._on_event = on_event
        self._books: dict[str, Book] = {}
        self._intent_scope: dict[str, str] = {}
        self.events: list[Event] = []

    def _now(self) -> int:
        return int(self._clock())

    def _book(self, scope: str) -> Book:
        return self._books.setdefault(scope, Book())

    def _intent(self, scope: str, intent_id: str, param: str = "intent") -> Intent:
        intent = self._book(scope).intents.get(intent_id)
        if intent is None:
            raise StripeApiError.missing("payment_intent", intent_id, param)
        return intent

    def _emit(self, kind: str, intent: Intent, payload: Params, object_id: str) -> None:
        event = Event(new_id("evt"), kind, self._now(), intent.account, payload, object_id)
        self.events.append(event)
        self._on_event(event)

    def _emit_intent(self, kind: str, intent: Intent) -> None:
        self._emit(kind, intent, obj.intent_json(intent), intent.id)

    # PaymentIntents

    def create_intent(
        self, scope: str, account: str | None, params: Params, outcome: Outcome | None, base: str
    ) -> Params:
        """``POST /v1/payment_intents``; with ``confirm=true`` the outcome is decided now."""
        known = _APPROVE | _AUTHENTICATE | _DECLINES.keys()
        confirm = as_bool(params, "confirm", default=False)
        with self._lock:
            intent = obj.new_intent(params, account, self._now(), known, confirm=confirm)
            self._book(scope).intents[intent.id] = intent
            self._intent_scope[intent.id] = scope
            if confirm:
                self._confirm(intent, outcome, base)
            return obj.intent_json(intent, expand_charge="latest_charge" in expands(params))

    def _confirm(self, intent: Intent, outcome: Outcome | None, base: str) -> None:
        method = intent.payment_method or ""
        if outcome is not None and outcome.kind == "decline":
            self._decline(intent, outcome.code, outcome.decline_code)
        elif method in _DECLINES:
            self._decline(intent, *_DECLINES[method])
        elif outcome is not None or method in _AUTHENTICATE:
            intent.status = "requires_action"
            if intent.return_url:
                url = f"{base.rstrip('/')}/_sandbox/3ds/{intent.id}"
                redirect = {"url": url, "return_url": intent.return_url}
                intent.next_action = {"type": "redirect_to_url", "redirect_to_url": redirect}
            else:
                intent.next_action = {"type": "use_stripe_sdk", "use_stripe_sdk": {}}
            self._emit_intent("payment_intent.requires_action", intent)
        else:
            self._authorize(intent)

    def _authorize(self, intent: Intent) -> None:
        now = self._now()
        intent.next_action = None
        intent.charge = Charge(
            new_id("ch"), intent.id, intent.amount, intent.currency, now, dict(intent.metadata)
        )
        if intent.capture_method == "manual":
            intent.status = "requires_capture"
            intent.amount_capturable = intent.amount
            intent.charge.capture_before = now + obj.HOLD_SECONDS
            self._emit_intent("payment_intent.amount_capturable_updated", intent)
        else:
            self._capture(intent, intent.amount, final=True)

    def _decline(self, intent: Intent, code: str, decline_code: str | None) -> None:
        message = "Your card was declined."
        if code == "expired_card":
            message = "Your card has expired."
        intent.status = "requires_payment_method"
        intent.next_action = None
        error: Params = {"type": "card_error", "code": code, "message": message}
        if decline_code is not None:
            error["decline_code"] = decline_code
        intent.last_payment_error = error
        self._emit_intent("payment_intent.payment_failed", intent)
        raise StripeApiError(
            402,
            "card_error",
            message,
            code=code,
            decline_code=decline_code,
            payment_intent=obj.intent_json(intent),
        )

    def _capture(self, intent: Intent, amount: int, *, final: bool) -> None:
        charge = intent.charge
        if charge is None:  # pragma: no cover - an authorized intent always has its charge
            raise RuntimeError("capture without a charge")
        charge.captured = True
        charge.amount_captured += amount
        intent.amount_received += amount
        intent.amount_capturable = 0 if final else intent.amount_capturable - amount
        if intent.amount_capturable == 0:
            intent.status = "succeeded"
        book = self._book(self._intent_scope[intent.id])
        book.transactions.append(
            BalanceTransaction(
                new_id("txn"),
                amount,
                obj.fee_of(amount),
                intent.currency,
                self._now(),
                "charge",
                charge.id,
            )
        )
        if intent.status == "succeeded":
            self._emit_intent("payment_intent.succeeded", intent)

    def retrieve_intent(self, scope: str, intent_id: str, params: Params) -> Params:
        """``GET /v1/payment_intents/{id}``."""
        with self._lock:
            intent = self._intent(scope, intent_id)
            return obj.intent_json(intent, expand_charge="latest_charge" in expands(params))

    def list_intents(self, scope: str, params: Params) -> Params:
        """``GET /v1/payment_intents``: newest first, ``created`` filters, pagination."""
        with self._lock:
            intents = sorted(
                self._book(scope).intents.values(), key=lambda i: (i.created, i.id), reverse=True
            )
            created = money.created_filter(params)
            rendered = [obj.intent_json(i) for i in intents if created(i.created)]
        return money.paginate(rendered, "/v1/payment_intents", params)

    def capture(self, scope: str, intent_id: str, params: Params) -> Params:
        """``POST /v1/payment_intents/{id}/capture`` (``amount_to_capture``, ``final_capture``)."""
        with self._lock:
            intent = self._intent(scope, intent_id)
            amount = as_int(params, "amount_to_capture")
            final = as_bool(params, "final_capture", default=True)
            if intent.status != "requires_capture":
                raise obj.unexpected_state(intent, "captured", "requires_capture")
            amount = intent.amount_capturable if amount is None else amount
            if amount < 1:
                raise StripeApiError.invalid(
                    "Amount must be at least 1.", param="amount_to_capture"
                )
            if amount > intent.amount_capturable:
                raise StripeApiError(
                    400,
                    "invalid_request_error",
                    f"The amount to capture ({amount}) is greater than the amount capturable "
                    f"({intent.amount_capturable}).",
                    code="amount_too_large",
                    param="amount_to_capture",
                )
            self._capture(intent, amount, final=final)
            return obj.intent_json(intent, expand_charge="latest_charge" in expands(params))

    def cancel(self, scope: str, intent_id: str, params: Params) -> Params:
        """``POST /v1/payment_intents/{id}/cancel`` (``cancellation_reason``)."""
        reason = as_str(params, "cancellation_reason")
        if reason is not None and reason not in _CANCEL_REASONS:
            raise StripeApiError.invalid(
                "Invalid cancellation_reason.", param="cancellation_reason"
            )
        with self._lock:
            intent = self._intent(scope, intent_id)
            if intent.status not in _CANCELABLE or intent.amount_received > 0:
                allowed = ", ".join(sorted(_CANCELABLE))
                raise obj.unexpected_state(intent, "canceled", allowed)
            intent.status = "canceled"
            intent.cancellation_reason = reason
            intent.canceled_at = self._now()
            intent.amount_capturable = 0
            intent.next_action = None
            self._emit_intent("payment_intent.canceled", intent)
            return obj.intent_json(intent, expand_charge="latest_charge" in expands(params))

    # Customer actions (3-D Secure), driven by the sandbox's admin controls

    def complete_action(self, intent_id: str) -> Params:
        """The customer passes 3-D Secure: the intent is authorized (or captured)."""
        with self._lock:
            intent = self._waiting(intent_id)
            self._authorize(intent)
            return obj.intent_json(intent)

    def fail_action(self, intent_id: str) -> Params:
        """The customer fails 3-D Secure: the intent needs a new payment method."""
        with self._lock:
            intent = self._waiting(intent_id)
            # The decline is the intent's new state; nobody is waiting for its 402.
            with contextlib.suppress(StripeApiError):
                self._decline(intent, "payment_intent_authentication_failure", None)
            return obj.intent_json(intent)

    def return_url_of(self, intent_id: str) -> str | None:
        """Where the customer goes back to after 3-D Secure on ``intent_id``, if anywhere."""
        with self._lock:
            scope = self._intent_scope.get(intent_id)
            return None if scope is None else self._book(scope).intents[intent_id].return_url

    def _waiting(self, intent_id: str) -> Intent:
        scope = self._intent_scope.get(intent_id)
        if scope is None:
            raise StripeApiError.missing("payment_intent", intent_id)
        intent = self._intent(scope, intent_id)
        if intent.status != "requires_action":
            raise obj.unexpected_state(intent, "authenticated", "requires_action")
        return intent

    # Refunds and reports

    def create_refund(self, scope: str, params: Params) -> Params:
        """``POST /v1/refunds`` against a PaymentIntent (``payment_intent``, ``amount``)."""
        intent_id = as_str(params, "payment_intent", required=True) or ""
        with self._lock:
            intent = self._intent(scope, intent_id, "payment_intent")
            refund = money.refund(self._book(scope), intent, params, self._now())
            if intent.charge is not None:
                charge = obj.charge_json(intent.charge)
                self._emit("charge.refunded", intent, charge, intent.charge.id)
            return obj.refund_json(refund)

    def retrieve_refund(self, scope: str, refund_id: str) -> Params:
        """``GET /v1/refunds/{id}``."""
        with self._lock:
            refund = self._book(scope).refunds.get(refund_id)
            if refund is None:
                raise StripeApiError.missing("refund", refund_id)
            return obj.refund_json(refund)

    def list_refunds(self, scope: str, params: Params) -> Params:
        """``GET /v1/refunds``."""
        with self._lock:
            return money.list_refunds(self._book(scope), params)

    def list_balance_transactions(self, scope: str, params: Params) -> Params:
        """``GET /v1/balance_transactions``."""
        with self._lock:
            return money.list_balance_transactions(self._book(scope), params)

    def latest_event_about(self, object_id: str) -> Event | None:
        """The newest event about ``object_id`` (or about the intent of that charge)."""
        with self._lock:
            for event in reversed(self.events):
                if object_id in {event.object_id, event.object.get("payment_intent")}:
                    return event
        return None
