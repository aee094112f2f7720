"""HesabPay behind the ``PaymentPort``: a hosted checkout, with what HesabPay lacks kept here.

HesabPay's public API creates a checkout session and nothing more: no authorize/capture
split, void, refund, status lookup, transaction list or idempotency header. So:

- **authorize** creates a checkout and answers ``ActionRequired`` (redirect the customer).
  Our session id is derived from the idempotency key and sent as the item id, which the
  webhook echoes. The session is stored (``CheckoutSessions``) *before* HesabPay is called,
  and a retry with the same key finds it: a session already open is answered again, not
  created twice. A retry after a lost answer (timeout, 5xx, unreadable answer) creates a
  new checkout with the *same* item id: the first URL reached no one, so no one can pay
  it, and if anyone did, the payment would still match our one session.
- **capture** moves no money: the customer paid at checkout. The full amount of a paid
  checkout is ``Approved`` with the transaction id; a partial capture is refused.
- **void** lets the checkout expire (HesabPay cannot cancel one): ``Approved`` for nothing
  while it is unpaid, ``already_settled`` once paid. Should the customer still pay the
  abandoned checkout, the webhook reports the capture and the saga flags it for operators.
- **refund** is refused (``refund_not_supported``); the saga turns it into a task for
  operators, who refund from HesabPay's dashboard.
- **inquire** reads the stored checkout, whose outcome only a verified webhook sets.
- **parse_webhook**: see ``processors.hesabpay_webhooks``.
- **list_transactions** lists the payments recorded from verified webhooks; an imported
  dashboard export is to complete it for reconciliation.

The API key is sent as ``Authorization: API-KEY <key>`` and appears in no log or message.
"""

import hashlib
from datetime import date
from typing import TYPE_CHECKING, Final

import httpx
import structlog

from processors.errors import DeclinedError, ProcessorError
from processors.hesabpay_sessions import CheckoutSession, CheckoutSessions, ReplayStore
from processors.hesabpay_webhooks import CURRENCY, WebhookVerifier
from processors.hesabpay_wire import HesabPayClient, expect_success
from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    Capabilities,
    CaptureRequest,
    CredentialSource,
    Failed,
    InquiryRequest,
    InquiryResult,
    NotFound,
    OperationKind,
    OperationResult,
    RefundRequest,
    VoidRequest,
    WebhookRequest,
)
from processors.taxonomy import classify, to_error
from schemas.clock import Clock
from schemas.money import Money
from schemas.notifications import Notification, VendorTransaction
from schemas.processors import Processor

if TYPE_CHECKING:
    from pydantic import JsonValue

__all__ = ["CREATE_SESSION_PATH", "HESABPAY_CAPABILITIES", "HesabPayAdapter", "session_id_for"]

CREATE_SESSION_PATH: Final = "/api/v1/payment/create-session"
HESABPAY_CAPABILITIES: Final = Capabilities(
    currencies=frozenset({CURRENCY}),
    payment_method_types=frozenset({"wallet"}),
    manual_capture=False,
    partial_capture=False,
    refunds=False,
    void=False,
)
"""A wallet charged at checkout, in afghani; nothing can be held, voided or refunded."""

_ITEM_NAME_LENGTH: Final = 100
_log = structlog.get_logger(__name__)


def session_id_for(idempotency_key: str) -> str:
    """Our checkout session id for an idempotency key: derived, so every retry names it."""
    return "hp_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def _refusal(operation: OperationKind, code: str, message: str, *, sent: bool) -> ProcessorError:
    return to_error(
        classify(Processor.HESABPAY, operation, code), message, vendor_code=code, sent=sent
    )


def _failed(operation: OperationKind, code: str, message: str) -> Failed:
    return Failed(classify(Processor.HESABPAY, operation, code).failure_code, code, message)


class HesabPayAdapter:
    """One tenant's HesabPay account, through hosted checkout."""

    def __init__(  # noqa: PLR0913 (the dependencies the port's operations need, by keyword)
        self,
        credentials: CredentialSource,
        *,
        base_url: str,
        clock: Clock,
        sessions: CheckoutSessions,
        replays: ReplayStore,
        http: httpx.AsyncClient | None = None,
        timeout_s: float = 20,
    ) -> None:
        """Call HesabPay at ``base_url`` (with ``http``, or a client per call when None)."""
        self._credentials = credentials
        self._clock = clock
        self._sessions = sessions
        self._client = HesabPayClient(base_url, http=http, timeout_s=timeout_s)
        self._webhooks = WebhookVerifier(
            self._client, credentials, clock=clock, sessions=sessions, replays=replays
        )

    @property
    def processor(self) -> Processor:
        """HesabPay."""
        return Processor.HESABPAY

    @property
    def capabilities(self) -> Capabilities:
        """A wallet charged at checkout, in afghani."""
        return HESABPAY_CAPABILITIES

    async def authorize(self, request: AuthorizeRequest) -> OperationResult:
        """Open a checkout for the customer, or answer again the one opened for this key."""
        self._check(request)
        key = request.idempotency_key
        wanted = CheckoutSession(
            session_id_for(key), key, request.payment_id, request.amount, self._clock()
        )
        session = await self._sessions.reserve(wanted)
        if (session.payment_id, session.amount) != (request.payment_id, request.amount):
            raise _refusal(
                OperationKind.AUTHORIZE,
                "idempotency_error",
                "idempotency key reused with different parameters",
                sent=False,
            )
        if session.status == "creating":
            session = await self._create(session, request)
        return _authorization(session)

    async def capture(self, request: CaptureRequest) -> Approved:
        """The payment made at checkout, when the whole amount is asked for."""
        session = await self._session(request.reference, OperationKind.CAPTURE)
        kind, asked = OperationKind.CAPTURE, request.amount
        if asked.currency != session.amount.currency:
            raise _refusal(kind, "currency_mismatch", "currency differs", sent=False)
        if session.status in {"creating", "open"}:
            raise _refusal(kind, "checkout_open", "the customer has not paid yet", sent=False)
        if session.status != "paid" or session.transaction_id is None:
            raise _refusal(kind, "checkout_closed", f"the checkout is {session.status}", sent=False)
        if not asked.le(session.amount):
            raise _refusal(kind, "amount_exceeds_payment", "more than was paid", sent=False)
        if asked != session.amount:
            raise _refusal(kind, "partial_capture_not_supported", "partial capture", sent=False)
        return Approved(session.transaction_id, session.amount)

    async def void(self, request: VoidRequest) -> Approved:
        """Abandon an unpaid checkout (it expires at HesabPay); a paid one cannot be voided."""
        session = await self._sessions.abandon(
            (await self._session(request.reference, OperationKind.VOID)).session_id
        )
        if session.status == "paid":
            raise _refusal(OperationKind.VOID, "checkout_paid", "the customer paid", sent=False)
        return Approved(session.session_id, Money.zero(session.amount.currency))

    async def refund(self, request: RefundRequest) -> Approved:
        """Refused: HesabPay has no refund API; operators refund from its dashboard."""
        raise _refusal(
            OperationKind.REFUND,
            "refund_not_supported",
            f"HesabPay has no refund API; refund {request.reference} from the dashboard",
            sent=False,
        )

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """What the stored checkout says of the operation (webhooks keep it current)."""
        if request.kind is OperationKind.REFUND:
            return _failed(request.kind, "refund_not_supported", "refunds are never sent")
        if request.kind is OperationKind.AUTHORIZE:
            session = await self._sessions.for_key(request.idempotency_key)
        elif request.reference is not None:
            session = await self._sessions.get(request.reference)
        else:
            session = None
        if session is None or session.status == "creating":
            return NotFound()  # no checkout URL reached anyone: nothing can have been paid
        return _inquiry_answer(request.kind, session)

    async def parse_webhook(self, webhook: WebhookRequest) -> Notification:
        """Verify a webhook with HesabPay, cross-check it against our checkout, normalize it."""
        return await self._webhooks.parse(webhook)

    async def list_transactions(self, day: date) -> list[VendorTransaction]:
        """The payments verified webhooks reported on ``day`` (HesabPay has no listing API)."""
        return [
            VendorTransaction(
                processor=Processor.HESABPAY,
                reference=payment.transaction_id,
                kind="charge",
                amount=payment.amount,
                status="succeeded",
                occurred_at=payment.at,
                payment_id=session.payment_id,
            )
            for session, payment in await self._sessions.payments_on(day)
        ]

    @staticmethod
    def _check(request: AuthorizeRequest) -> None:
        kind = OperationKind.AUTHORIZE
        if request.amount.currency not in HESABPAY_CAPABILITIES.currencies:
            raise _refusal(kind, "currency_not_supported", "HesabPay takes AFN only", sent=False)
        if request.payment_method_type not in HESABPAY_CAPABILITIES.payment_method_types:
            message = f"{request.payment_method_type} payments are not supported"
            raise _refusal(kind, "payment_method_not_supported", message, sent=False)
        if request.amount.is_zero():
            raise _refusal(kind, "amount_too_small", "amount must be positive", sent=False)

    async def _create(self, session: CheckoutSession, request: AuthorizeRequest) -> CheckoutSession:
        credentials = await self._credentials()
        name = request.description or (
            f"Booking {request.booking_reference}" if request.booking_reference else "Payment"
        )
        item: dict[str, JsonValue] = {
            "id": session.session_id,
            "name": name[:_ITEM_NAME_LENGTH],
            "price": request.amount.to_decimal_string(),
        }
        body: dict[str, JsonValue] = {"items": [item]}
        if request.customer_email:
            body["email"] = request.customer_email
        if request.return_url:
            body["redirect_success_url"] = body["redirect_failure_url"] = request.return_url
        log = _log.bind(session_id=session.session_id, payment_id=session.payment_id)
        try:
            answer = await self._client.call(
                CREATE_SESSION_PATH,
                body,
                api_key=credentials.api_key,
                operation=OperationKind.AUTHORIZE,
                name="create-session",
            )
            url = expect_success(answer, OperationKind.AUTHORIZE).get("url")
        except ProcessorError as exc:
            log.warning(
                "hesabpay_checkout_not_created", vendor_code=exc.vendor_code, error=exc.message
            )
            if isinstance(exc, DeclinedError):
                await self._sessions.refuse(session.session_id, exc.vendor_code)
            raise
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            log.warning("hesabpay_checkout_without_url", detail=answer.describe())
            raise _refusal(
                OperationKind.AUTHORIZE,
                "malformed_response",
                f"{answer.describe()}: no checkout url",
                sent=True,
            )
        opened = await self._sessions.open(session.session_id, url)
        log.info("hesabpay_checkout_created")
        return opened

    async def _session(self, reference: str, operation: OperationKind) -> CheckoutSession:
        session = await self._sessions.get(reference)
        if session is None:
            raise _refusal(operation, "unknown_session", "no checkout of ours", sent=False)
        return session


def _authorization(session: CheckoutSession) -> OperationResult:
    """The authorization's outcome as the stored checkout shows it."""
    if session.status == "open" and session.url is not None:
        return ActionRequired(session.session_id, session.url, "redirect")
    if session.status == "paid":
        return Approved(session.session_id, session.amount, captured=True)
    code = session.vendor_code if session.status in {"refused", "failed"} else None
    raise _refusal(
        OperationKind.AUTHORIZE,
        code or "checkout_closed",
        f"the checkout is {session.status}",
        sent=session.status != "abandoned",
    )


def _inquiry_answer(kind: OperationKind, session: CheckoutSession) -> InquiryResult:
    """What an inquiry about a ``kind`` operation on a created checkout finds."""
    if kind is OperationKind.AUTHORIZE:
        try:
            return _authorization(session)
        except ProcessorError as refused:
            return Failed(refused.code, refused.vendor_code, refused.message)
    paid = session.status == "paid" and session.transaction_id is not None
    if kind is OperationKind.CAPTURE and paid and session.transaction_id is not None:
        return Approved(session.transaction_id, session.amount)
    if kind is OperationKind.VOID and session.status == "abandoned":
        return Approved(session.session_id, Money.zero(session.amount.currency))
    if kind is OperationKind.VOID and paid:
        return _failed(kind, "checkout_paid", "the customer paid")
    return NotFound()  # the operation never took effect
