"""Routing: which processors may take a payment, in which order, and when to move on."""

from collections.abc import Callable
from dataclasses import replace

import pytest

from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    ProcessorUnavailable,
    RetryableError,
    TryNextError,
)
from processors.fake_ledger import default_capabilities
from processors.routing import RouteOption, candidates, should_try_next
from schemas.processors import Processor

STRIPE, PAYPAL, HESABPAY = Processor.STRIPE, Processor.PAYPAL, Processor.HESABPAY
CARD_ONLY = default_capabilities(STRIPE)


def option(processor: Processor, precedence: int, *, enabled: bool = True) -> RouteOption:
    """An attachment whose account can take card payments in every currency."""
    return RouteOption(processor, precedence, CARD_ONLY, enabled)


def none_open(_: Processor) -> bool:
    """No breaker is open."""
    return False


def open_for(*processors: Processor) -> Callable[[Processor], bool]:
    """Breakers open for ``processors`` only."""
    return lambda processor: processor in processors


def route(
    attachments: list[RouteOption],
    *,
    currency: str = "USD",
    manual_capture: bool = True,
    hint: Processor | None = None,
    is_open: Callable[[Processor], bool] = none_open,
) -> tuple[Processor, ...]:
    """Candidates for a card payment with these needs."""
    return candidates(
        attachments,
        currency=currency,
        method="card",
        manual_capture=manual_capture,
        hint=hint,
        is_open=is_open,
    )


def test_lower_precedence_goes_first() -> None:
    """Capable processors are ordered by precedence, lowest first."""
    assert route([option(PAYPAL, 20), option(STRIPE, 10)]) == (STRIPE, PAYPAL)


def test_disabled_attachments_are_left_out() -> None:
    """A disabled attachment is never a candidate."""
    assert route([option(STRIPE, 10, enabled=False), option(PAYPAL, 20)]) == (PAYPAL,)


def test_processors_that_cannot_take_the_payment_are_left_out() -> None:
    """Currency, method and manual capture all filter: HesabPay takes neither USD nor cards."""
    hesabpay = RouteOption(HESABPAY, 1, default_capabilities(HESABPAY))
    no_usd = RouteOption(PAYPAL, 5, replace(CARD_ONLY, currencies=frozenset({"EUR"})))

    assert route([hesabpay, no_usd, option(STRIPE, 10)]) == (STRIPE,)


def test_manual_capture_needs_a_processor_that_can_hold_funds() -> None:
    """A manual-capture payment skips a processor that captures at once; automatic does not."""
    charges_at_once = RouteOption(PAYPAL, 1, replace(CARD_ONLY, manual_capture=False))
    attachments = [charges_at_once, option(STRIPE, 10)]

    assert route(attachments, manual_capture=True) == (STRIPE,)
    assert route(attachments, manual_capture=False) == (PAYPAL, STRIPE)


def test_hint_moves_a_capable_processor_first() -> None:
    """The command's processor goes first when it can take the payment."""
    assert route([option(STRIPE, 10), option(PAYPAL, 20)], hint=PAYPAL) == (PAYPAL, STRIPE)


def test_hint_never_adds_an_incapable_processor() -> None:
    """A hint naming a processor that cannot take the payment changes nothing."""
    assert route([option(STRIPE, 10)], hint=HESABPAY) == (STRIPE,)


def test_open_breaker_removes_the_processor() -> None:
    """A processor whose breaker is open is passed over, even when hinted."""
    attachments = [option(STRIPE, 10), option(PAYPAL, 20)]

    assert route(attachments, hint=STRIPE, is_open=open_for(STRIPE)) == (PAYPAL,)


def test_all_breakers_open_returns_every_capable_processor() -> None:
    """With every capable breaker open all are returned, to fail as unavailable, not unset."""
    attachments = [option(PAYPAL, 20), option(STRIPE, 10), option(HESABPAY, 5, enabled=False)]

    assert route(attachments, is_open=open_for(STRIPE, PAYPAL)) == (STRIPE, PAYPAL)


def test_nothing_capable_gives_no_candidates() -> None:
    """A payment no attached processor can take has no candidates."""
    usd_only = RouteOption(STRIPE, 10, replace(CARD_ONLY, currencies=frozenset({"USD"})))

    assert route([usd_only], currency="EUR") == ()


def test_a_processor_attached_twice_is_listed_once() -> None:
    """Duplicate attachments of one processor yield one candidate, at its best precedence."""
    assert route([option(STRIPE, 30), option(PAYPAL, 20), option(STRIPE, 10)]) == (STRIPE, PAYPAL)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TryNextError("currency not supported"), True),
        (ProcessorUnavailable("breaker open", sent=False), True),
        (RetryableError("connection refused", sent=False), True),
        (DeclinedError("no credentials", sent=False), True),
        (RetryableError("503"), False),
        (DeclinedError("card declined"), False),
        (InDoubtError("read timeout"), False),
        (InDoubtError("nonsense: in doubt yet unsent", sent=False), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, ProcessorError) else str(value),
)
def test_should_try_next(error: ProcessorError, *, expected: bool) -> None:
    """Only a try-next refusal or an unsent request moves on; an in-doubt one never does."""
    assert should_try_next(error) is expected
