"""Status inquiries at Stripe: what became of an operation whose response was lost.

An inquiry never resends the operation: with the same key that would apply it if it never
arrived. Instead:

- an authorization with a known reference is read back (``GET /v1/payment_intents/{id}``);
  one whose response never came (no reference) is found by listing the newest
  PaymentIntents (100 a page, created within ``SEARCH_WINDOW``, at most ``SEARCH_PAGES``
  pages) and matching ``metadata[idempotency_key]``, which every create carries. Stripe's
  ``payment_intents.search`` would do it in one call, but search is eventually consistent
  (a fresh intent can be missing for a minute, which would read as "never received") and
  the sandbox has no search; listing is immediately consistent;
- a capture or a void is judged by the PaymentIntent's state and totals;
- a refund is found among the PaymentIntent's refunds by the key in its metadata.
"""

from datetime import timedelta
from typing import TYPE_CHECKING, Final

from processors import stripe_errors
from processors.port import (
    Failed,
    InquiryRequest,
    InquiryResult,
    NotFound,
    OperationKind,
    StillPending,
)
from processors.stripe_client import Answer, StripeTransport, read
from processors.stripe_errors import Call
from processors.stripe_ledger import list_page, read_refund, refund_inquiry, with_key
from processors.stripe_mapping import (
    Intent,
    Json,
    Processing,
    Refusal,
    authorization_result,
    capture_inquiry,
    read_intent,
    void_inquiry,
)
from processors.taxonomy import classify
from schemas.clock import Clock
from schemas.processors import Processor

if TYPE_CHECKING:
    from stripe.params import PaymentIntentListParams

SEARCH_WINDOW: Final = timedelta(days=8)
"""How far back a lost authorization is looked for (beyond Stripe's 7-day hold)."""
SEARCH_PAGES: Final = 10
PAGE_SIZE: Final = 100


def _failed(code: str, message: str, kind: OperationKind) -> Failed:
    return Failed(classify(Processor.STRIPE, kind, code).failure_code, code, message[:200])


class Inquiries:
    """Answers ``PaymentPort.inquire`` over a transport."""

    def __init__(self, transport: StripeTransport, clock: Clock) -> None:
        """Ask through ``transport``; ``clock`` bounds the search window."""
        self._transport = transport
        self._clock = clock

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """What became of the operation sent with ``request.idempotency_key``."""
        if request.kind is OperationKind.AUTHORIZE:
            return await self._authorization(request)
        if request.reference is None:
            return NotFound()  # no authorization was ever known, so nothing was sent
        if request.kind is OperationKind.REFUND:
            return await self._refund(request, request.reference)
        intent = await self.retrieve(request.kind, request.reference)
        if request.kind is OperationKind.CAPTURE:
            return capture_inquiry(intent, request.amount)
        return void_inquiry(intent)

    async def retrieve(self, kind: OperationKind, intent_id: str) -> Intent:
        """The PaymentIntent ``intent_id``, with its latest charge."""
        call = Call(kind, "payment_intents.retrieve", write=False)
        answer = await self._transport.send(
            call,
            lambda client, options: client.v1.payment_intents.retrieve_async(
                intent_id, {"expand": ["latest_charge"]}, options
            ),
            idempotency_key=None,
        )
        return read(call, answer, read_intent)

    async def _authorization(self, request: InquiryRequest) -> InquiryResult:
        if request.reference is not None:
            intent = await self.retrieve(OperationKind.AUTHORIZE, request.reference)
        else:
            found = await self._find_intent(request.idempotency_key)
            if found is None:
                return NotFound()
            call = Call(OperationKind.AUTHORIZE, "payment_intents.list", write=False)
            intent = read(call, Answer(found), read_intent)
        outcome = authorization_result(intent)
        if isinstance(outcome, Processing):
            return StillPending()
        if isinstance(outcome, Refusal):
            if intent.status == "requires_action":  # waiting, without a URL we could give
                return StillPending()
            return _failed(outcome.code, outcome.message, OperationKind.AUTHORIZE)
        return outcome

    async def _find_intent(self, key: str) -> Json | None:
        call = Call(OperationKind.AUTHORIZE, "payment_intents.list", write=False)
        since = int((self._clock() - SEARCH_WINDOW).timestamp())
        params: PaymentIntentListParams = {"limit": PAGE_SIZE, "created": {"gte": since}}
        for _ in range(SEARCH_PAGES):
            answer = await self._transport.send(
                call,
                lambda client, options: client.v1.payment_intents.list_async(params, options),
                idempotency_key=None,
            )
            items, more = read(call, answer, lambda data: list_page(data, "payment_intents"))
            found = with_key(items, key)
            if found is not None or not more or not items:
                return found
            params["starting_after"] = str(items[-1].get("id"))
        raise stripe_errors.inconclusive(call, f"not among the newest {SEARCH_PAGES} pages")

    async def _refund(self, request: InquiryRequest, intent_id: str) -> InquiryResult:
        call = Call(OperationKind.REFUND, "refunds.list", write=False)
        answer = await self._transport.send(
            call,
            lambda client, options: client.v1.refunds.list_async(
                {"payment_intent": intent_id, "limit": PAGE_SIZE}, options
            ),
            idempotency_key=None,
        )
        items, _ = read(call, answer, lambda data: list_page(data, "refunds"))
        found = with_key(items, request.idempotency_key)
        refund = None if found is None else read(call, Answer(found), read_refund)
        result = refund_inquiry(refund)
        if isinstance(result, Refusal):
            return _failed(result.code, result.message, OperationKind.REFUND)
        return result
