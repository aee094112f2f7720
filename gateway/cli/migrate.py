"""Commands: migrate-central, migrate-tenant, migrate-all."""

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.bootstrap import Container
from gateway.cli.runner import EXIT_FAILED, CliState, fail, run, tenant_id_arg
from tenancy.central import migrate_central
from tenancy.errors import TenantStateError
from tenancy.lifecycle import SERVING_STATUSES
from tenancy.registry import get_tenant
from tenancy.rollout import RolloutPolicy, TenantResult, migrate_tenants, rollout_targets

DryRun = Annotated[
    bool,
    typer.Option(help="Apply in a transaction that is rolled back; report what would change."),
]


def migrate_central_cmd(ctx: typer.Context) -> None:
    """Apply migrations/central/*.sql to the payments_central schema (cutover step 2)."""
    state: CliState = ctx.obj

    async def action(c: Container) -> list[int]:
        return await migrate_central(c.db, c.central_migrations)

    applied = run(ctx, action)
    done = ", ".join(f"{v:04d}" for v in applied) or "nothing (up to date)"
    state.out.print(f"[green]✓[/] central migrations applied: {done}")


def migrate_tenant_cmd(
    ctx: typer.Context,
    tenant_id: Annotated[str, typer.Argument(help="Tenant id.", callback=tenant_id_arg)],
    dry_run: DryRun = False,
) -> None:
    """Apply pending tenant migrations to one tenant; resumes a tenant migrate-all left failed.

    Example: payments-admin-cli migrate-tenant tnt_01HXYZ --dry-run
    """

    async def action(c: Container) -> list[TenantResult]:
        async with c.db.connection() as conn:
            tenant = await get_tenant(conn, tenant_id)
        if tenant.status not in SERVING_STATUSES:
            raise TenantStateError(f"tenant {tenant_id} is {tenant.status}; nothing to migrate")
        return await migrate_tenants(c.db, [tenant], c.tenant_migrations, dry_run=dry_run)

    _report(ctx, run(ctx, action), dry_run=dry_run)


def migrate_all_cmd(
    ctx: typer.Context,
    dry_run: DryRun = False,
    only_failed: Annotated[
        bool, typer.Option(help="Only tenants whose last migration failed.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=200, help="Tenants in parallel.")] = 50,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per tenant attempt.")] = 30.0,
    retries: Annotated[int, typer.Option(min=0, max=10, help="Retries per tenant.")] = 3,
) -> None:
    """Apply pending tenant migrations to every tenant (MIGRATION_PLAN 3.1).

    Batches of 50 tenants in parallel, 30 s per tenant, 3 automatic retries; tenants still
    failing are listed, kept on the registry, and resumed with migrate-tenant or
    --only-failed. Exit code 1 when any tenant failed.

    Example: payments-admin-cli migrate-all --dry-run
    """
    state: CliState = ctx.obj
    policy = RolloutPolicy(batch_size=batch_size, timeout_seconds=timeout, retries=retries)

    async def action(c: Container) -> list[TenantResult]:
        tenants = await rollout_targets(c.db, only_failed=only_failed)
        with Progress(
            TextColumn("migrating tenants"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=state.err,
            transient=True,
        ) as progress:
            task = progress.add_task("tenants", total=len(tenants))
            return await migrate_tenants(
                c.db,
                tenants,
                c.tenant_migrations,
                policy=policy,
                dry_run=dry_run,
                on_result=lambda _: progress.advance(task),
            )

    _report(ctx, run(ctx, action, pool_max=batch_size + 1), dry_run=dry_run)


def _report(ctx: typer.Context, results: list[TenantResult], *, dry_run: bool) -> None:
    state: CliState = ctx.obj
    verb = "would apply" if dry_run else "applied"
    changed = [r for r in results if r.outcome is not None and r.outcome.versions]
    for result in changed:
        assert result.outcome is not None  # noqa: S101 (narrowing for the type checker)
        versions = ", ".join(f"{v:04d}" for v in result.outcome.versions)
        state.out.print(f"  {result.tenant_id}: {verb} {versions}")
        for change in result.outcome.changes:
            state.out.print(f"      {change}", markup=False)
    failed = [r for r in results if not r.ok]
    ok = len(results) - len(failed)
    state.out.print(
        f"{len(results)} tenant(s): {ok} ok ({len(changed)} changed), {len(failed)} failed"
    )
    if failed:
        for result in failed:
            state.err.print(
                f"  FAILED {result.tenant_id} after {result.attempts} attempt(s): {result.error}",
                markup=False,
            )
        fail(state, f"{len(failed)} tenant(s) failed to migrate", EXIT_FAILED)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("migrate-central")(migrate_central_cmd)
    app.command("migrate-tenant")(migrate_tenant_cmd)
    app.command("migrate-all")(migrate_all_cmd)
