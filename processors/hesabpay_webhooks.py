"""HesabPay webhooks: read, verify by asking HesabPay, cross-check, normalize.

HesabPay signs a webhook, but the signature covers neither the amount nor the outcome, and
it can only be checked by calling ``POST /api/v1/hesab/webhooks/verify-signature`` with the
signature and the timestamp. So a webhook passes, in this order:

1. JSON with the fields we use (else ``malformed``; so is a card number in any field but
   the hex identifiers);
2. a timestamp within ``TOLERANCE`` of our clock (else ``stale``);
3. a 64-hex signature that HesabPay confirms (else ``bad_signature``);
4. a (signature, transaction id) pair never seen (else ``replayed``; the same signature
   with another transaction id is a body altered around a captured signature);
5. exactly one checkout of ours named by the memo or an item id, and the same amount as
   that checkout (else ``mismatch``).

When HesabPay cannot be asked (unreachable, 5xx, 429, a timeout, an unreadable answer, or
it refuses our API key) there is no verdict: ``RetryableError``. The webhook endpoint then
answers 5xx and stores nothing, and HesabPay delivers the webhook again later. A
``WebhookRejected`` is a verdict: 400, nothing stored.

A verified outcome is recorded on its checkout before the notification is returned, so an
inquiry finds it even if storing the notification fails afterwards. A success settles the
checkout (``captured``); a failure after a success changes nothing (``ignored``): a paid
payment is never downgraded. A success after a success with another transaction id is a
second payment: it is reported (the saga ignores it) and listed for reconciliation, which
flags it.

Not covered, by HesabPay's design: a webhook whose ``status_code`` was altered before we
saw its first delivery. TLS, the replay store and daily reconciliation against the
dashboard export are the defences. ``transaction_date`` without an offset is read as UTC
(an assumption until HesabPay documents the format).
"""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from processors.errors import ProcessorError, RetryableError, WebhookRejected
from processors.hesabpay_sessions import (
    CheckoutPayment,
    CheckoutSession,
    CheckoutSessions,
    ReplayStore,
)
from processors.hesabpay_wire import SUCCESS, HesabPayClient
from processors.port import CredentialSource, OperationKind, WebhookRequest
from schemas.cards import find_card_number
from schemas.clock import Clock
from schemas.money import Money, MoneyError
from schemas.notifications import Notification, NotificationKind
from schemas.processors import Processor

TOLERANCE: Final = timedelta(seconds=300)
VERIFY_PATH: Final = "/api/v1/hesab/webhooks/verify-signature"
CURRENCY: Final = "AFN"

_SIGNATURE: Final = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS: Final = re.compile(r"[0-9]{1,12}")
_IDENTIFIERS: Final = frozenset({"signature", "transaction_id", "memo", "items"})
_CONFIGURATION_STATUSES: Final = frozenset({401, 403})
_VERDICT_STATUSES: Final = frozenset({200, 400})
_log = structlog.get_logger(__name__)


class _Item(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str | None = None


class HesabPayWebhook(BaseModel):
    """The fields of HesabPay's webhook the gateway reads; others are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status_code: StrictInt
    success: StrictBool
    transaction_id: str = Field(min_length=1, max_length=255)
    amount: str
    signature: str
    timestamp: str
    memo: str | None = None
    transaction_date: str | None = None
    items: list[_Item] = Field(default_factory=list)

    @field_validator("amount", "timestamp", mode="before")
    @classmethod
    def _number_as_text(cls, value: object) -> object:
        if isinstance(value, int | Decimal) and not isinstance(value, bool):
            return str(value)
        return value

    @property
    def succeeded(self) -> bool:
        """Whether the checkout attempt succeeded (``status_code`` 10)."""
        return self.status_code == SUCCESS


def _without_identifiers(payload: object) -> object:
    """``payload`` less its hex identifiers, whose digit runs can pass for card numbers.

    A 64-hex signature holds a Luhn-valid run of 13 or more digits about once in a hundred
    webhooks; transaction and item ids are hex too. Every other field is scanned.
    """
    if not isinstance(payload, dict):
        return payload
    kept = {key: value for key, value in payload.items() if key not in _IDENTIFIERS}
    items = payload.get("items")
    if isinstance(items, list):
        kept["items"] = [
            {k: v for k, v in item.items() if k != "id"} if isinstance(item, dict) else item
            for item in items
        ]
    return kept


def read(body: bytes) -> HesabPayWebhook:
    """The webhook in ``body``; ``WebhookRejected("malformed")`` if it is not one."""
    try:
        payload = json.loads(body, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookRejected("malformed", f"not JSON: {type(exc).__name__}") from exc
    if (path := find_card_number(_without_identifiers(payload))) is not None:
        raise WebhookRejected("malformed", f"card number found at {path}")
    try:
        webhook = HesabPayWebhook.model_validate(payload)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, error["loc"])) for error in exc.errors()})
        raise WebhookRejected("malformed", f"invalid fields: {', '.join(fields)[:200]}") from None
    if webhook.succeeded is not webhook.success:
        raise WebhookRejected("malformed", "status_code and success disagree")
    if not _UNIX_SECONDS.fullmatch(webhook.timestamp):
        raise WebhookRejected("malformed", "timestamp is not unix seconds")
    return webhook


def signed_at(webhook: HesabPayWebhook) -> datetime:
    """When HesabPay signed the webhook."""
    return datetime.fromtimestamp(int(webhook.timestamp), UTC)


def occurred_at(webhook: HesabPayWebhook) -> datetime:
    """When the payment happened: ``transaction_date``, else the signing time."""
    if webhook.transaction_date:
        try:
            moment = datetime.fromisoformat(webhook.transaction_date)
        except ValueError:
            return signed_at(webhook)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return signed_at(webhook)


def amount_of(webhook: HesabPayWebhook) -> Money:
    """The webhook's amount in AFN; ``malformed`` if it is not a plain decimal."""
    try:
        return Money.from_decimal_string(webhook.amount, CURRENCY)
    except MoneyError:
        raise WebhookRejected("malformed", "amount is not a decimal AFN amount") from None


class WebhookVerifier:
    """Turns HesabPay webhooks into notifications for one tenant's account."""

    def __init__(
        self,
        client: HesabPayClient,
        credentials: CredentialSource,
        *,
        clock: Clock,
        sessions: CheckoutSessions,
        replays: ReplayStore,
    ) -> None:
        """Verify through ``client`` with the tenant's key, against its stored checkouts."""
        self._client = client
        self._credentials = credentials
        self._clock = clock
        self._sessions = sessions
        self._replays = replays

    async def parse(self, request: WebhookRequest) -> Notification:
        """Verify and normalize ``request`` (see the module docstring)."""
        webhook = read(request.body)
        at = signed_at(webhook)
        if abs(self._clock() - at) > TOLERANCE:
            raise WebhookRejected("stale", "the webhook's timestamp is outside the tolerance")
        if not _SIGNATURE.fullmatch(webhook.signature):
            raise WebhookRejected("bad_signature", "the signature is not 64 hex digits")
        await self._verify(webhook)
        sighting = await self._replays.sight(webhook.signature.lower(), webhook.transaction_id, at)
        # The same signature on the same transaction is a redelivery: it parses to the same
        # event id again (the inbox stores it once), so a delivery whose storing failed
        # (503) is not refused when HesabPay retries it.
        if sighting == "conflict":
            raise WebhookRejected("replayed", "signature already seen with another transaction")
        session = await self._match(webhook)
        amount = amount_of(webhook)
        if amount != session.amount:
            raise WebhookRejected("mismatch", "amount differs from the checkout's amount")
        payment = CheckoutPayment(
            webhook.transaction_id,
            webhook.succeeded,
            amount,
            webhook.status_code,
            occurred_at(webhook),
        )
        after = await self._sessions.record_payment(session.session_id, payment)
        return self._notification(session, after, payment)

    async def _verify(self, webhook: HesabPayWebhook) -> None:
        credentials = await self._credentials()
        body = {"signature": webhook.signature, "timestamp": webhook.timestamp}
        try:
            answer = await self._client.call(
                VERIFY_PATH,
                body,
                api_key=credentials.api_key,
                operation=OperationKind.AUTHORIZE,
                name="verify-signature",
            )
        except ProcessorError as exc:
            raise self._unverified(exc.message, exc.vendor_code, None) from exc
        if answer.succeeded:
            return
        if answer.http_status in _CONFIGURATION_STATUSES:
            raise self._unverified(answer.describe(), answer.vendor_code(), None, configured=False)
        if answer.http_status in _VERDICT_STATUSES and answer.status_code is not None:
            raise WebhookRejected("bad_signature", "HesabPay did not confirm the signature")
        raise self._unverified(answer.describe(), answer.vendor_code(), answer.retry_after)

    @staticmethod
    def _unverified(
        context: str, vendor_code: str, retry_after: float | None, *, configured: bool = True
    ) -> RetryableError:
        _log.warning("hesabpay_webhook_unverified", vendor_code=vendor_code, detail=context)
        return RetryableError(
            f"could not verify the webhook: {context}",
            code="processor_unavailable" if configured else "not_configured",
            vendor_code=vendor_code,
            retry_after=retry_after,
        )

    async def _match(self, webhook: HesabPayWebhook) -> CheckoutSession:
        names = {webhook.memo, *(item.id for item in webhook.items)} - {None, ""}
        found: dict[str, CheckoutSession] = {}
        for name in sorted(n for n in names if n is not None):
            session = await self._sessions.get(name)
            if session is not None:
                found[session.session_id] = session
        if len(found) != 1:
            what = "no checkout of ours" if not found else "several checkouts"
            raise WebhookRejected("mismatch", f"the webhook names {what}")
        return next(iter(found.values()))

    @staticmethod
    def _notification(
        before: CheckoutSession, after: CheckoutSession, payment: CheckoutPayment
    ) -> Notification:
        log = _log.bind(session_id=after.session_id, transaction_id=payment.transaction_id)
        kind: NotificationKind
        if payment.succeeded:
            if before.status == "paid" and before.transaction_id != payment.transaction_id:
                log.warning("hesabpay_second_payment", first=before.transaction_id)
            kind, reference, authorization = "captured", payment.transaction_id, after.session_id
        elif after.status == "paid":
            log.info("hesabpay_failure_after_payment_ignored")
            kind, reference, authorization = "ignored", after.session_id, None
        else:
            kind, reference, authorization = "authorization_failed", after.session_id, None
        return Notification(
            processor=Processor.HESABPAY,
            event_id=payment.transaction_id,
            vendor_type=f"status_code_{payment.status_code}",
            kind=kind,
            reference=reference,
            authorization_reference=authorization,
            payment_id=after.payment_id,
            amount=payment.amount,
            occurred_at=payment.at,
        )
