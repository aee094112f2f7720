"""Proves a tenant role's separation: it reads its own schema and nothing else.

Each probe runs in a transaction that is always rolled back, as the tenant role.
The targets are the isolation canary schema (always there), the central registry and
outbox (tenant roles may insert outbox rows of their own tenant, never read any), and
the oldest other tenant's ``payments`` table when another tenant exists.
"""

from dataclasses import dataclass
from typing import Final

import asyncpg

from schemas.ids import quote_sql_name
from tenancy.db import Conn
from tenancy.errors import IsolationBreachError
from tenancy.registry import TenantRecord

_CANARY: Final = ("payments_isolation_canary", "payments", "payment_id")
_CENTRAL: Final = ("payments_central", "tenant_schema_registry", "tenant_id")
_OUTBOX: Final = ("payments_central", "outbox", "data")
_NEIGHBOUR: Final = """
SELECT schema_name FROM payments_central.tenant_schema_registry
 WHERE tenant_id <> $1 AND status IN ('active', 'deletion_paused', 'soft_deleted')
 ORDER BY created_at, tenant_id LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class IsolationProbe:
    """One SELECT attempted as the tenant role, and whether it was denied."""

    target: str
    denied: bool
    expected_denied: bool

    @property
    def ok(self) -> bool:
        """Whether the outcome was the expected one."""
        return self.denied == self.expected_denied


async def verify_isolation(conn: Conn, tenant: TenantRecord) -> list[IsolationProbe]:
    """Probe as the tenant role; raise ``IsolationBreachError`` on any unexpected outcome."""
    targets = [
        ((tenant.schema_name, "payments", "payment_id"), False),
        (_CANARY, True),
        (_CENTRAL, True),
        (_OUTBOX, True),
    ]
    neighbour = await conn.fetchval(_NEIGHBOUR, tenant.tenant_id)
    if neighbour is not None:
        targets.append(((neighbour, "payments", "payment_id"), True))
    probes = [
        await _probe(conn, tenant.role_name, target, expected_denied=denied)
        for target, denied in targets
    ]
    bad = [p for p in probes if not p.ok]
    if bad:
        raise IsolationBreachError(
            f"tenant role {tenant.role_name}: "
            + "; ".join(
                f"{p.target} {'denied' if p.denied else 'readable'}, expected the opposite"
                for p in bad
            )
        )
    return probes


async def _probe(
    conn: Conn, role: str, target: tuple[str, str, str], *, expected_denied: bool
) -> IsolationProbe:
    schema, table, column = target
    relation = f"{quote_sql_name(schema)}.{quote_sql_name(table)}"
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute("SELECT set_config('role', $1, true)", role)
        await conn.fetch(f"SELECT {quote_sql_name(column)} FROM {relation} LIMIT 1")  # noqa: S608 (validated names)
    except asyncpg.InsufficientPrivilegeError:
        denied = True
    else:
        denied = False
    finally:
        await transaction.rollback()
    return IsolationProbe(f"{schema}.{table}", denied, expected_denied)
