"""The port every payment processor adapter implements, and the values that cross it.

Requests carry the derived idempotency key (``{tenant}:{payment}:{operation}:{seq}``) that
the adapter must send as the vendor's idempotency header on every attempt, and the
tenant's account reference at the vendor. Amounts are ``Money``; an adapter converts them
to the vendor's format itself. A successful call returns a result; every failure is a
``ProcessorError`` (see ``processors.errors``) whose type says what the caller may do.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

from pydantic import SecretStr

from sagas.model import OperationKind
from schemas.events import FailureCode
from schemas.money import Money
from schemas.notifications import Notification, VendorTransaction
from schemas.processors import Processor

__all__ = [
    "ActionRequired",
    "Approved",
    "AuthorizeRequest",
    "Capabilities",
    "CaptureRequest",
    "CredentialSource",
    "Failed",
    "InquiryRequest",
    "InquiryResult",
    "NotFound",
    "OperationKind",
    "OperationResult",
    "PaymentMethodType",
    "PaymentPort",
    "RefundRequest",
    "StillPending",
    "VendorCredentials",
    "VoidRequest",
    "WebhookRequest",
]


PaymentMethodType = Literal["card", "paypal", "wallet"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a processor can do for a tenant; routing filters on it."""

    currencies: frozenset[str]
    payment_method_types: frozenset[PaymentMethodType]
    manual_capture: bool
    partial_capture: bool
    refunds: bool
    """Refunds through the API; without it a refund becomes a manual task for operators."""
    void: bool

    def supports(self, currency: str, method: PaymentMethodType, *, manual_capture: bool) -> bool:
        """Whether an authorization with these needs can go to this processor."""
        return (
            currency in self.currencies
            and method in self.payment_method_types
            and (self.manual_capture or not manual_capture)
        )


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """Reserve ``amount`` on the customer's payment method.

    The processor captures at once when ``capture`` is automatic or it cannot hold funds.
    """

    idempotency_key: str
    account: str
    payment_id: str
    amount: Money
    payment_method_type: PaymentMethodType
    payment_method_token: str | None
    capture: Literal["manual", "automatic"]
    return_url: str | None = None
    booking_reference: str = ""
    description: str | None = None
    customer_email: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """Take ``amount`` of the authorization ``reference``; ``final`` releases the rest."""

    idempotency_key: str
    account: str
    reference: str
    amount: Money
    final: bool


@dataclass(frozen=True, slots=True)
class VoidRequest:
    """Release the uncaptured authorization ``reference``."""

    idempotency_key: str
    account: str
    reference: str
    reason: str


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Give back ``amount`` of what was captured on ``reference``."""

    idempotency_key: str
    account: str
    reference: str
    amount: Money
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class InquiryRequest:
    """Ask what became of an operation whose outcome we did not learn.

    ``reference`` is the vendor's id of the object the operation acted on, when known
    (None for an authorization whose response never arrived): the adapter then finds it
    through the idempotency key.
    """

    kind: OperationKind
    idempotency_key: str
    account: str
    reference: str | None
    amount: Money


@dataclass(frozen=True, slots=True)
class Approved:
    """The operation took effect at the vendor.

    ``reference``: the vendor's id of the authorization, capture, refund or void.
    ``captured``: for an authorization, whether the funds were captured in the same step
    (automatic capture, or a processor that cannot hold funds).
    """

    reference: str
    amount: Money
    expires_at: datetime | None = None
    captured: bool = False


@dataclass(frozen=True, slots=True)
class ActionRequired:
    """The customer must act (3-D Secure, PayPal approval, a hosted checkout) first."""

    reference: str
    redirect_url: str
    action: Literal["redirect", "three_ds"]
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """An inquiry found that the operation was refused; nothing moved."""

    code: FailureCode
    vendor_code: str
    message: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """An inquiry found no trace of the operation: the vendor never received it."""


@dataclass(frozen=True, slots=True)
class StillPending:
    """An inquiry found the operation still processing at the vendor."""


@dataclass(frozen=True, slots=True)
class VendorCredentials:
    """A tenant's credentials at one processor, resolved from its secret references.

    ``api_key``: the API key (Stripe), ``client_id:secret`` (PayPal) or API key
    (HesabPay); ``webhook_secret``: the signing secret (Stripe), our webhook id (PayPal),
    or None; ``account``: the tenant's account at the vendor (a Connect account, a
    merchant id). Never logged: ``SecretStr`` hides the values in any repr.
    """

    api_key: SecretStr
    webhook_secret: SecretStr | None
    account: str


CredentialSource = Callable[[], Awaitable[VendorCredentials]]
"""Resolves the credentials when an adapter needs them (cached 5 minutes by the store)."""


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook as it arrived: headers (names lower-cased), the raw body, when, from where."""

    headers: Mapping[str, str]
    body: bytes
    received_at: datetime
    remote_addr: str | None = None


OperationResult = Approved | ActionRequired
InquiryResult = Approved | ActionRequired | Failed | NotFound | StillPending


class PaymentPort(Protocol):
    """One processor, for one tenant's account at it."""

    @property
    def processor(self) -> Processor:
        """Which processor this is."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What it can do."""
        ...

    async def authorize(self, request: AuthorizeRequest) -> OperationResult:
        """Reserve funds, or say what the customer must do first."""
        ...

    async def capture(self, request: CaptureRequest) -> Approved:
        """Capture all or part of an authorization."""
        ...

    async def void(self, request: VoidRequest) -> Approved:
        """Release an uncaptured authorization (or abandon a pending one)."""
        ...

    async def refund(self, request: RefundRequest) -> Approved:
        """Refund all or part of what was captured."""
        ...

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """Find out what became of an operation whose response was lost."""
        ...

    async def parse_webhook(self, webhook: WebhookRequest) -> Notification:
        """Verify a webhook's signature and normalize it; ``WebhookRejected`` if it fails."""
        ...

    async def list_transactions(self, day: date) -> list[VendorTransaction]:
        """The account's transactions of one UTC day, for reconciliation."""
        ...
