"""Failure injection and the idempotency layer of the fake Stripe.

Faults are queued per operation (``payment_intents.create``, ``refunds.create``, ... or
``"*"`` for any) and each is consumed by one request:

- on arrival, replays included: ``Fail`` (a 5xx or 429 that is not stored under the
  idempotency key: it never reached the API), ``Hold`` (the response is held until the
  client gives up, or the connection dropped mid-body; ``applied`` says whether the
  request took effect first), ``Garble`` (a malformed answer: an HTML 502 page, or a 200
  whose JSON is truncated, lacks ``status`` or has an unknown one);
- when a new request executes: ``Script`` (a decline or 3-D Secure for the next
  confirmation) and ``Fail(stored=True)`` (a 500 that Stripe stores and replays, sent
  with ``Stripe-Should-Retry: false``).

The idempotency layer follows Stripe's rules: the first answer of an endpoint that began
executing is stored and replayed for the same key and parameters; other parameters (or
another endpoint) get 400 ``idempotency_error``; a request while the first is still
running gets 409; keys are pruned after 24 hours.
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal

from sandbox.stripe_state import Outcome
from sandbox.stripe_wire import Params

ANY: Final = "*"
OPERATIONS: Final = frozenset(
    {
        "payment_intents.create",
        "payment_intents.retrieve",
        "payment_intents.list",
        "payment_intents.capture",
        "payment_intents.cancel",
        "refunds.create",
        "refunds.retrieve",
        "refunds.list",
        "balance_transactions.list",
    }
)
KEY_TTL_S: Final = 24 * 3600.0

GarbleKind = Literal["html_502", "truncated_json", "missing_field", "unknown_status"]


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with ``status`` (500, 502, 503, 429); ``stored`` keeps it under the key."""

    status: int = 503
    stored: bool = False
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the client waiting past its timeout (or ``drop`` the connection mid-body)."""

    applied: bool
    drop: bool = False


@dataclass(frozen=True, slots=True)
class Garble:
    """Answer with a malformed response of ``kind``."""

    kind: GarbleKind


@dataclass(frozen=True, slots=True)
class Script:
    """Decide the next confirmation: a decline or 3-D Secure."""

    outcome: Outcome


Fault = Fail | Hold | Garble | Script


def _on_arrival(fault: Fault) -> bool:
    return isinstance(fault, Hold | Garble) or (isinstance(fault, Fail) and not fault.stored)


class Faults:
    """The queue of injected faults, and the simulated latency of every request."""

    def __init__(self) -> None:
        """No fault queued, no latency."""
        self._lock = threading.Lock()
        self._queue: list[tuple[str, Fault]] = []
        self.latency_s = 0.0

    def add(self, operation: str, fault: Fault, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests of ``operation``."""
        if operation != ANY and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        with self._lock:
            self._queue.extend([(operation, fault)] * times)

    def clear(self) -> None:
        """Forget every queued fault and the latency."""
        with self._lock:
            self._queue.clear()
            self.latency_s = 0.0

    def pending(self) -> int:
        """How many faults are still queued."""
        with self._lock:
            return len(self._queue)

    def arrival(self, operation: str) -> Fault | None:
        """The fault a request of ``operation`` meets on arrival, if any (consumed)."""
        return self._take(operation, _on_arrival)

    def execution(self, operation: str) -> Fault | None:
        """The fault a new request of ``operation`` meets when it executes (consumed)."""
        return self._take(operation, lambda fault: not _on_arrival(fault))

    def _take(self, operation: str, kind: Callable[[Fault], bool]) -> Fault | None:
        with self._lock:
            for index, (target, fault) in enumerate(self._queue):
                if target in {operation, ANY} and kind(fault):
                    del self._queue[index]
                    return fault
        return None


class Verdict(Enum):
    """What the idempotency layer says about a request."""

    NEW = "new"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"


@dataclass(slots=True)
class StoredResponse:
    """A response kept under an idempotency key."""

    status: int
    body: Params
    headers: dict[str, str]


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    created: float
    response: StoredResponse | None = None


def fingerprint(method: str, path: str, params: Params) -> str:
    """What two requests with one key must share: the endpoint and the parameters."""
    return json.dumps([method, path, params], sort_keys=True)


class IdempotencyStore:
    """Idempotency keys per account, as Stripe keeps them."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """No key seen yet."""
        self._lock = threading.Lock()
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    def begin(self, scope: str, key: str, print_: str) -> tuple[Verdict, StoredResponse | None]:
        """Register ``key`` for a request, or say why it must not execute."""
        now = self._clock()
        with self._lock:
            self._prune(now)
            entry = self._entries.get((scope, key))
            if entry is None:
                self._entries[scope, key] = _Entry(print_, now)
                return Verdict.NEW, None
            if entry.fingerprint != print_:
                return Verdict.MISMATCH, None
            if entry.response is None:
                return Verdict.IN_FLIGHT, None
            return Verdict.REPLAY, entry.response

    def finish(self, scope: str, key: str, response: StoredResponse) -> None:
        """Store the first answer for ``key``."""
        with self._lock:
            entry = self._entries.get((scope, key))
            if entry is not None:
                entry.response = response

    def abandon(self, scope: str, key: str) -> None:
        """Forget ``key``: its request never began executing (or its answer is not kept)."""
        with self._lock:
            self._entries.pop((scope, key), None)

    def _prune(self, now: float) -> None:
        expired = [k for k, e in self._entries.items() if now - e.created > KEY_TTL_S]
        for k in expired:
            del self._entries[k]
