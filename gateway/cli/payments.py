"""Commands: gc-idempotency, and payments show, attention and resolve for operators."""

import json
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

import typer
from pydantic import TypeAdapter, ValidationError
from rich.table import Table
from rich.text import Text

from gateway.bootstrap import Container
from gateway.cli.runner import EXIT_FAILED, CliState, fail, run, tenant_id_arg
from gateway.payments import services_for
from handlers.maintenance import (
    AttentionItem,
    GcReport,
    OperatorRequestError,
    Resolution,
    Timeline,
    gc_idempotency,
    list_attention,
    payment_timeline,
    resolve,
)
from sagas.messages import OperatorResolved, RetryCompensation
from schemas.cards import contains_card_number
from schemas.commands import PaymentId
from schemas.money import Money

MAX_NOTE: Final = 500
MAX_REFERENCE: Final = 255
_PAYMENT_ID: Final = TypeAdapter(PaymentId)


def payment_id_arg(value: str) -> str:
    """Typer callback: refuse a malformed payment id before anything else runs."""
    try:
        return _PAYMENT_ID.validate_python(value)
    except ValidationError as exc:
        raise typer.BadParameter(
            f"invalid payment id {value[:70]!r}: expected 1-64 of [A-Za-z0-9_-]"
        ) from exc


def _tenant_ids(values: list[str] | None) -> list[str] | None:
    return [tenant_id_arg(value) for value in values] if values else None


TenantIdArg = Annotated[str, typer.Argument(help="Tenant id.", callback=tenant_id_arg)]
PaymentIdArg = Annotated[str, typer.Argument(help="Payment id.", callback=payment_id_arg)]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


class OperationOutcome(StrEnum):
    """What the operator found at the vendor."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


def gc_idempotency_cmd(
    ctx: typer.Context,
    tenants: Annotated[
        list[str] | None,
        typer.Option(
            "--tenant",
            help="Only this tenant; repeat for more (default: every served tenant).",
            callback=_tenant_ids,
        ),
    ] = None,
    batch: Annotated[
        int, typer.Option(min=1, max=10_000, help="Rows deleted per transaction.")
    ] = 1000,
    as_json: AsJson = False,
) -> None:
    """Delete expired idempotency keys and old processed messages of settled payments.

    The hourly payments-idempotency-gc CronJob. Keys past their expiry and processed
    messages older than 7 days are deleted only when their payment is settled (or has no
    row); those of payments still open are kept, since their commands may be retried.
    Rows go in batches, one short transaction each. Exit code 1 when any tenant failed;
    the other tenants are cleaned all the same.

    Example: payments-admin-cli gc-idempotency --tenant tnt_01HXYZ --json
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> GcReport:
        return await gc_idempotency(c.db, c.clock(), tenant_ids=tenants, batch=batch)

    report = run(ctx, action)
    if as_json:
        typer.echo(json.dumps(_gc_json(report)))
    else:
        table = Table("tenant", "keys deleted", "messages deleted", "error")
        for done in report.tenants:
            if done.keys_deleted or done.messages_deleted or done.error:
                row = (done.keys_deleted, done.messages_deleted, done.error or "")
                table.add_row(*_cells(done.tenant_id, *row))
        if table.row_count:
            state.out.print(table)
        state.out.print(
            f"{len(report.tenants)} tenant(s): {report.keys_deleted} key(s) and"
            f" {report.messages_deleted} message(s) deleted, {len(report.failed)} failed"
        )
    if report.failed:
        for done in report.failed:
            state.err.print(f"  FAILED {done.tenant_id}: {done.error}", markup=False)
        fail(state, f"{len(report.failed)} tenant(s) failed", EXIT_FAILED)


def _gc_json(report: GcReport) -> dict[str, object]:
    return {
        "tenants": [asdict(done) for done in report.tenants],
        "keys_deleted": report.keys_deleted,
        "messages_deleted": report.messages_deleted,
        "failed": [done.tenant_id for done in report.failed],
    }


def show_cmd(
    ctx: typer.Context, tenant_id: TenantIdArg, payment_id: PaymentIdArg, as_json: AsJson = False
) -> None:
    """Show a payment: its amounts, vendor operations, timers, and its timeline of events.

    Example: payments-admin-cli payments show tnt_01HXYZ pay_8f2k --json
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> Timeline | None:
        return await payment_timeline(c.db, tenant_id, payment_id)

    timeline = run(ctx, action)
    if timeline is None:
        fail(state, f"unknown payment {payment_id} in {tenant_id}")
    if as_json:
        typer.echo(json.dumps({"tenant_id": tenant_id, **asdict(timeline)}, default=_iso))
        return
    _print_summary(state, timeline)
    headers = ("#", "kind", "processor", "amount", "status", "tries", "inquiries", "reference")
    operations = Table(*headers, "failure", title="operations", title_justify="left")
    for op in timeline.operations:
        failure = " ".join(filter(None, (op.failure_code, op.last_error)))
        amount = _money(op.amount_minor, timeline.payment.currency)
        row = (op.kind, op.processor, amount, op.status, op.attempts, op.inquiries)
        operations.add_row(*_cells(op.seq, *row, op.vendor_reference or "", failure))
    state.out.print(operations)
    if timeline.timers:
        timers = Table("timer", "#", "due", "leased until", title="timers", title_justify="left")
        for t in timeline.timers:
            timers.add_row(*_cells(t.kind, t.seq or "", _at(t.due_at), _at(t.lease_until)))
        state.out.print(timers)
    state.out.print(_history(timeline))


def _print_summary(state: CliState, timeline: Timeline) -> None:
    p = timeline.payment
    state.out.print(f"payment {p.payment_id}: {p.state} (version {p.version})", markup=False)
    state.out.print(
        f"  amount {_money(p.amount_minor, p.currency)} {p.currency}; authorized"
        f" {_money(p.authorized_minor, p.currency)}, captured"
        f" {_money(p.captured_minor, p.currency)}, refunded {_money(p.refunded_minor, p.currency)}"
    )
    state.out.print(
        f"  processor {p.processor or '-'}, reference {p.processor_reference or '-'};"
        f" created {_at(p.created_at)}, updated {_at(p.updated_at)}",
        markup=False,
    )
    if p.attention:
        state.out.print(Text(f"  attention: {p.attention}", style="bold red"))


def _history(timeline: Timeline) -> Table:
    """Transitions and the events each one emitted, interleaved by time."""
    rows: list[tuple[tuple[datetime, int, int, int], tuple[str, ...]]] = []
    for t in timeline.transitions:
        change = f"{t.from_state or '(new)'} -> {t.to_state} ({t.cause})"
        detail = "; ".join(filter(None, (t.detail, t.message_id and f"message {t.message_id}")))
        rows.append(((t.at, t.version, 0, 0), (_at(t.at), str(t.version), change, detail)))
    for index, e in enumerate(timeline.events):
        name = ".".join(e.type.rsplit(".", 3)[-3:-1])
        data = json.dumps({k: v for k, v in e.data.items() if k != "payment_id"})
        detail = f"key {e.command_key}; {data}" if e.command_key else data
        when = (e.created_at, e.version, 1, index)
        rows.append((when, (_at(e.created_at), str(e.version), f"event {name}", detail)))
    table = Table("at (UTC)", "v", "what", "detail", title="timeline", title_justify="left")
    for _, cells in sorted(rows, key=lambda row: row[0]):
        table.add_row(*_cells(*cells))
    return table


def attention_cmd(ctx: typer.Context, tenant_id: TenantIdArg, as_json: AsJson = False) -> None:
    """List the payments an operator must act on: in doubt, failed compensations, flagged.

    The list handed to reconciliation; settle each with payments resolve.

    Example: payments-admin-cli payments attention tnt_01HXYZ --json
    """
    state: CliState = ctx.obj

    async def action(c: Container) -> list[AttentionItem]:
        return await list_attention(c.db, tenant_id)

    items = run(ctx, action)
    if as_json:
        for item in items:
            typer.echo(json.dumps(asdict(item), default=_iso))
        return
    table = Table("payment", "state", "open operations", "amount", "updated", "attention")
    for item in items:
        ops = ", ".join(f"#{op.seq} {op.kind} {op.status}" for op in item.open_operations)
        amount = f"{_money(item.amount_minor, item.currency)} {item.currency}"
        row = (item.state, ops or "-", amount, _at(item.updated_at), item.attention or "")
        table.add_row(*_cells(item.payment_id, *row))
    state.out.print(table)
    state.out.print(f"{len(items)} payment(s) need an operator")


def resolve_cmd(
    ctx: typer.Context,
    tenant_id: TenantIdArg,
    payment_id: PaymentIdArg,
    note: Annotated[
        str, typer.Option(help="What was checked, and where; kept in the payment's timeline.")
    ],
    operation: Annotated[
        int | None, typer.Option(min=1, help="The operation's # (see payments show).")
    ] = None,
    outcome: Annotated[
        OperationOutcome | None, typer.Option(help="What the vendor shows for the operation.")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="The vendor's id of what it created; required if succeeded, but voids."),
    ] = None,
    retry_compensation: Annotated[
        bool, typer.Option("--retry-compensation", help="Try a failed cancellation again.")
    ] = False,
) -> None:
    """Settle an operation whose outcome is open, or retry a failed cancellation.

    The decision goes through the same saga guard as commands and webhooks; a refusal
    changes nothing (exit code 1). Operations the decision starts (the next step of a
    cancellation, an automatic capture) are sent at once.

    Example: payments-admin-cli payments resolve tnt_01HXYZ pay_8f2k --operation 1
    --outcome succeeded --reference pi_3Nq --note "succeeded on the Stripe dashboard"

    Example: payments-admin-cli payments resolve tnt_01HXYZ pay_8f2k --retry-compensation
    --note "refund limit raised by Stripe support"
    """
    state: CliState = ctx.obj
    decision = _decision(state, note, operation, outcome, reference, retry=retry_compensation)

    async def action(c: Container) -> tuple[Resolution, Timeline | None]:
        resolution = await resolve(c.db, tenant_id, payment_id, decision, c.clock())
        if resolution.execute:
            await services_for(c).executor.run(tenant_id, payment_id, resolution.execute)
        return resolution, await payment_timeline(c.db, tenant_id, payment_id)

    try:
        resolution, timeline = run(ctx, action)
    except OperatorRequestError as exc:
        fail(state, str(exc))
    if resolution.refused is not None:
        fail(state, f"refused, nothing changed: {resolution.refused}", EXIT_FAILED)
    final = resolution.state if timeline is None else timeline.payment.state
    state.out.print(f"[green]✓[/] {payment_id} is {final}", highlight=False)
    if resolution.execute:
        sent = ", ".join(f"#{seq}" for seq in resolution.execute)
        state.out.print(f"  operation(s) sent: {sent}")
    if timeline is not None and timeline.payment.attention:
        state.out.print(Text(f"  attention: {timeline.payment.attention}", style="bold red"))


def _decision(
    state: CliState,
    note: str,
    operation: int | None,
    outcome: OperationOutcome | None,
    reference: str | None,
    *,
    retry: bool,
) -> OperatorResolved | RetryCompensation:
    """The operator's decision from the options, or exit 2 naming what does not fit."""
    note = note.strip()
    if not note or len(note) > MAX_NOTE:
        fail(state, f"--note must say what was checked, in 1-{MAX_NOTE} characters")
    if reference is not None and not 0 < len(reference) <= MAX_REFERENCE:
        fail(state, f"--reference must be 1-{MAX_REFERENCE} characters")
    for option, text in (("--note", note), ("--reference", reference or "")):
        if contains_card_number(text):
            fail(state, f"{option} holds what looks like a card number; card data is never kept")
    if retry:
        if operation is not None or outcome is not None or reference is not None:
            fail(state, "--retry-compensation takes no --operation, --outcome or --reference")
        return RetryCompensation(note)
    if operation is None or outcome is None:
        fail(state, "give --operation SEQ and --outcome succeeded|failed, or --retry-compensation")
    if outcome is OperationOutcome.FAILED and reference is not None:
        fail(state, "--reference goes with --outcome succeeded")
    succeeded = outcome is OperationOutcome.SUCCEEDED
    return OperatorResolved(operation, succeeded=succeeded, reference=reference, note=note)


def _money(minor: int, currency: str) -> str:
    try:
        return Money(minor=minor, currency=currency).to_decimal_string()
    except ValueError:  # a currency missing from the table: show what is stored
        return f"{minor} minor units"


def _at(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _cells(*values: object) -> list[Text]:
    """Table cells shown as stored: vendor texts may contain rich markup characters."""
    return [Text(str(value)) for value in values]


def register(app: typer.Typer) -> None:
    """Add gc-idempotency and the ``payments`` command group to ``app``."""
    app.command("gc-idempotency")(gc_idempotency_cmd)
    payments = typer.Typer(
        help="One tenant's payments: timeline, the operator list, operator decisions.",
        no_args_is_help=True,
    )
    payments.command("show")(show_cmd)
    payments.command("attention")(attention_cmd)
    payments.command("resolve")(resolve_cmd)
    app.add_typer(payments, name="payments")
