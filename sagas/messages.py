"""What a payment saga reacts to: commands, operation outcomes, timers, operators.

Commands arrive already validated and de-duplicated (same message, same idempotency key);
the saga decides whether they make sense for the payment as it stands. Outcomes name the
operation they answer by its ``seq``; an outcome for an operation that already has one
(a late webhook, a replayed response, a second inquiry) changes nothing.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sagas.model import SagaPolicy, TimerKind
from schemas.commands import (
    AuthorizePayment,
    CancelPayment,
    CapturePayment,
    RefundPayment,
    VoidPayment,
)
from schemas.events import FailureCode
from schemas.processors import Processor


@dataclass(frozen=True, slots=True)
class Authorize:
    """An authorize command, with the processors routing chose for it, best first."""

    command: AuthorizePayment
    candidates: tuple[Processor, ...]
    policy: SagaPolicy = SagaPolicy()  # noqa: RUF009 (an immutable value object)


@dataclass(frozen=True, slots=True)
class Capture:
    """A capture command."""

    command: CapturePayment


@dataclass(frozen=True, slots=True)
class Void:
    """A void command."""

    command: VoidPayment


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund command."""

    command: RefundPayment


@dataclass(frozen=True, slots=True)
class Cancel:
    """A cancel command: compensate whatever the payment holds."""

    command: CancelPayment


@dataclass(frozen=True, slots=True)
class Succeeded:
    """The operation took effect at the vendor."""

    seq: int
    reference: str
    amount: int
    expires_at: datetime | None = None
    captured: bool = False
    """For an authorization: the funds were captured in the same step."""


@dataclass(frozen=True, slots=True)
class ActionNeeded:
    """The authorization waits for the customer (a redirect or 3-D Secure)."""

    seq: int
    reference: str
    redirect_url: str
    action: Literal["redirect", "three_ds"]


@dataclass(frozen=True, slots=True)
class Declined:
    """The vendor refused the operation; nothing moved.

    ``try_next``: the refusal is one another processor might not make, and the request
    was never applied here; only then may an authorization fail over.
    """

    seq: int
    code: FailureCode
    message: str
    try_next: bool = False
    retryable: bool = False
    """Whether the sender may try the same payment again later."""


@dataclass(frozen=True, slots=True)
class InDoubt:
    """The request may have taken effect; its outcome is unknown."""

    seq: int


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A status inquiry could not tell (the vendor still processing, or unreachable)."""

    seq: int


@dataclass(frozen=True, slots=True)
class NotReceived:
    """A status inquiry found that the vendor never received the request."""

    seq: int


@dataclass(frozen=True, slots=True)
class ManualRefund:
    """The processor has no refund API: an operator pays the money back by hand."""

    seq: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A saga timer came due; ``due_at`` (when known) guards against a stale firing."""

    kind: TimerKind
    seq: int = 0
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OperatorResolved:
    """An operator settled an operation's outcome (after checking the vendor's dashboard)."""

    seq: int
    succeeded: bool
    reference: str | None
    note: str


@dataclass(frozen=True, slots=True)
class RetryCompensation:
    """An operator asks the saga to try a failed cancellation again."""

    note: str


CommandMessage = Authorize | Capture | Void | Refund | Cancel
Outcome = Succeeded | ActionNeeded | Declined | InDoubt | Unresolved | NotReceived | ManualRefund
Message = CommandMessage | Outcome | TimerFired | OperatorResolved | RetryCompensation
