"""Which processors may take a payment, in the order to try them: pure selection, no I/O.

A tenant attaches processors, each with a precedence (lower goes first) and the
capabilities of its account there. ``candidates`` keeps the enabled ones that can take the
payment (currency, method, manual capture), orders them by precedence, and puts the
command's hint first when it is among them: a hint orders, it never adds a processor that
cannot take the payment.

A processor whose circuit breaker is open is left out, so the saga goes straight to the
next one. If every capable processor is open, they are all returned in the same order: the
saga's call is then refused by the breaker (``ProcessorUnavailable``, retryable) and the
payment fails as ``processor_unavailable``, which is true, instead of reading as "no
processor configured", which is not.

``should_try_next`` says whether a failure may move on to the next candidate: only when
this processor refused in a way another may not, or when nothing was sent. An in-doubt
request may have taken effect, so it never moves on.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from processors.errors import InDoubtError, ProcessorError, TryNextError
from processors.port import Capabilities, PaymentMethodType
from schemas.processors import Processor


@dataclass(frozen=True, slots=True)
class RouteOption:
    """A processor a tenant has attached, as routing sees it."""

    processor: Processor
    precedence: int
    capabilities: Capabilities
    enabled: bool = True


def candidates(  # noqa: PLR0913 (each keyword is one routing need, named at the call site)
    attachments: Sequence[RouteOption],
    *,
    currency: str,
    method: PaymentMethodType,
    manual_capture: bool,
    hint: Processor | None,
    is_open: Callable[[Processor], bool],
) -> tuple[Processor, ...]:
    """The processors to try for a payment, best first; empty if none can take it."""
    capable = sorted(
        (
            option
            for option in attachments
            if option.enabled
            and option.capabilities.supports(currency, method, manual_capture=manual_capture)
        ),
        key=lambda option: (option.processor != hint, option.precedence, option.processor),
    )
    ordered = tuple(dict.fromkeys(option.processor for option in capable))
    closed = tuple(processor for processor in ordered if not is_open(processor))
    return closed or ordered


def should_try_next(error: ProcessorError) -> bool:
    """Whether the saga may try the next candidate after ``error``."""
    if isinstance(error, InDoubtError):
        return False
    return isinstance(error, TryNextError) or not error.sent
