"""Schema rollout across tenants: MIGRATION_PLAN 3.1.

Tenants are migrated in batches of ``batch_size`` (50) in parallel, each attempt bounded
by ``timeout`` (30 s); a failed tenant is retried up to ``retries`` (3) more times, except
for an edited migration, which no retry can fix. Tenants still failing keep their error
on the registry (``migration_error``), are logged as ``tenant_migration_failed`` (the P2
alert's log metric) and are resumed with ``migrate-tenant`` or ``migrate-all --only-failed``.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import asyncpg
import structlog

from tenancy.db import Database
from tenancy.errors import ChecksumMismatchError, InvalidIndexError
from tenancy.lifecycle import SERVING_STATUSES
from tenancy.migration_files import Migration
from tenancy.registry import TenantRecord, list_tenants
from tenancy.tenant_migrations import TenantMigrationOutcome, migrate_tenant

_log = structlog.get_logger(__name__)
_SET_ERROR: Final = """
UPDATE payments_central.tenant_schema_registry SET migration_error = $2 WHERE tenant_id = $1
"""


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How a rollout spreads and retries; the defaults are MIGRATION_PLAN 3.1's."""

    batch_size: int = 50
    timeout_seconds: float = 30.0
    retries: int = 3
    backoff_seconds: float = 0.25


@dataclass(frozen=True, slots=True)
class TenantResult:
    """How one tenant's migration ended after all its attempts."""

    tenant_id: str
    attempts: int
    outcome: TenantMigrationOutcome | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the tenant is now (or in a dry run, would be) up to date."""
        return self.error is None


async def rollout_targets(db: Database, *, only_failed: bool = False) -> list[TenantRecord]:
    """Tenants whose schema exists and is served: active, deletion-paused, soft-deleted.

    Tenants being offboarded are left alone: their schema is about to be dropped.
    """
    async with db.connection() as conn:
        tenants = await list_tenants(conn)
    return [
        t
        for t in tenants
        if t.status in SERVING_STATUSES and (not only_failed or t.migration_error is not None)
    ]


async def migrate_tenants(  # noqa: PLR0913 (keyword-only options of one rollout)
    db: Database,
    tenants: Sequence[TenantRecord],
    migrations: tuple[Migration, ...],
    *,
    policy: RolloutPolicy = RolloutPolicy(),
    dry_run: bool = False,
    on_result: Callable[[TenantResult], None] | None = None,
) -> list[TenantResult]:
    """Migrate ``tenants`` batch by batch; return one result per tenant, in order."""
    results: list[TenantResult] = []

    async def one(tenant: TenantRecord) -> TenantResult:
        result = await _migrate_with_retries(db, tenant, migrations, policy, dry_run=dry_run)
        if on_result is not None:
            on_result(result)
        return result

    for start in range(0, len(tenants), policy.batch_size):
        batch = tenants[start : start + policy.batch_size]
        results.extend(await asyncio.gather(*(one(t) for t in batch)))
    return results


async def _migrate_with_retries(
    db: Database,
    tenant: TenantRecord,
    migrations: tuple[Migration, ...],
    policy: RolloutPolicy,
    *,
    dry_run: bool,
) -> TenantResult:
    error = "not attempted"
    attempt = 0
    for attempt in range(1, policy.retries + 2):
        try:
            async with asyncio.timeout(policy.timeout_seconds), db.connection() as conn:
                outcome = await migrate_tenant(conn, tenant, migrations, dry_run=dry_run)
        except ChecksumMismatchError as exc:
            error = str(exc)
            break
        except TimeoutError:
            error = f"timed out after {policy.timeout_seconds:g}s"
        except InvalidIndexError as exc:
            error = str(exc)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if not dry_run and tenant.migration_error is not None:
                await _set_error(db, tenant.tenant_id, None)
            return TenantResult(tenant.tenant_id, attempt, outcome=outcome)
        if attempt <= policy.retries:
            await asyncio.sleep(policy.backoff_seconds * 2 ** (attempt - 1))
    _log.error("tenant_migration_failed", tenant_id=tenant.tenant_id, attempts=attempt, error=error)
    if not dry_run:
        await _set_error(db, tenant.tenant_id, error)
    return TenantResult(tenant.tenant_id, attempt, error=error)


async def _set_error(db: Database, tenant_id: str, error: str | None) -> None:
    async with db.connection() as conn:
        await conn.execute(_SET_ERROR, tenant_id, error)
