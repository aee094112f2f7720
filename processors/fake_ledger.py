"""The vendor side of ``FakeProcessor``: its authorizations, captures and refunds.

The ledger applies operations and enforces the vendor's money rules; it knows nothing of
idempotency keys or scripted failures, which ``processors.fake`` handles in front of it.
A refusal is a ``DeclinedError`` with the gateway's failure code and a vendor code in the
fake's own plain words. Refunds take either a capture's reference (as PayPal does) or the
authorization's (as Stripe does with a payment intent). ``default_capabilities`` says what
each fake vendor account can do: Stripe cards and PayPal hold funds, HesabPay only charges.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from processors.errors import DeclinedError, TryNextError
from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    Capabilities,
    CaptureRequest,
    Failed,
    InquiryResult,
    OperationResult,
    PaymentMethodType,
    RefundRequest,
    VoidRequest,
)
from schemas.clock import Clock
from schemas.events import FailureCode
from schemas.money import CURRENCY_EXPONENTS, Money
from schemas.processors import Processor

AuthorizationStatus = Literal[
    "requires_action", "authorized", "partially_captured", "captured", "voided", "failed"
]
Redirect = tuple[str, Literal["redirect", "three_ds"]]

_HOLDS: Final = {Processor.STRIPE: timedelta(days=7), Processor.PAYPAL: timedelta(days=29)}
"""How long an uncaptured authorization stays capturable."""
_SETTLED: Final = frozenset({"captured", "voided", "failed"})
_PAYPAL_CURRENCIES: Final = frozenset(
    {"AUD", "BRL", "CAD", "CHF", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "ILS"}
    | {"JPY", "MXN", "MYR", "NOK", "NZD", "PLN", "SEK", "SGD", "THB", "USD"}
)


def default_capabilities(processor: Processor) -> Capabilities:
    """What the fake of ``processor`` can do unless told otherwise."""
    if processor is Processor.HESABPAY:  # hosted checkout: an immediate charge, nothing more
        return Capabilities(
            currencies=frozenset({"AFN"}),
            payment_method_types=frozenset({"wallet"}),
            manual_capture=False,
            partial_capture=False,
            refunds=False,
            void=False,
        )
    paypal = processor is Processor.PAYPAL
    method: PaymentMethodType = "paypal" if paypal else "card"
    currencies = _PAYPAL_CURRENCIES & CURRENCY_EXPONENTS.keys() if paypal else CURRENCY_EXPONENTS
    return Capabilities(
        currencies=frozenset(currencies),
        payment_method_types=frozenset({method}),
        manual_capture=True,
        partial_capture=True,
        refunds=True,
        void=True,
    )


def refuse(code: FailureCode, vendor_code: str, message: str) -> DeclinedError:
    """The vendor's refusal of a request."""
    return DeclinedError(message, code=code, vendor_code=vendor_code)


@dataclass(slots=True)
class FakeAuthorization:
    """An authorization as the vendor holds it."""

    reference: str
    payment_id: str
    amount: Money
    captured: Money
    refunded: Money
    status: AuthorizationStatus
    captured_at_once: bool
    expires_at: datetime | None = None
    redirect: Redirect | None = None

    @property
    def voided(self) -> bool:
        """Whether it was released."""
        return self.status == "voided"


@dataclass(slots=True)
class _Capture:
    reference: str
    authorization: FakeAuthorization
    amount: Money
    refunded: Money


def _approved(auth: FakeAuthorization) -> Approved:
    return Approved(auth.reference, auth.amount, auth.expires_at, auth.captured_at_once)


class Ledger:
    """The objects one fake vendor account holds."""

    def __init__(
        self, processor: Processor, capabilities: Capabilities, clock: Clock, ids: Iterator[int]
    ) -> None:
        """An empty account of ``processor``; references are numbered from ``ids``."""
        self._processor = processor
        self._capabilities = capabilities
        self._clock = clock
        self._ids = ids
        self._authorizations: dict[str, FakeAuthorization] = {}
        self._captures: dict[str, _Capture] = {}

    def authorizations_for(self, payment_id: str) -> int:
        """How many authorizations exist for ``payment_id``."""
        return sum(auth.payment_id == payment_id for auth in self._authorizations.values())

    def authorization(self, reference: str) -> FakeAuthorization:
        """The authorization ``reference``; ``KeyError`` if there is none."""
        return self._authorizations[reference]

    def authorize(
        self, request: AuthorizeRequest, redirect: Redirect | None = None
    ) -> OperationResult:
        """Create an authorization, waiting for the customer if ``redirect`` is given."""
        caps, amount = self._capabilities, request.amount
        if amount.currency not in caps.currencies:
            raise TryNextError(
                f"{amount.currency} is not supported",
                code="currency_not_supported",
                vendor_code="currency_not_supported",
            )
        if request.payment_method_type not in caps.payment_method_types:
            raise TryNextError(
                f"{request.payment_method_type} payments are not supported",
                code="invalid_request",
                vendor_code="payment_method_not_supported",
            )
        if amount.is_zero():
            raise refuse("invalid_request", "amount_too_small", "amount must be positive")
        at_once = request.capture == "automatic" or not caps.manual_capture
        auth = FakeAuthorization(
            reference=self._new_reference("auth"),
            payment_id=request.payment_id,
            amount=amount,
            captured=Money.zero(amount.currency),
            refunded=Money.zero(amount.currency),
            status="requires_action",
            captured_at_once=at_once,
            redirect=redirect,
        )
        self._authorizations[auth.reference] = auth
        if redirect is not None:
            return ActionRequired(auth.reference, redirect[0], redirect[1])
        return self._approve(auth)

    def complete_action(self, reference: str) -> None:
        """The customer completed the action: approve the authorization."""
        self._approve(self._waiting(reference))

    def fail_action(self, reference: str) -> None:
        """The customer failed or abandoned the action."""
        self._waiting(reference).status = "failed"

    def authorization_outcome(self, reference: str) -> InquiryResult:
        """What an inquiry about creating ``reference`` finds now."""
        auth = self._authorizations[reference]
        if auth.status == "requires_action" and auth.redirect is not None:
            return ActionRequired(auth.reference, auth.redirect[0], auth.redirect[1])
        if auth.status == "failed":
            return Failed("authentication_failed", "authentication_failed", "action not completed")
        return _approved(auth)

    def capture(self, request: CaptureRequest) -> Approved:
        """Capture ``request.amount``; a final capture releases the rest."""
        auth = self._find(request.reference)
        amount = self._amount(request.amount, auth.amount)
        if auth.status in _SETTLED:
            raise refuse("already_settled", "unexpected_state", f"authorization is {auth.status}")
        if auth.status == "requires_action":
            raise refuse("invalid_request", "unexpected_state", "authorization not approved")
        if not amount.le(auth.amount - auth.captured):
            raise refuse("amount_too_large", "amount_too_large", "more than is capturable")
        if not self._capabilities.partial_capture and amount != auth.amount:
            raise refuse("invalid_request", "partial_capture_not_supported", "partial capture")
        capture = self._record_capture(auth, amount)
        whole = auth.captured == auth.amount
        auth.status = "captured" if request.final or whole else "partially_captured"
        return Approved(capture.reference, amount)

    def void(self, request: VoidRequest) -> Approved:
        """Release an uncaptured or still pending authorization."""
        auth = self._find(request.reference)
        if auth.status in _SETTLED or auth.status == "partially_captured":
            raise refuse("already_settled", "unexpected_state", f"authorization is {auth.status}")
        if auth.status == "authorized" and not self._capabilities.void:
            raise refuse("invalid_request", "operation_not_supported", "void is not supported")
        auth.status = "voided"
        return Approved(auth.reference, auth.amount)

    def refund(self, request: RefundRequest) -> Approved:
        """Refund up to what is captured and not yet refunded on the reference."""
        if not self._capabilities.refunds:
            raise refuse("invalid_request", "operation_not_supported", "refunds are manual")
        capture = self._captures.get(request.reference)
        auth = capture.authorization if capture else self._find(request.reference)
        amount = self._amount(request.amount, auth.amount)
        captures = [capture] if capture else self._captures_of(auth)
        if not captures:
            raise refuse("invalid_request", "nothing_captured", "nothing was captured")
        remaining = sum(c.amount.minor - c.refunded.minor for c in captures)
        if remaining == 0:
            raise refuse("already_settled", "charge_already_refunded", "nothing left to refund")
        if amount.minor > remaining:
            raise refuse("amount_too_large", "amount_too_large", "more than was captured")
        left = amount
        for each in captures:
            share = min(left.minor, each.amount.minor - each.refunded.minor)
            each.refunded += Money(minor=share, currency=left.currency)
            left -= Money(minor=share, currency=left.currency)
        auth.refunded += amount
        return Approved(self._new_reference("refund"), amount)

    def _approve(self, auth: FakeAuthorization) -> Approved:
        if auth.captured_at_once:
            self._record_capture(auth, auth.amount)
            auth.status = "captured"
        else:
            auth.status = "authorized"
            hold = _HOLDS.get(self._processor)
            auth.expires_at = self._clock() + hold if hold else None
        return _approved(auth)

    def _record_capture(self, auth: FakeAuthorization, amount: Money) -> _Capture:
        capture = _Capture(
            self._new_reference("capture"), auth, amount, Money.zero(amount.currency)
        )
        self._captures[capture.reference] = capture
        auth.captured += amount
        return capture

    def _waiting(self, reference: str) -> FakeAuthorization:
        auth = self._authorizations[reference]
        if auth.status != "requires_action":
            raise ValueError(f"authorization {reference} is {auth.status}, not waiting")
        return auth

    def _find(self, reference: str) -> FakeAuthorization:
        auth = self._authorizations.get(reference)
        if auth is None:
            raise refuse("invalid_request", "resource_missing", f"no such object {reference}")
        return auth

    def _captures_of(self, auth: FakeAuthorization) -> list[_Capture]:
        return [c for c in self._captures.values() if c.authorization is auth]

    @staticmethod
    def _amount(amount: Money, authorized: Money) -> Money:
        if amount.currency != authorized.currency:
            raise refuse("invalid_request", "currency_mismatch", "currency differs")
        if amount.is_zero():
            raise refuse("invalid_request", "amount_too_small", "amount must be positive")
        return amount

    def _new_reference(self, kind: str) -> str:
        return f"{self._processor}_{kind}_{next(self._ids)}"
