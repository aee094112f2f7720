"""An in-memory ``PaymentPort`` with scriptable outcomes, for saga tests and dev mode.

It behaves like a vendor with Stripe's idempotency rules: the first answer to a key (a
result or a refusal) is replayed for that key without applying anything twice; the same key
with other parameters is refused as ``idempotency_error``; a second request with a key
whose first request is still running gets a retryable 409. A failure that never reached
the vendor's ledger (a 5xx, a timeout before applying) stores nothing, so the same key
applies later. It keeps the vendor-side objects (authorizations, captures, refunds) and
enforces their money rules: no capture beyond what is capturable, no refund beyond what was
captured, nothing on a voided or settled authorization.

Outcomes are scripted per operation kind and consumed by new (non-replayed) calls only:
``fake.script(OperationKind.AUTHORIZE, Decline("insufficient_funds"), TimeoutAfterApply())``.
``storm(n)`` fails the next ``n`` calls of any kind. It runs on one event loop and needs no
locks: a key is recorded before the simulated latency, so two concurrent calls with one key
cannot both apply.
"""

import asyncio
import itertools
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal, TypeVar, cast

from processors import fake_webhooks
from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    RetryableError,
    TryNextError,
)
from processors.fake_ledger import FakeAuthorization, Ledger, default_capabilities, refuse
from processors.port import (
    Approved,
    AuthorizeRequest,
    Capabilities,
    CaptureRequest,
    Failed,
    InquiryRequest,
    InquiryResult,
    NotFound,
    OperationKind,
    OperationResult,
    RefundRequest,
    StillPending,
    VoidRequest,
    WebhookRequest,
)
from schemas.clock import Clock
from schemas.events import FailureCode
from schemas.notifications import Notification, VendorTransaction
from schemas.processors import Processor

_LINE_KINDS: dict[OperationKind, Literal["charge", "capture", "refund"]] = {
    OperationKind.AUTHORIZE: "charge",
    OperationKind.CAPTURE: "capture",
    OperationKind.REFUND: "refund",
}


@dataclass(frozen=True, slots=True)
class Decline:
    """The vendor refuses: ``DeclinedError`` with ``code``; the refusal is replayed."""

    code: FailureCode = "card_declined"
    vendor_code: str | None = None


@dataclass(frozen=True, slots=True)
class TryNext:
    """The vendor refuses in a way another might not: ``TryNextError``."""

    code: FailureCode = "processor_error"
    vendor_code: str | None = None


@dataclass(frozen=True, slots=True)
class Fail5xx:
    """The vendor fails before applying: ``RetryableError``; the same key works later."""

    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class TimeoutAfterApply:
    """The operation applies, then the answer is lost: ``InDoubtError``."""


@dataclass(frozen=True, slots=True)
class TimeoutBeforeApply:
    """The request is lost on the way: ``InDoubtError``, and the vendor has no trace of it."""


@dataclass(frozen=True, slots=True)
class RequireAction:
    """An authorization waits for the customer: ``ActionRequired`` (see ``complete_action``)."""

    url: str = "https://vendor.invalid/action"
    action: Literal["redirect", "three_ds"] = "redirect"


Behaviour = Decline | TryNext | Fail5xx | TimeoutAfterApply | TimeoutBeforeApply | RequireAction
Request = AuthorizeRequest | CaptureRequest | VoidRequest | RefundRequest | InquiryRequest
Q = TypeVar("Q", AuthorizeRequest, CaptureRequest, VoidRequest, RefundRequest)
R = TypeVar("R", bound=OperationResult)


@dataclass(slots=True)
class _Entry:
    """What the vendor remembers of one idempotency key."""

    kind: OperationKind
    request: Request
    done: bool = False
    result: OperationResult | None = None
    error: ProcessorError | None = None


def _copy(error: ProcessorError) -> ProcessorError:
    return type(error)(
        error.message,
        code=error.code,
        vendor_code=error.vendor_code,
        sent=error.sent,
        retry_after=error.retry_after,
    )


class FakeProcessor:
    """One processor held in memory, honouring idempotency keys as Stripe does."""

    def __init__(
        self,
        processor: Processor,
        *,
        clock: Clock,
        capabilities: Capabilities | None = None,
        latency: float = 0,
        webhook_secret: str = "whsec_fake",  # noqa: S107 (a test double's own secret)
    ) -> None:
        """A fake of ``processor``; each call takes ``latency`` seconds of simulated work."""
        self._processor = processor
        self._clock = clock
        self._webhook_secret = webhook_secret
        self._history: list[VendorTransaction] = []
        self._capabilities = capabilities or default_capabilities(processor)
        self._latency = latency
        self._ledger = Ledger(processor, self._capabilities, clock, itertools.count(1))
        self._entries: dict[str, _Entry] = {}
        self._scripts: defaultdict[OperationKind, deque[Behaviour]] = defaultdict(deque)
        self._storm: deque[ProcessorError] = deque()
        self._applied: Counter[OperationKind] = Counter()
        self._calls: list[Request] = []

    @property
    def processor(self) -> Processor:
        """Which processor this fakes."""
        return self._processor

    @property
    def capabilities(self) -> Capabilities:
        """What it can do."""
        return self._capabilities

    @property
    def calls(self) -> tuple[Request, ...]:
        """Every request received, replays and inquiries included, in order."""
        return tuple(self._calls)

    def applied(self, kind: OperationKind) -> int:
        """How many ``kind`` operations took effect (replays not counted)."""
        return self._applied[kind]

    def authorizations_for(self, payment_id: str) -> int:
        """How many authorizations the vendor holds for ``payment_id``."""
        return self._ledger.authorizations_for(payment_id)

    def authorization(self, reference: str) -> FakeAuthorization:
        """A copy of the authorization ``reference`` as the vendor holds it."""
        return replace(self._ledger.authorization(reference))

    def script(self, kind: OperationKind, *outcomes: Behaviour) -> None:
        """Queue ``outcomes`` for the next new ``kind`` calls, one per call."""
        if kind is not OperationKind.AUTHORIZE and any(
            isinstance(outcome, RequireAction) for outcome in outcomes
        ):
            raise ValueError("only an authorization can wait for the customer")
        self._scripts[kind].extend(outcomes)

    def storm(self, n: int, *, connect_error: bool = False) -> None:
        """Fail the next ``n`` calls of any kind (5xx, or refused connections: nothing sent)."""
        if connect_error:
            error = RetryableError("connection refused", vendor_code="connect_error", sent=False)
        else:
            error = RetryableError("vendor returned 503", vendor_code="http_5xx")
        self._storm.extend(_copy(error) for _ in range(n))

    def complete_action(self, reference: str) -> None:
        """The customer completes the action: the authorization is approved."""
        self._ledger.complete_action(reference)

    def fail_action(self, reference: str) -> None:
        """The customer fails or abandons the action: the authorization fails."""
        self._ledger.fail_action(reference)

    async def authorize(self, request: AuthorizeRequest) -> OperationResult:
        """Create an authorization (captured at once when capture is automatic or impossible)."""
        return await self._operate(OperationKind.AUTHORIZE, request, self._ledger.authorize)

    async def capture(self, request: CaptureRequest) -> Approved:
        """Capture part or all of what is capturable."""
        return await self._operate(OperationKind.CAPTURE, request, self._ledger.capture)

    async def void(self, request: VoidRequest) -> Approved:
        """Release an uncaptured (or still pending) authorization."""
        return await self._operate(OperationKind.VOID, request, self._ledger.void)

    async def refund(self, request: RefundRequest) -> Approved:
        """Refund part or all of what was captured."""
        return await self._operate(OperationKind.REFUND, request, self._ledger.refund)

    async def inquire(self, request: InquiryRequest) -> InquiryResult:
        """What became of the operation sent with ``request.idempotency_key``."""
        await self._arrive(request)
        entry = self._entries.get(request.idempotency_key)
        if entry is None or entry.kind is not request.kind:
            return NotFound()
        if not entry.done:
            return StillPending()
        if entry.error is not None:
            return Failed(entry.error.code, entry.error.vendor_code, entry.error.message)
        if entry.result is not None and request.kind is OperationKind.AUTHORIZE:
            return self._ledger.authorization_outcome(entry.result.reference)
        return cast("InquiryResult", entry.result)

    async def parse_webhook(self, webhook: WebhookRequest) -> Notification:
        """Verify and parse a webhook signed with this fake's secret."""
        return fake_webhooks.verify(webhook, self._webhook_secret, self._clock())

    def webhook(self, notification: Notification) -> WebhookRequest:
        """The signed webhook this fake sends for ``notification`` (for tests and dev)."""
        return fake_webhooks.sign(notification, self._webhook_secret, self._clock())

    async def list_transactions(self, day: date) -> list[VendorTransaction]:
        """The operations that took effect on ``day`` (UTC)."""
        return [entry for entry in self._history if entry.occurred_at.date() == day]

    def _record(self, kind: OperationKind, request: Request, result: object) -> None:
        if not isinstance(result, Approved):
            return
        payment_id = request.payment_id if isinstance(request, AuthorizeRequest) else None
        line_kind = _LINE_KINDS.get(kind, "other")
        self._history.append(
            VendorTransaction(
                processor=self._processor,
                reference=result.reference,
                kind=line_kind,
                amount=result.amount,
                status="succeeded",
                occurred_at=self._clock(),
                payment_id=payment_id,
            )
        )

    async def _arrive(self, request: Request) -> None:
        self._calls.append(request)
        if self._storm:
            raise self._storm.popleft()
        if self._latency > 0:
            await asyncio.sleep(self._latency)  # the vendor's simulated processing time

    async def _operate(self, kind: OperationKind, request: Q, apply: Callable[[Q], R]) -> R:
        self._calls.append(request)
        if self._storm:
            raise self._storm.popleft()
        key = request.idempotency_key
        if (entry := self._entries.get(key)) is not None:
            return cast("R", self._replay(entry, kind, request))
        entry = self._entries[key] = _Entry(kind, request)
        behaviour = self._scripts[kind].popleft() if self._scripts[kind] else None
        try:
            if self._latency > 0:
                await asyncio.sleep(self._latency)  # the vendor's simulated processing time
        except BaseException:
            del self._entries[key]  # cancelled on the way: the key is free again
            raise
        if isinstance(behaviour, Fail5xx | TimeoutBeforeApply):
            del self._entries[key]  # nothing reached the ledger: the key is free again
            raise self._unapplied(behaviour)
        lost = isinstance(behaviour, TimeoutAfterApply)
        try:
            result = self._apply(behaviour, request, apply)
        except DeclinedError as error:
            entry.done, entry.error = True, error
            if lost:
                raise InDoubtError("response lost after the vendor answered") from None
            raise
        except BaseException:
            del self._entries[key]
            raise
        entry.done, entry.result = True, result
        self._applied[kind] += 1
        self._record(kind, request, result)
        if lost:
            raise InDoubtError("read timeout: the operation may have been applied")
        return result

    def _apply(self, behaviour: Behaviour | None, request: Q, apply: Callable[[Q], R]) -> R:
        if isinstance(behaviour, Decline):
            raise refuse(behaviour.code, behaviour.vendor_code or behaviour.code, "declined")
        if isinstance(behaviour, TryNext):
            vendor_code = behaviour.vendor_code or behaviour.code
            raise TryNextError("refused here", code=behaviour.code, vendor_code=vendor_code)
        if isinstance(behaviour, RequireAction) and isinstance(request, AuthorizeRequest):
            action = self._ledger.authorize(request, redirect=(behaviour.url, behaviour.action))
            return cast("R", action)
        return apply(request)

    @staticmethod
    def _unapplied(behaviour: Fail5xx | TimeoutBeforeApply) -> ProcessorError:
        if isinstance(behaviour, Fail5xx):
            return RetryableError(
                "vendor returned 500", vendor_code="http_5xx", retry_after=behaviour.retry_after
            )
        return InDoubtError("read timeout: the operation may have been applied")

    @staticmethod
    def _replay(entry: _Entry, kind: OperationKind, request: Request) -> OperationResult:
        if entry.kind is not kind or entry.request != request:
            raise DeclinedError(
                "idempotency key reused with different parameters",
                code="invalid_request",
                vendor_code="idempotency_error",
            )
        if not entry.done:
            raise RetryableError(
                "a request with this idempotency key is in progress",
                vendor_code="idempotency_key_in_use",
            )
        if entry.error is not None:
            raise _copy(entry.error)
        return cast("OperationResult", entry.result)
