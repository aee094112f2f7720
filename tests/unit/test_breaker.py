"""Circuit breakers: when they open, the single half-open probe, and the per-key registry."""

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from processors.breaker import BreakerPolicy, Breakers, BreakerState, CircuitBreaker
from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorError,
    ProcessorUnavailable,
    RetryableError,
)
from schemas.processors import Processor
from tests.unit.test_caching_secret_store import ManualClock

STRIPE, PAYPAL = Processor.STRIPE, Processor.PAYPAL
OPEN_FOR = timedelta(seconds=30)


@pytest.fixture
def clock() -> ManualClock:
    """The breakers' clock."""
    return ManualClock()


@pytest.fixture
def breaker(clock: ManualClock) -> CircuitBreaker:
    """A breaker with the default policy."""
    return CircuitBreaker(BreakerPolicy(), clock)


def tripped(clock: ManualClock) -> CircuitBreaker:
    """A breaker that has just opened after five failures in a row."""
    breaker = CircuitBreaker(BreakerPolicy(), clock)
    for _ in range(5):
        breaker.record_failure()
    return breaker


def test_closed_breaker_lets_calls_through(breaker: CircuitBreaker) -> None:
    """A new breaker is closed and allows every call."""
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(10))


def test_consecutive_failures_open_the_breaker(breaker: CircuitBreaker) -> None:
    """Four failures in a row leave it closed; the fifth opens it and calls are refused."""
    for _ in range(4):
        breaker.record_failure()
    states = [breaker.state]

    breaker.record_failure()

    assert [*states, breaker.state] == [BreakerState.CLOSED, BreakerState.OPEN]
    assert not breaker.allow()


def test_a_success_resets_the_run_of_failures(breaker: CircuitBreaker) -> None:
    """Four failures, a success, and four more failures leave the breaker closed."""
    for outcome in [False] * 4 + [True] + [False] * 4:
        breaker.record_success() if outcome else breaker.record_failure()

    assert breaker.state is BreakerState.CLOSED


def test_failure_rate_opens_the_breaker_once_enough_calls_are_seen(
    breaker: CircuitBreaker,
) -> None:
    """Alternating outcomes open the breaker at the tenth call, when half have failed."""
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    breaker.record_success()
    states = [breaker.state]

    breaker.record_failure()

    assert [*states, breaker.state] == [BreakerState.CLOSED, BreakerState.OPEN]


def test_failure_rate_below_the_threshold_keeps_it_closed(breaker: CircuitBreaker) -> None:
    """Eight failures in twenty calls, never two in a row, keep the breaker closed."""
    for index in range(20):
        breaker.record_failure() if index % 5 in {0, 2} else breaker.record_success()

    assert breaker.state is BreakerState.CLOSED


def test_old_outcomes_leave_the_window(clock: ManualClock) -> None:
    """Failures older than the window no longer count towards the rate."""
    policy = BreakerPolicy(consecutive_failures=99, failure_rate=0.5, window=4, min_calls=4)
    breaker = CircuitBreaker(policy, clock)
    for outcome in [False, True, True, True, True, False]:
        breaker.record_success() if outcome else breaker.record_failure()

    assert breaker.state is BreakerState.CLOSED


def test_open_breaker_admits_one_probe_after_open_for(clock: ManualClock) -> None:
    """Calls stay refused until ``open_for`` has passed; then exactly one probe goes out."""
    breaker = tripped(clock)
    clock.advance(OPEN_FOR - timedelta(seconds=1))
    assert not breaker.allow()
    clock.advance(timedelta(seconds=1))

    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()


def test_successful_probe_closes_the_breaker(clock: ManualClock) -> None:
    """A probe that succeeds closes the breaker with a clean record."""
    breaker = tripped(clock)
    clock.advance(OPEN_FOR)
    breaker.allow()

    breaker.record_success()

    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    for _ in range(4):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_failed_probe_opens_the_breaker_for_another_period(clock: ManualClock) -> None:
    """A probe that fails opens the breaker again, counted from the probe's failure."""
    breaker = tripped(clock)
    clock.advance(OPEN_FOR)
    breaker.allow()

    breaker.record_failure()

    assert breaker.state is BreakerState.OPEN
    clock.advance(OPEN_FOR - timedelta(seconds=1))
    assert not breaker.allow()
    clock.advance(timedelta(seconds=1))
    assert breaker.allow()


def test_released_probe_lets_another_probe_go(clock: ManualClock) -> None:
    """A probe that ends without a verdict frees the slot for the next caller."""
    breaker = tripped(clock)
    clock.advance(OPEN_FOR)
    breaker.allow()

    breaker.release()

    assert breaker.allow()
    assert not breaker.allow()


@pytest.mark.parametrize(
    "bad",
    [
        {"consecutive_failures": 0},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"min_calls": 21},
        {"window": 0, "min_calls": 0},
        {"open_for": timedelta(0)},
    ],
)
def test_policy_refuses_values_that_never_trip_or_never_recover(bad: dict[str, object]) -> None:
    """A policy that could never trip or never recover is refused."""
    with pytest.raises(ValueError, match="must be"):
        BreakerPolicy(**bad)  # type: ignore[arg-type]


def test_breakers_are_kept_per_tenant_and_processor(clock: ManualClock) -> None:
    """Tripping one tenant's Stripe breaker leaves other tenants and processors alone."""
    breakers = Breakers(clock)
    for _ in range(5):
        breakers.get("tnt_a", STRIPE).record_failure()

    assert breakers.is_open("tnt_a", STRIPE)
    assert not breakers.is_open("tnt_b", STRIPE)
    assert not breakers.is_open("tnt_a", PAYPAL)


def test_is_open_turns_false_when_a_probe_is_due(clock: ManualClock) -> None:
    """Routing may pick a processor again once its breaker is due for a probe."""
    breakers = Breakers(clock)
    for _ in range(5):
        breakers.get("tnt_a", STRIPE).record_failure()

    clock.advance(OPEN_FOR)

    assert not breakers.is_open("tnt_a", STRIPE)
    assert breakers.get("tnt_a", STRIPE).state is BreakerState.OPEN


def returning(value: str) -> Callable[[], Awaitable[str]]:
    """A vendor call that returns ``value``."""

    async def call() -> str:
        return value

    return call


def raising(error: BaseException) -> Callable[[], Awaitable[str]]:
    """A vendor call that raises ``error``."""

    async def call() -> str:
        raise error

    return call


async def test_call_returns_the_result(clock: ManualClock) -> None:
    """A call through a closed breaker returns what the vendor call returned."""
    assert await Breakers(clock).call("tnt_a", STRIPE, returning("ok")) == "ok"


@pytest.mark.parametrize("error", [RetryableError("503"), InDoubtError("read timeout")])
async def test_unwell_vendor_errors_count_as_failures(
    clock: ManualClock, error: ProcessorError
) -> None:
    """Retryable and in-doubt errors are re-raised and counted towards opening."""
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=2))

    for _ in range(2):
        with pytest.raises(type(error)):
            await breakers.call("tnt_a", STRIPE, raising(error))

    assert breakers.is_open("tnt_a", STRIPE)


async def test_open_breaker_refuses_without_calling(clock: ManualClock) -> None:
    """An open breaker raises ``ProcessorUnavailable`` with nothing sent, and never calls."""
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1))
    with pytest.raises(RetryableError):
        await breakers.call("tnt_a", STRIPE, raising(RetryableError("503")))
    called: list[str] = []

    async def vendor() -> str:
        called.append("vendor")
        return "ok"

    with pytest.raises(ProcessorUnavailable) as refused:
        await breakers.call("tnt_a", STRIPE, vendor)

    assert not refused.value.sent
    assert refused.value.code == "processor_unavailable"
    assert called == []


async def test_declines_do_not_open_the_breaker(clock: ManualClock) -> None:
    """Declines are answers from a working vendor: any number leaves the breaker closed."""
    breakers = Breakers(clock)

    for _ in range(10):
        with pytest.raises(DeclinedError):
            await breakers.call("tnt_a", STRIPE, raising(DeclinedError("card declined")))

    assert breakers.get("tnt_a", STRIPE).state is BreakerState.CLOSED


async def test_declined_probe_closes_the_breaker(clock: ManualClock) -> None:
    """A probe that gets a decline shows the vendor is answering, and closes the breaker."""
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1))
    with pytest.raises(RetryableError):
        await breakers.call("tnt_a", STRIPE, raising(RetryableError("503")))
    clock.advance(OPEN_FOR)

    with pytest.raises(DeclinedError):
        await breakers.call("tnt_a", STRIPE, raising(DeclinedError("card declined")))

    assert breakers.get("tnt_a", STRIPE).state is BreakerState.CLOSED


async def test_probe_ending_in_our_own_error_frees_the_slot(clock: ManualClock) -> None:
    """A probe that fails for a reason of ours leaves the breaker half-open for another probe."""
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1))
    with pytest.raises(RetryableError):
        await breakers.call("tnt_a", STRIPE, raising(RetryableError("503")))
    clock.advance(OPEN_FOR)

    with pytest.raises(KeyError):
        await breakers.call("tnt_a", STRIPE, raising(KeyError("bug")))

    assert breakers.get("tnt_a", STRIPE).state is BreakerState.HALF_OPEN
    assert await breakers.call("tnt_a", STRIPE, returning("ok")) == "ok"
    assert breakers.get("tnt_a", STRIPE).state is BreakerState.CLOSED


async def test_transitions_are_logged_with_tenant_and_processor(clock: ManualClock) -> None:
    """Each state change is logged once under one event name with its tenant and states."""
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1))

    with structlog.testing.capture_logs() as logs:
        with pytest.raises(RetryableError):
            await breakers.call("tnt_a", STRIPE, raising(RetryableError("503")))
        clock.advance(OPEN_FOR)
        await breakers.call("tnt_a", STRIPE, returning("ok"))

    changes = [
        (log["tenant_id"], log["processor"], log["from_state"], log["to_state"])
        for log in logs
        if log["event"] == "circuit_breaker_state_changed"
    ]
    assert changes == [
        ("tnt_a", "stripe", "closed", "open"),
        ("tnt_a", "stripe", "open", "half_open"),
        ("tnt_a", "stripe", "half_open", "closed"),
    ]


async def test_transitions_are_counted_on_the_meter(clock: ManualClock) -> None:
    """Each state change adds one to ``payments.breaker.transitions``."""
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    breakers = Breakers(clock, BreakerPolicy(consecutive_failures=1), meter=meter)

    with pytest.raises(RetryableError):
        await breakers.call("tnt_a", STRIPE, raising(RetryableError("503")))
    clock.advance(OPEN_FOR)
    await breakers.call("tnt_a", STRIPE, returning("ok"))

    assert transitions(reader) == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }


def transitions(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    """The transitions counter's value per (from, to) state."""
    data = reader.get_metrics_data()
    assert data is not None
    counts: dict[tuple[str, str], int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "payments.breaker.transitions":
                    for point in metric.data.data_points:
                        attrs = point.attributes or {}
                        key = (str(attrs["from_state"]), str(attrs["to_state"]))
                        counts[key] = int(point.value)  # type: ignore[union-attr]
    return counts
