"""One asyncpg pool, and the tenant transaction every tenant-scoped write goes through.

``tenant_transaction`` looks the tenant up in the registry and, in the same statement,
switches the transaction to the tenant's role and schema with ``set_config(..., true)``
(the ``SET LOCAL`` equivalent). The role and schema names come from the registry row,
never from the caller, and both settings end with the transaction.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas.ids import validate_tenant_id
from tenancy.errors import TenantStateError, UnknownTenantError
from tenancy.lifecycle import SERVING_STATUSES, TenantStatus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
else:
    Conn: TypeAlias = PoolConnectionProxy

_ENTER_TENANT: Final = """
SELECT r.status,
       r.schema_name,
       set_config('role', r.role_name, true) AS role,
       set_config('search_path', r.schema_name, true) AS search_path
  FROM payments_central.tenant_schema_registry AS r
 WHERE r.tenant_id = $1
"""


@dataclass(frozen=True, slots=True)
class TenantTransaction:
    """An open transaction running as the tenant's role on the tenant's schema."""

    conn: Conn
    tenant_id: str
    schema: str
    status: TenantStatus


class Database:
    """The service's connection pool."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        """Wrap an open pool; use ``Database.open`` to make one."""
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 10) -> Database:
        """Open a pool on ``dsn``."""
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings={"application_name": "payment-gateway"},
        )
        return cls(pool)

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        """The underlying pool, for callers that manage their own connections."""
        return self._pool

    async def close(self) -> None:
        """Close every connection, waiting for those in use to be released."""
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection running as the service's own (admin) role."""
        async with self._pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def tenant_transaction(
        self,
        tenant_id: str,
        *,
        statuses: Collection[TenantStatus] = SERVING_STATUSES,
    ) -> AsyncIterator[TenantTransaction]:
        """Open a transaction as the tenant's role, with ``search_path`` = its schema.

        Raises ``InvalidTenantIdError`` for a malformed id (before any SQL runs),
        ``UnknownTenantError`` when the registry has no such tenant, and
        ``TenantStateError`` when its status is not in ``statuses``.
        """
        validate_tenant_id(tenant_id)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_ENTER_TENANT, tenant_id)
            if row is None:
                raise UnknownTenantError(f"unknown tenant {tenant_id}")
            status = TenantStatus(row["status"])
            if status not in statuses:
                raise TenantStateError(f"tenant {tenant_id} is {status}")
            yield TenantTransaction(conn, tenant_id, row["schema_name"], status)
