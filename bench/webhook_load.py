"""Load for bench.webhooks: signed Stripe events, a lean HTTP/1.1 client, CPU accounting.

The client speaks just enough HTTP/1.1 on raw asyncio streams for a keep-alive POST and
its ``content-length`` answer (what uvicorn sends for a JSON response), so that it costs
less per request than the server it measures. Each connection sends one request at a
time: back to back in a closed loop, or at its due time in an open loop, where the
latency counts from the due time (a late client or a queue of due requests adds to it,
so a slow server cannot hide behind a slow sender).
"""

import asyncio
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.saga_common import percentile
from bench.saga_load import Watched, cpu_seconds
from sandbox.stripe_wire import signature_header

HEAD_END: Final = b"\r\n\r\n"
LENGTH: Final = b"\r\ncontent-length:"
READY_POLL_S: Final = 0.02
OPEN_LOOP_START_S: Final = 0.05
"""Between opening the paced run's connections and its first due time."""


class ProtocolError(Exception):
    """An answer this client does not read (no ``content-length``, or a closed socket)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the webhooks go: ``http://host:port`` + ``path``."""

    host: str
    port: int
    path: str


def stripe_event(number: int, created: int) -> dict[str, object]:
    """A ``payment_intent.succeeded`` event as Stripe sends it (the fields the adapter reads)."""
    ref = f"{number:08d}"
    return {
        "id": f"evt_bench_{ref}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_bench_{ref}", "idempotency_key": f"bench-{ref}"},
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": f"pi_bench_{ref}",
                "object": "payment_intent",
                "amount": 1250,
                "amount_capturable": 0,
                "amount_received": 1250,
                "capture_method": "manual",
                "created": created,
                "currency": "usd",
                "latest_charge": f"ch_bench_{ref}",
                "livemode": False,
                "metadata": {"payment_id": f"pay_bench_{ref}"},
                "payment_method": f"pm_bench_{ref}",
                "status": "succeeded",
            }
        },
    }


def signed_requests(target: Target, secret: str, numbers: Iterable[int]) -> list[bytes]:
    """One whole POST per event number, signed now with ``secret`` as Stripe signs."""
    now = int(time.time())
    head = (
        f"POST {target.path} HTTP/1.1\r\nhost: {target.host}:{target.port}\r\n"
        "content-type: application/json\r\nuser-agent: Stripe/1.0\r\n"
    ).encode()
    out = []
    for number in numbers:
        body = json.dumps(stripe_event(number, now), separators=(",", ":")).encode()
        signature = signature_header([secret], now, body).encode()
        out.append(
            b"%sstripe-signature: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (head, signature, len(body), body)
        )
    return out


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Wrap an open stream pair."""
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, target: Target) -> "Connection":
        """Connect to ``target``."""
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> int:
        """Send ``request``, read the whole answer; its status code."""
        self._writer.write(request)
        try:
            head = await self._reader.readuntil(HEAD_END)
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("the server closed the connection") from exc
        start = head.lower().find(LENGTH)
        if start < 0:
            raise ProtocolError(f"no content-length in {head[:200]!r}")
        end = head.index(b"\r\n", start + len(LENGTH))
        await self._reader.readexactly(int(head[start + len(LENGTH) : end]))
        return int(head[9:12])

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        await self._writer.wait_closed()


async def wait_ready(target: Target, alive: Callable[[], bool], within: float) -> None:
    """Poll ``GET /healthz`` until it answers 200; ``alive`` says the server still runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    probe = f"GET /healthz HTTP/1.1\r\nhost: {target.host}:{target.port}\r\n\r\n".encode()
    while loop.time() < deadline:
        if not alive():
            raise RuntimeError(f"the server for {target.port} exited while starting")
        try:
            connection = await Connection.open(target)
        except OSError:
            await asyncio.sleep(READY_POLL_S)
            continue
        try:
            if await connection.exchange(probe) == 200:  # noqa: PLR2004 (HTTP status)
                return
        finally:
            await connection.close()
        await asyncio.sleep(READY_POLL_S)
    raise RuntimeError(f"the server for {target.port} was not ready within {within:g} s")


@dataclass(slots=True)
class _Tally:
    """What came back: status counts and latencies (seconds)."""

    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)

    def errors(self) -> dict[str, int]:
        """Every status but 200, by code."""
        return {str(code): n for code, n in sorted(self.statuses.items()) if code != 200}  # noqa: PLR2004 (HTTP status)


def _ms(values: Sequence[float], q: float) -> float:
    return round(percentile(values, q) * 1000, 2) if values else float("nan")


@dataclass(frozen=True, slots=True)
class Throughput:
    """A closed-loop run: every connection sends back to back."""

    connections: int
    sent: int
    ok: int
    seconds: float
    per_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]


@dataclass(frozen=True, slots=True)
class Latency:
    """An open-loop run at a fixed rate: latency from each request's due time."""

    rate_per_s: float
    achieved_per_s: float
    sent: int
    ok: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    late_p99_ms: float
    """How late the client itself sent (p99): included in the latencies above."""
    errors: dict[str, int]


async def _connections(target: Target, count: int) -> list[Connection]:
    return list(await asyncio.gather(*(Connection.open(target) for _ in range(count))))


async def closed_loop(target: Target, requests: Sequence[bytes], connections: int) -> Throughput:
    """Send ``requests`` over ``connections``, each one's next as soon as it is answered."""
    tally = _Tally()
    queue: Iterator[bytes] = iter(requests)

    async def run(connection: Connection) -> None:
        for request in queue:
            sent = time.perf_counter()
            status = await connection.exchange(request)
            tally.latencies.append(time.perf_counter() - sent)
            tally.statuses[status] += 1

    pool = await _connections(target, connections)
    started = time.perf_counter()
    try:
        await asyncio.gather(*(run(c) for c in pool))
    finally:
        elapsed = time.perf_counter() - started
        await asyncio.gather(*(c.close() for c in pool))
    return Throughput(
        connections=connections,
        sent=len(tally.latencies),
        ok=tally.statuses[200],
        seconds=round(elapsed, 3),
        per_s=round(len(tally.latencies) / elapsed, 1),
        p50_ms=_ms(tally.latencies, 50),
        p99_ms=_ms(tally.latencies, 99),
        errors=tally.errors(),
    )


async def open_loop(
    target: Target, requests: Sequence[bytes], rate: float, connections: int
) -> Latency:
    """Send request i at ``i / rate`` s, on whichever connection is free then."""
    tally = _Tally()
    loop = asyncio.get_running_loop()
    schedule: Iterator[tuple[int, bytes]] = iter(enumerate(requests))
    pool = await _connections(target, connections)
    start = loop.time() + OPEN_LOOP_START_S

    async def run(connection: Connection) -> None:
        for index, request in schedule:
            due = start + index / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tally.late.append(max(0.0, loop.time() - due))
            status = await connection.exchange(request)
            tally.latencies.append(loop.time() - due)
            tally.statuses[status] += 1

    try:
        await asyncio.gather(*(run(c) for c in pool))
    finally:
        elapsed = loop.time() - start
        await asyncio.gather(*(c.close() for c in pool))
    return Latency(
        rate_per_s=round(rate, 1),
        achieved_per_s=round(len(tally.latencies) / elapsed, 1),
        sent=len(tally.latencies),
        ok=tally.statuses[200],
        p50_ms=round(statistics.median(tally.latencies) * 1000, 2),
        p90_ms=_ms(tally.latencies, 90),
        p99_ms=_ms(tally.latencies, 99),
        max_ms=round(max(tally.latencies) * 1000, 2),
        late_p99_ms=_ms(tally.late, 99),
        errors=tally.errors(),
    )


ELSEWHERE: Final = "elsewhere"
STOLEN: Final = "stolen"


def usage(watched: Watched) -> dict[str, float]:
    """CPU seconds so far: each watched process, the rest of the machine, and steal.

    From /proc/stat: ``elsewhere`` is the machine's busy time (user, nice, system, irq,
    softirq) minus the watched processes': other processes, and kernel work charged to
    none; ``stolen`` is the time the hypervisor gave this machine's CPUs to others.
    """
    used = cpu_seconds(watched)
    with Path("/proc/stat").open() as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    busy = (user + nice + system + irq + softirq) / tick
    return used | {ELSEWHERE: busy - sum(used.values()), STOLEN: steal / tick}


def per_1000(before: dict[str, float], after: dict[str, float], done: int) -> dict[str, float]:
    """CPU seconds per 1,000 webhooks: each part, and the watched processes' total."""
    used = {name: round((after[name] - before[name]) * 1000 / max(done, 1), 3) for name in after}
    ours = sum(v for name, v in used.items() if name not in {ELSEWHERE, STOLEN})
    return used | {"total": round(ours, 3)}
