"""Circuit breakers per (tenant, processor): stop calling a vendor that keeps failing.

Our own small breaker rather than purgatory or aiobreaker, because we need:

- two trip conditions: ``consecutive_failures`` in a row, or a ``failure_rate`` over the
  last ``window`` calls once ``min_calls`` have been seen;
- an injected ``Clock``, so tests move time instead of sleeping;
- exactly one half-open probe: after ``open_for`` the next caller is let through alone;
  its success closes the breaker, its failure opens it for another ``open_for``;
- one breaker per tenant and processor: a tenant's bad credentials or rate limit must not
  cut the processor off for every other tenant.

The breaker only records what it is told. Only conditions that say the vendor is unwell
count as failures (``RetryableError`` and ``InDoubtError``); a decline is an answer, so
``Breakers.call`` records it as a success. Transitions are logged as
``circuit_breaker_state_changed`` and counted on ``payments.breaker.transitions`` (whose
attributes leave out the tenant, to keep the metric's cardinality bounded).
"""

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

import structlog
from opentelemetry.metrics import Meter, NoOpMeter

from processors.errors import (
    DeclinedError,
    InDoubtError,
    ProcessorUnavailable,
    RetryableError,
)
from schemas.clock import Clock
from schemas.processors import Processor

T = TypeVar("T")
_log = structlog.get_logger(__name__)


class BreakerState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens, and for how long."""

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    open_for: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        """Refuse a policy that could never trip or never recover."""
        if self.consecutive_failures < 1 or self.window < 1:
            raise ValueError("consecutive_failures and window must be at least 1")
        if not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        if not 1 <= self.min_calls <= self.window:
            raise ValueError("min_calls must be between 1 and window")
        if self.open_for <= timedelta(0):
            raise ValueError("open_for must be positive")


Transition = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """One breaker: closed lets calls through, open refuses them, half-open admits one probe."""

    def __init__(
        self, policy: BreakerPolicy, clock: Clock, *, on_transition: Transition | None = None
    ) -> None:
        """A closed breaker; ``on_transition(from, to)`` is told of every state change."""
        self._policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque(maxlen=policy.window)  # True: a failure
        self._consecutive = 0
        self._opened_at: datetime | None = None
        self._probe_out = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker due for a probe still reads open)."""
        return self._state

    def is_open(self) -> bool:
        """Whether calls are refused now: open, and not yet due for a probe."""
        return self._state is BreakerState.OPEN and not self._due()

    def allow(self) -> bool:
        """Whether a call may go out now; an open breaker that is due admits one probe."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN and self._due():
            self._move(BreakerState.HALF_OPEN)
            self._probe_out = True
            return True
        if self._state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    def record_success(self) -> None:
        """A call got an answer; a successful probe closes the breaker."""
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED)
        elif self._state is BreakerState.CLOSED:
            self._outcomes.append(False)
            self._consecutive = 0

    def record_failure(self) -> None:
        """A call found the vendor unwell; enough of them open the breaker."""
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.OPEN)
        elif self._state is BreakerState.CLOSED:
            self._outcomes.append(True)
            self._consecutive += 1
            if self._tripped():
                self._move(BreakerState.OPEN)

    def release(self) -> None:
        """A call ended without a verdict (cancelled, or a bug): let another probe go."""
        self._probe_out = False

    def _tripped(self) -> bool:
        policy = self._policy
        if self._consecutive >= policy.consecutive_failures:
            return True
        seen = len(self._outcomes)
        return seen >= policy.min_calls and sum(self._outcomes) / seen >= policy.failure_rate

    def _due(self) -> bool:
        opened_at = self._opened_at
        return opened_at is not None and self._clock() - opened_at >= self._policy.open_for

    def _move(self, to: BreakerState) -> None:
        before, self._state = self._state, to
        self._probe_out = False
        if to is BreakerState.OPEN:
            self._opened_at = self._clock()
        elif to is BreakerState.CLOSED:
            self._opened_at = None
            self._outcomes.clear()
            self._consecutive = 0
        if self._on_transition is not None:
            self._on_transition(before, to)


class Breakers:
    """The breakers of every (tenant, processor) pair, made on first use."""

    def __init__(
        self, clock: Clock, policy: BreakerPolicy | None = None, *, meter: Meter | None = None
    ) -> None:
        """Breakers with ``policy`` on ``clock``; transitions are counted on ``meter``."""
        self._clock = clock
        self._policy = policy or BreakerPolicy()
        self._breakers: dict[tuple[str, Processor], CircuitBreaker] = {}
        self._transitions = (meter or NoOpMeter("payments.breaker")).create_counter(
            "payments.breaker.transitions",
            unit="{transition}",
            description="Circuit breaker state changes",
        )

    def get(self, tenant_id: str, processor: Processor) -> CircuitBreaker:
        """The breaker for ``tenant_id`` at ``processor``."""
        key = (tenant_id, processor)
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = CircuitBreaker(
                self._policy, self._clock, on_transition=self._reporter(tenant_id, processor)
            )
            self._breakers[key] = breaker
        return breaker

    def is_open(self, tenant_id: str, processor: Processor) -> bool:
        """Whether routing should pass over ``processor`` for this tenant now."""
        breaker = self._breakers.get((tenant_id, processor))
        return breaker is not None and breaker.is_open()

    async def call(self, tenant_id: str, processor: Processor, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` through the breaker; raise ``ProcessorUnavailable`` if it is open."""
        breaker = self.get(tenant_id, processor)
        if not breaker.allow():
            raise ProcessorUnavailable(
                f"circuit breaker open for {processor}", vendor_code="circuit_open", sent=False
            )
        try:
            result = await fn()
        except (RetryableError, InDoubtError):
            breaker.record_failure()
            raise
        except DeclinedError:
            breaker.record_success()  # a refusal is an answer: the vendor is up
            raise
        except BaseException:
            breaker.release()  # cancelled, or our bug: nothing learnt about the vendor
            raise
        breaker.record_success()
        return result

    def _reporter(self, tenant_id: str, processor: Processor) -> Transition:
        def report(before: BreakerState, after: BreakerState) -> None:
            log = _log.warning if after is BreakerState.OPEN else _log.info
            log(
                "circuit_breaker_state_changed",
                tenant_id=tenant_id,
                processor=str(processor),
                from_state=str(before),
                to_state=str(after),
            )
            self._transitions.add(
                1, {"processor": str(processor), "from_state": str(before), "to_state": str(after)}
            )

        return report
