"""``PaymentPort`` for PayPal (Orders v2 and Payments v2) over httpx.

Mapping, operation by operation:

- **authorize**: an order, approved by the payer (``ActionRequired`` until then), then
  authorized (``processors.paypal_orders``). Automatic capture: intent CAPTURE, and the
  reference is the capture's id.
- **capture**: ``/v2/payments/authorizations/{id}/capture`` with ``final_capture``;
  **void**: ``.../void``; **refund**: over the payment's captures
  (``processors.paypal_refunds``).
- **inquire**: AUTHORIZE reads the order; VOID reads the authorization; REFUND finds its
  parts by ``custom_id``. CAPTURE resends the capture with its ``PayPal-Request-Id``,
  PayPal's one lookup of a capture by our key: PayPal answers a capture it made from its
  record and makes one it never received (not final, so a later capture stays possible),
  which is what the saga's resend would do next.
- **parse_webhook**, **list_transactions**: ``processors.paypal_webhooks``,
  ``processors.paypal_report``.

Every POST carries a ``PayPal-Request-Id`` derived from the idempotency key; an answer that
PayPal replays for our id but that does not match the request is ``idempotency_mismatch``.
Tokens, HTTP and errors: ``processors.paypal_client`` and ``processors.paypal_errors``.
"""

from datetime import date
from typing import Final

import httpx
import structlog

from processors.errors import DeclinedError, ProcessorError, WebhookRejected
from processors.paypal_client import PayPalClient
from processors.paypal_errors import Call, mismatch, refused, segment
from processors.paypal_mapping import (
    CAPABILITIES,
    CAPTURED,
    CURRENCIES,
    Payment,
    amount_json,
    malformed,
    payment,
    request_id,
)
from processors.paypal_orders import OrderFlow
from processors.paypal_refunds import RefundFlow
from processors.paypal_report import list_transactions
from processors.paypal_webhooks import DEFAULT_CERT_HOSTS, WebhookVerifier, notification
from processors.port import (
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

__all__ = ["DEFAULT_CERT_HOSTS", "PayPalAdapter"]

_log = structlog.get_logger(__name__)
_P: Final = Processor.PAYPAL


class PayPalAdapter:
    """One tenant's PayPal account (a REST app's ``client_id:secret``)."""

    def __init__(  # noqa: PLR0913 (the adapter's dependencies, all keyword-only)
        self,
        credentials: CredentialSource,
        *,
        base_url: str,
        clock: Clock,
        http: httpx.AsyncClient | None = None,
        cert_hosts: frozenset[str] = DEFAULT_CERT_HOSTS,
        timeout_s: float = 20.0,
        sandbox_cert_origin: str | None = None,
    ) -> None:
        """Talk to ``base_url`` with ``credentials`` resolved per call.

        ``sandbox_cert_origin`` (sandbox mode only) also allows webhook certificates from
        that origin over plain http; PayPal's own hosts (``cert_hosts``) always stay allowed.
        """
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()
        self._client = PayPalClient(
            credentials, base_url=base_url, clock=clock, http=self._http, timeout_s=timeout_s
        )
        self._orders = OrderFlow(self._client)
        self._refunds = RefundFlow(self._client)
        self._verifier = WebhookVerifier(
            http=self._http,
            clock=clock,
            cert_hosts=cert_hosts,
            sandbox_origin=sandbox_cert_origin,
            timeout_s=timeout_s,
            online=self._verify_online,
        )

    @property
    def processor(self) -> Processor:
        """PayPal."""
        return _P

    @property
    def capabilities(self) -> Capabilities:
        """PayPal wallet and cards, manual and partial capture, refunds, void."""
        return CAPABILITIES

    async def aclose(self) -> None:
        """Close the HTTP client, if this adapter made it."""
        if self._owns_http:
            await self._http.aclose()

    async def authorize(self, request: AuthorizeRequest) -> OperationResult:
        """Create the order; authorize it if approved, else ask for the payer's approval."""
        if request.amount.currency not in CURRENCIES:
            raise to_error(
                classify(_P, OperationKind.AUTHORIZE, "CURRENCY_NOT_SUPPORTED"),
                f"PayPal does not take {request.amount.currency} here",
                vendor_code="CURRENCY_NOT_SUPPORTED",
                sent=False,
            )
        return await self._orders.authorize(request)

    async def capture(self, request: CaptureRequest) -> Approved:
        """Capture ``amount`` of the authorization; ``final`` releases the rest."""
        call = Call(OperationKind.CAPTURE)
        made = await self._capture(
            request.reference, request.idempotency_key, request.amount, call, final=request.final
        )
        if made.amount != request.amount:
            raise mismatch(call)
        if made.status in CAPTURED or made.status == "PENDING":
            return Approved(made.id, made.amount)
        if made.status in {"DECLINED", "FAILED"}:
            raise refused(call, made.response_code or made.status)
        raise malformed(f"unknown capture status {made.status[:40]}")

    async def void(self, request: VoidRequest) -> Approved:
        """Void the uncaptured authorization."""
        call = Call(OperationKind.VOID)
        path = f"/v2/payments/authorizations/{segment(request.reference, call)}"
        key = request_id(request.idempotency_key)
        data = await self._client.post(f"{path}/void", call, {}, request_id=key)
        voided = payment(data or await self._client.get(path, call), "authorization")
        if voided.status != "VOIDED":
            raise malformed(f"the void left the authorization {voided.status[:40]}")
        return Approved(voided.id, voided.amount)

    async def refund(self, request: RefundRequest) -> Approved:
        """Refund ``amount`` over the payment's captures, oldest first."""
        return await self._refunds.refund(request)

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """What became of the operation sent with ``request.idempotency_key``."""
        if request.kind is OperationKind.AUTHORIZE:
            return await self._orders.inquire(request)
        if request.kind is OperationKind.REFUND:
            return await self._refunds.inquire(request)
        if request.kind is OperationKind.VOID:
            call = Call(OperationKind.VOID)
            path = f"/v2/payments/authorizations/{segment(request.reference or '', call)}"
            found = payment(await self._client.get(path, call), "authorization")
            return Approved(found.id, found.amount) if found.status == "VOIDED" else NotFound()
        call = Call(OperationKind.CAPTURE)
        try:
            made = await self._capture(
                request.reference or "", request.idempotency_key, request.amount, call, final=False
            )
        except DeclinedError as exc:
            return Failed(exc.code, exc.vendor_code, exc.message)
        if made.amount != request.amount:
            raise ProcessorError("PayPal's capture for this key has another amount")
        if made.status in {"DECLINED", "FAILED"}:
            error = refused(call, made.response_code or made.status)
            return Failed(error.code, error.vendor_code, error.message)
        return Approved(made.id, made.amount)

    async def parse_webhook(self, webhook: WebhookRequest) -> Notification:
        """Verify the webhook's signature for our webhook id, then normalize it."""
        webhook_id = (await self._client.credentials()).webhook_secret
        if webhook_id is None or not webhook_id.get_secret_value():
            raise WebhookRejected("bad_signature", "no PayPal webhook id is configured")
        try:
            await self._verifier.verify(webhook, webhook_id.get_secret_value())
        except WebhookRejected as rejected:
            _log.info("paypal_webhook_rejected", reason=rejected.reason, detail=str(rejected))
            raise
        return notification(webhook.body)

    async def list_transactions(self, day: date) -> list[VendorTransaction]:
        """The account's report lines of ``day`` (UTC), every page."""
        return await list_transactions(self._client, day)

    async def _capture(
        self, reference: str, key: str, amount: Money, call: Call, *, final: bool
    ) -> Payment:
        path = f"/v2/payments/authorizations/{segment(reference, call)}/capture"
        body: dict[str, object] = {"amount": amount_json(amount), "final_capture": final}
        return payment(
            await self._client.post(path, call, body, request_id=request_id(key)), "capture"
        )

    async def _verify_online(self, request: dict[str, object]) -> bool:
        path = "/v1/notifications/verify-webhook-signature"
        data = await self._client.post(
            path, Call(OperationKind.AUTHORIZE), request, request_id=None
        )
        return data.get("verification_status") == "SUCCESS"
