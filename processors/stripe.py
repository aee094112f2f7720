"""``StripeAdapter``: the ``PaymentPort`` for Stripe, through the official SDK (async).

An authorization is a PaymentIntent created with ``confirm=true`` (manual or automatic
capture) whose metadata carries our payment id, booking reference and the request's
idempotency key; a capture captures it (``amount_to_capture``; ``final_capture=false``
keeps the rest capturable); a void cancels it; a refund is a Refund against it
(``request.reference`` is the PaymentIntent id). ``processors.stripe_client`` sends the
calls (one client per API key, our idempotency key on every POST, ``Stripe-Account`` for
Connect, no SDK retries); ``stripe_mapping`` and ``stripe_ledger`` read the answers;
``stripe_errors`` translates failures through the taxonomy; ``stripe_inquiry`` answers
status inquiries; ``stripe_webhooks`` verifies and maps webhooks.

A response Stripe would not send (a missing field, an unknown status, an amount other
than asked) is a ``ProcessorError`` naming the field: in doubt after a write, since the
write may have taken effect, retryable after a read.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeVar

from processors import stripe_errors, stripe_webhooks
from processors.errors import ProcessorError, WebhookRejected
from processors.port import (
    Approved,
    AuthorizeRequest,
    Capabilities,
    CaptureRequest,
    CredentialSource,
    InquiryRequest,
    InquiryResult,
    OperationKind,
    OperationResult,
    RefundRequest,
    VoidRequest,
    WebhookRequest,
)
from processors.stripe_client import Answer, StripeTransport, read
from processors.stripe_errors import Call
from processors.stripe_inquiry import PAGE_SIZE, Inquiries
from processors.stripe_ledger import list_page, read_refund, refund_params, refund_result
from processors.stripe_ledger import vendor_transaction as transaction_line
from processors.stripe_mapping import (
    CAPABILITIES,
    Processing,
    Refusal,
    UnsupportedAmountError,
    authorization_result,
    authorize_params,
    cancel_params,
    capture_params,
    capture_result,
    read_intent,
    void_result,
)
from schemas.clock import Clock
from schemas.notifications import Notification, VendorTransaction
from schemas.processors import Processor

_R = TypeVar("_R")
_P = TypeVar("_P")

if TYPE_CHECKING:
    from stripe.params import BalanceTransactionListParams

__all__ = ["StripeAdapter"]

_CREATE = Call(OperationKind.AUTHORIZE, "payment_intents.create", write=True)
_CAPTURE = Call(OperationKind.CAPTURE, "payment_intents.capture", write=True)
_CANCEL = Call(OperationKind.VOID, "payment_intents.cancel", write=True)
_REFUND = Call(OperationKind.REFUND, "refunds.create", write=True)
_LEDGER = Call(OperationKind.AUTHORIZE, "balance_transactions.list", write=False)
"""The daily list is classified as a read; only the ``*`` rules apply to it."""


def _settle(call: Call, outcome: OperationResult | Refusal | Processing) -> OperationResult:
    if isinstance(outcome, Refusal):
        raise stripe_errors.refused(call, outcome.code, outcome.message)
    if isinstance(outcome, Processing):
        raise stripe_errors.pending(call, outcome.status)
    return outcome


def _differs(call: Call, answer: Answer, what: str) -> ProcessorError:
    detail = f"{what} differs from the request"
    return stripe_errors.malformed(call, detail, answer.status, answer.request_id)


class StripeAdapter:
    """One tenant's Stripe account (its own, or a Connect account), as a ``PaymentPort``."""

    def __init__(
        self,
        credentials: CredentialSource,
        *,
        base_url: str | None,
        clock: Clock,
        timeout_s: float = 20,
    ) -> None:
        """Talk to ``base_url`` (None: Stripe's API) with ``credentials`` resolved per call."""
        self._transport = StripeTransport(credentials, base_url=base_url, timeout_s=timeout_s)
        self._inquiries = Inquiries(self._transport, clock)
        self._clock = clock

    @property
    def processor(self) -> Processor:
        """Stripe."""
        return Processor.STRIPE

    @property
    def capabilities(self) -> Capabilities:
        """Cards, manual and partial capture, refunds, voids; Stripe's currencies we know."""
        return CAPABILITIES

    async def aclose(self) -> None:
        """Close the HTTP connections (the adapter may be used again afterwards)."""
        await self._transport.aclose()

    async def authorize(self, request: AuthorizeRequest) -> OperationResult:
        """Create and confirm a PaymentIntent: approved, waiting for 3-D Secure, or an error."""
        params = _params(_CREATE, authorize_params, request)
        answer = await self._transport.send(
            _CREATE,
            lambda client, options: client.v1.payment_intents.create_async(params, options),
            idempotency_key=request.idempotency_key,
        )
        intent = read(_CREATE, answer, read_intent)
        if intent.amount != request.amount:
            raise _differs(_CREATE, answer, "payment_intent.amount")
        return _settle(_CREATE, authorization_result(intent))

    async def capture(self, request: CaptureRequest) -> Approved:
        """Capture ``request.amount`` of the PaymentIntent ``request.reference``."""
        params = _params(_CAPTURE, capture_params, request)
        answer = await self._transport.send(
            _CAPTURE,
            lambda client, options: client.v1.payment_intents.capture_async(
                request.reference, params, options
            ),
            idempotency_key=request.idempotency_key,
        )
        return read(
            _CAPTURE, answer, lambda data: capture_result(read_intent(data), request.amount)
        )

    async def void(self, request: VoidRequest) -> Approved:
        """Cancel the PaymentIntent ``request.reference``, releasing what it holds."""
        answer = await self._transport.send(
            _CANCEL,
            lambda client, options: client.v1.payment_intents.cancel_async(
                request.reference, cancel_params(request), options
            ),
            idempotency_key=request.idempotency_key,
        )
        return read(_CANCEL, answer, lambda data: void_result(read_intent(data)))

    async def refund(self, request: RefundRequest) -> Approved:
        """Refund ``request.amount`` of the PaymentIntent ``request.reference``."""
        params = _params(_REFUND, refund_params, request)
        answer = await self._transport.send(
            _REFUND,
            lambda client, options: client.v1.refunds.create_async(params, options),
            idempotency_key=request.idempotency_key,
        )
        refund = read(_REFUND, answer, read_refund)
        if refund.amount != request.amount:
            raise _differs(_REFUND, answer, "refund.amount")
        result = refund_result(refund)
        if isinstance(result, Refusal):
            raise stripe_errors.refused(_REFUND, result.code, result.message)
        return result

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """What became of an operation whose response was lost (see ``stripe_inquiry``)."""
        return await self._inquiries.inquire(request)

    async def parse_webhook(self, webhook: WebhookRequest) -> Notification:
        """Verify ``Stripe-Signature`` with the account's secret and normalize the event.

        An event from another connected account than the tenant's is a ``mismatch``.
        """
        credentials = await self._transport.credentials()
        if credentials.webhook_secret is None:
            raise WebhookRejected("bad_signature", "no webhook secret is configured")
        notification = stripe_webhooks.parse(
            webhook.body,
            webhook.headers.get(stripe_webhooks.SIGNATURE_HEADER),
            credentials.webhook_secret.get_secret_value(),
            self._clock(),
        )
        if notification.account is not None and notification.account != credentials.account:
            raise WebhookRejected("mismatch", "the event belongs to another connected account")
        return notification

    async def list_transactions(self, day: date) -> list[VendorTransaction]:
        """The balance transactions created on ``day`` (UTC), every page of them."""
        start = datetime.combine(day, time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        params: BalanceTransactionListParams = {
            "limit": PAGE_SIZE,
            "created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())},
            "expand": ["data.source"],
        }
        lines: list[VendorTransaction] = []
        while True:
            answer = await self._transport.send(
                _LEDGER,
                lambda client, options: client.v1.balance_transactions.list_async(params, options),
                idempotency_key=None,
            )
            items, more = read(
                _LEDGER, answer, lambda data: list_page(data, "balance_transactions")
            )
            lines.extend(read(_LEDGER, Answer(item), transaction_line) for item in items)
            if not more or not items:
                return lines
            params["starting_after"] = str(items[-1].get("id"))


def _params(operation: Call, build: Callable[[_R], _P], request: _R) -> _P:
    """The request's Stripe parameters; an amount Stripe cannot take is refused unsent."""
    try:
        return build(request)
    except UnsupportedAmountError as exc:
        raise stripe_errors.not_sent(operation, "currency_not_supported", str(exc)) from exc
