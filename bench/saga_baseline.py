"""The pgbench baseline of bench.sagas: one saga's SQL as one pgbench transaction."""

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.saga_common import (
    AUTHORIZE,
    AUTHORIZED,
    BOOKING,
    PGBENCH,
)
from handlers.commands import _POLICY
from handlers.executor import _COUNT_ATTEMPTS
from handlers.idempotency import _FIND_KEY, _MARK_PROCESSED, _RECORD_KEY
from handlers.saga_store import (
    _DELETE_TIMER,
    _EVENT,
    _INSERT_PAYMENT,
    _PAYMENT,
    _TRANSITION,
    _UPDATE_PAYMENT,
    _UPSERT_OPERATION,
    _UPSERT_TIMER,
    _WAKEUP_SHARE,
)
from outbox.relay import _MARK
from outbox.store import _INSERT as _OUTBOX_INSERT
from tenancy.db import _ENTER_TENANT, Database
from tenancy.registry import _BY_ID


def _literal(text: str) -> str:
    r"""``text`` as an SQL string literal with no colon in it.

    In prepared mode pgbench turns every ``:word`` of a command into a parameter, even inside
    quotes (a time such as ``12:30`` included), so colons are written as the escape ``\x3a``.
    """
    escaped = text.replace("\\", "\\\\").replace("'", "''").replace(":", "\\x3a")
    return f"E'{escaped}'"


@dataclass(frozen=True, slots=True)
class Sample:
    """A real authorized saga's stored values, so pgbench writes rows of the same size."""

    tenant: str
    first_state: str
    saga: str
    event: str
    attributes: str
    data_hex: str


async def sample(db: Database, tenant: str) -> Sample:
    """The stored values of one saga the worker authorized for ``tenant``."""
    async with db.tenant_transaction(tenant) as tx:
        row = await tx.conn.fetchrow(
            "SELECT p.payment_id, p.saga::text AS saga, e.data::text AS event,"
            " (SELECT to_state FROM payment_transitions t"
            "   WHERE t.payment_id = p.payment_id AND t.version = 1) AS first_state"
            " FROM payments p JOIN payment_events e USING (payment_id)"
            " WHERE p.state = 'authorized' LIMIT 1"
        )
    if row is None:
        raise RuntimeError(f"no authorized payment of {tenant} to copy sizes from")
    async with db.connection() as conn:
        out = await conn.fetchrow(
            "SELECT attributes::text AS attributes, encode(data, 'hex') AS data"
            " FROM payments_central.outbox WHERE tenant_id = $1 AND ordering_key = $2 LIMIT 1",
            tenant,
            row["payment_id"],
        )
    if out is None:
        raise RuntimeError(f"no outbox row for {row['payment_id']}")
    return Sample(
        tenant, row["first_state"], row["saga"], row["event"], out["attributes"], out["data"]
    )


_RELEASE: Final = "SELECT pg_advisory_unlock_all();"
"""The pool's reset query on each release, down to its first statement (one round trip):
pgbench cannot prepare the whole of it (``...; CLOSE ALL; UNLISTEN *; RESET ALL``)."""
_RELAY_READ: Final = """
SELECT outbox_id AS oid, topic, ordering_key, attributes, data FROM payments_central.outbox
 WHERE tenant_id = $1 AND event_id = $2 AND published_at IS NULL \\gset"""
"""The relay's read, of this saga's row only (the relay reads a batch per bucket)."""


BASELINE_WAKEUP: Final = """
INSERT INTO payments_central.saga_wakeups (tenant_id, due_at) VALUES ($1, now())
ON CONFLICT (tenant_id) DO NOTHING
"""
"""The baseline tenant's wake-up row, due already: no saga's timer moves it earlier."""


def _bind(sql: str, *args: str) -> str:
    """``sql`` with ``$1``... replaced by the pgbench expressions ``args``, as one command."""
    text = re.sub(r"\$(\d+)", lambda m: f"({args[int(m.group(1)) - 1]})", sql.strip())
    return text if text.endswith("\\gset") else text + ";"


def pgbench_script(tenant: str, values: Sample) -> str:
    """One authorize saga's SQL, in the order the worker sends it, as one pgbench transaction.

    The statements are the code's own constants, so the baseline follows the code; their
    parameters become literals of the sizes a real saga stored (``:n`` keeps ids unique).
    The wake-up row is only read: it is written when a timer moves it earlier, which a
    stream of sagas seldom does. The relay's read and mark are done per saga.
    """
    t = f"'{tenant}'"
    pid, key, now = "'pgb_' || :n", "'auth-pgb_' || :n", "now()"
    message = f"'{BOOKING}|' || :n"
    op_key = f"{_literal(f'{tenant}:pgb_')} || :n || {_literal(':authorize:1')}"
    event = "'pgb_' || :n || '_2_0'"
    ref, expires = "'fake_' || :n", "now() + interval '7 days'"
    saga = _literal(values.saga)
    first = f"'{values.first_state}'"
    counted = "ARRAY[1]"
    digest = "'" + "0" * 64 + "'"
    attributes = _literal(values.attributes.replace(values.tenant, tenant))
    operation = ("1", "'authorize'", "'stripe'", "1250", op_key)
    begin = ["BEGIN;", _bind(_ENTER_TENANT, t)]
    commit = ["COMMIT;", _RELEASE]
    lines = [
        "\\set n random(1, 999999999999)",
        _bind(_BY_ID, t),  # the consumer's tenant check
        _RELEASE,
        *begin,  # the command's transaction, which also counts the send
        _bind(_MARK_PROCESSED, message, pid, now),
        _bind(_PAYMENT, pid),
        _bind(_FIND_KEY, key),
        _bind(_POLICY),
        _bind(
            _INSERT_PAYMENT,
            pid,
            first,
            "'USD'",
            "1250",
            "0",
            "0",
            "0",
            "NULL",
            "'manual'",
            "NULL",
            "NULL",
            "NULL",
            saga,
            now,
        ),
        _bind(
            _UPSERT_OPERATION,
            pid,
            *operation,
            "'pending'",
            "'command'",
            key,
            "true",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "0",
            now,
        ),
        _bind(_UPSERT_TIMER, pid, "'redrive'", "1", "now() + interval '90 seconds'"),
        _bind(_WAKEUP_SHARE, t),
        _bind(_TRANSITION, pid, "1", "NULL", first, "'authorize'", message, "NULL", now),
        _bind(_RECORD_KEY, key, pid, f"'{AUTHORIZE}'", digest, message, now, expires),
        _bind(_COUNT_ATTEMPTS, pid, counted, now),
        *commit,
        *begin,  # the vendor's answer, applied
        _bind(_PAYMENT, pid),
        _bind(
            _UPDATE_PAYMENT,
            pid,
            "1",
            "'authorized'",
            "1250",
            "0",
            "0",
            "'stripe'",
            ref,
            expires,
            "NULL",
            saga,
            now,
        ),
        _bind(
            _UPSERT_OPERATION,
            pid,
            *operation,
            "'succeeded'",
            "'command'",
            key,
            "true",
            "NULL",
            ref,
            "NULL",
            "NULL",
            "0",
            now,
        ),
        _bind(_DELETE_TIMER, pid, "'redrive'", "1"),
        _bind(_UPSERT_TIMER, pid, "'authorization_expiry'", "0", expires),
        _bind(_WAKEUP_SHARE, t),
        _bind(
            _TRANSITION,
            pid,
            "2",
            first,
            "'authorized'",
            "'authorize_succeeded'",
            "NULL",
            "NULL",
            now,
        ),
        _bind(_EVENT, event, pid, "2", f"'{AUTHORIZED}'", key, _literal(values.event), now),
        _bind(
            _OUTBOX_INSERT,
            event,
            t,
            "'payment-events'",
            pid,
            attributes,
            f"'\\x{values.data_hex}'::bytea",
        ),
        *commit,
        _bind(_RELAY_READ, t, event),  # the relay
        _bind(_MARK, "ARRAY[:oid]::bigint[]"),
    ]
    return "\n".join(lines) + "\n"


def pgbench(dsn: str, script: str, clients: int, seconds: float) -> dict[str, float]:
    """Run ``script`` with ``clients`` connections for ``seconds``; its transactions/s."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "saga.sql"
        path.write_text(script)
        done = subprocess.run(  # noqa: S603 (pgserver's own pgbench, fixed flags)
            [
                str(PGBENCH),
                "--no-vacuum",
                "--protocol=prepared",
                f"--client={clients}",
                f"--jobs={min(clients, os.cpu_count() or 1)}",
                f"--time={max(1, round(seconds))}",
                f"--file={path}",
                dsn,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", done.stdout)
    failed = re.search(r"number of failed transactions: ([0-9]+)", done.stdout)
    processed = re.search(r"number of transactions actually processed: ([0-9]+)", done.stdout)
    if tps is None or latency is None or processed is None:
        raise RuntimeError(f"unexpected pgbench output:\n{done.stdout}")
    return {
        "clients": clients,
        "transactions": int(processed.group(1)),
        "sagas_per_s": round(float(tps.group(1)), 1),
        "latency_average_ms": float(latency.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
    }
