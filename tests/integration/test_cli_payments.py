"""payments-admin-cli gc-idempotency and payments show, attention and resolve, on real sagas."""

import asyncio
import json
import re
import shlex
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from processors.fake import Decline, TimeoutAfterApply
from sagas.model import OperationKind
from schemas.processors import Processor
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.integration.conftest import Cli
from tests.integration.outbox_helpers import provisioned
from tests.integration.saga_helpers import (
    Payments,
    authorize,
    cancel,
    capture,
    make_payments,
    short,
    void,
)
from tests.integration.test_cli_migrate import query
from tests.integration.test_cli_tenants import provision
from tests.pg import new_token

pytestmark = pytest.mark.integration
T = TypeVar("T")
START = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
"""Where both the CLI's clock and the payment handlers' clock start."""


def in_tenant(dsn: str, tenant: str, scenario: Callable[[Payments], Awaitable[T]]) -> T:
    """Run ``scenario`` with ``tenant``'s payment handlers (all processors attached)."""

    async def go() -> T:
        db = await Database.open(dsn, min_size=1, max_size=4)
        try:
            return await scenario(await make_payments(db, tenant))
        finally:
            await db.close()

    return asyncio.run(go())


def table(dsn: str, tenant: str, sql: str, *args: object) -> list[dict[str, Any]]:
    """Rows of ``sql``, where ``{schema}`` names the tenant's schema."""
    return [dict(row) for row in query(dsn, sql.replace("{schema}", f'"{tenant.lower()}"'), *args)]


def keys_of(dsn: str, tenant: str) -> list[str]:
    """The tenant's idempotency keys, sorted."""
    rows = table(dsn, tenant, "SELECT idempotency_key FROM {schema}.idempotency_keys ORDER BY 1")
    return [row["idempotency_key"] for row in rows]


def payment_of(dsn: str, tenant: str, payment_id: str) -> dict[str, Any]:
    """The stored payment row."""
    [row] = table(dsn, tenant, "SELECT * FROM {schema}.payments WHERE payment_id = $1", payment_id)
    return row


def outbox_names(dsn: str, tenant: str, payment_id: str) -> list[str]:
    """Short type names of the payment's events in the outbox, oldest first."""
    rows = query(
        dsn,
        "SELECT attributes->>'ce-type' AS type FROM payments_central.outbox"
        " WHERE tenant_id = $1 AND ordering_key = $2 ORDER BY outbox_id",
        tenant,
        payment_id,
    )
    return [short(row["type"]) for row in rows]


async def settled_and_open(payments: Payments) -> None:
    """An authorized payment, a captured one, a voided one, and a captured one 6 days later."""
    await payments.send(authorize("held"))
    await payments.send(authorize("taken"))
    await payments.send(capture("taken"))
    await payments.send(authorize("released"))
    await payments.send(void("released"))
    payments.advance(timedelta(days=6))
    await payments.send(authorize("recent"))
    await payments.send(capture("recent"))


def test_gc_deletes_only_expired_keys_of_settled_payments(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """After 8 days the rows of captured, voided and absent payments go; open or new ones stay."""
    tenant = tenant_ids()
    provision(cli, tenant)
    in_tenant(database_dsn, tenant, settled_and_open)
    table(
        database_dsn,
        tenant,
        "INSERT INTO {schema}.idempotency_keys (idempotency_key, payment_id, command_type,"
        " request_hash, message_id, created_at, expires_at)"
        " VALUES ('orphan', 'never_stored', 'authorize', repeat('0', 64), 'm', $1, $2)",
        START - timedelta(days=30),
        START - timedelta(days=23),
    )
    table(
        database_dsn,
        tenant,
        "INSERT INTO {schema}.processed_messages (message_id, payment_id, processed_at)"
        " VALUES ('no-payment', NULL, $1)",
        START - timedelta(days=30),
    )
    assert len(keys_of(database_dsn, tenant)) == 8
    cli.clock.now = START + timedelta(days=8)

    result = cli("gc-idempotency", "--tenant", tenant, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["keys_deleted"], report["messages_deleted"], report["failed"]) == (5, 5, [])
    assert report["tenants"] == [
        {"tenant_id": tenant, "keys_deleted": 5, "messages_deleted": 5, "error": None}
    ]
    assert keys_of(database_dsn, tenant) == ["auth-held", "auth-recent", "cap-recent-None-True"]
    messages = table(
        database_dsn, tenant, "SELECT payment_id FROM {schema}.processed_messages ORDER BY 1"
    )
    assert [row["payment_id"] for row in messages] == ["held", "recent", "recent"]

    again = cli("gc-idempotency", "--tenant", tenant, "--batch", "1")
    assert again.exit_code == 0, again.output
    assert "1 tenant(s): 0 key(s) and 0 message(s) deleted, 0 failed" in again.stdout


def test_gc_deletes_in_batches_and_goes_on_past_a_failing_tenant(
    cli_factory: Callable[[str], Cli],
    database_factory: Callable[[], str],
    tenant_ids: Callable[[], str],
) -> None:
    """Every served tenant is cleaned in batches of 1; a broken tenant is listed and exits 1."""
    dsn = database_factory()  # its own: the totals count every tenant in the registry
    cli = cli_factory(dsn)
    first, second, broken, leaving = tenant_ids(), tenant_ids(), tenant_ids(), tenant_ids()
    for tenant in (first, second, broken, leaving):
        provision(cli, tenant)
    query(
        dsn,
        "UPDATE payments_central.tenant_schema_registry SET status = 'offboarding',"
        " soft_deleted_at = $2 WHERE tenant_id = $1",
        leaving,
        START,
    )
    for tenant in (first, second):
        in_tenant(dsn, tenant, settled_and_open)
    table(dsn, broken, "DROP TABLE {schema}.processed_messages")
    cli.clock.now = START + timedelta(days=8)
    cli.env["COLUMNS"] = "200"

    result = cli("gc-idempotency", "--batch", "1")
    assert result.exit_code == 1, result.output
    assert "3 tenant(s): 8 key(s) and 8 message(s) deleted, 1 failed" in result.stdout
    lines = result.stdout.splitlines()
    for tenant in (first, second):
        assert any(re.search(rf"{tenant}\W+4\W+4\W", line) for line in lines), result.stdout
        assert keys_of(dsn, tenant) == ["auth-held", "auth-recent", "cap-recent-None-True"]
    assert f"FAILED {broken}: UndefinedTableError" in result.stderr
    assert "1 tenant(s) failed" in result.stderr
    assert leaving not in result.stdout
    named = cli("gc-idempotency", "--tenant", leaving)
    assert named.exit_code == 2
    assert f"tenant {leaving} is offboarding" in named.output


def test_gc_refuses_an_unknown_or_malformed_tenant(cli: Cli) -> None:
    """gc-idempotency with a tenant the registry lacks, or a malformed id, exits 2."""
    unknown = cli("gc-idempotency", "--tenant", "tnt_never_was")
    assert unknown.exit_code == 2
    assert "unknown tenant tnt_never_was" in unknown.output
    malformed = cli("gc-idempotency", "--tenant", "x; drop schema y")
    assert malformed.exit_code == 2
    assert "invalid tenant id" in malformed.output


def test_show_prints_the_payment_and_its_timeline(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """The show command lists operations, transitions and events; --json holds the same."""
    tenant = tenant_ids()
    provision(cli, tenant)

    async def scenario(payments: Payments) -> None:
        await payments.send(authorize("shown", 1250))
        await payments.send(capture("shown", 500, final=False))

    in_tenant(database_dsn, tenant, scenario)
    cli.env["COLUMNS"] = "250"
    result = cli("payments", "show", tenant, "shown")
    assert result.exit_code == 0, result.output
    assert "payment shown: partially_captured (version 4)" in result.stdout
    assert "amount 12.50 USD; authorized 12.50, captured 5.00, refunded 0.00" in result.stdout
    for text in ("authorize", "capture", "succeeded", "(new) -> authorizing (authorize)"):
        assert text in result.stdout
    assert "capturing -> partially_captured (capture_succeeded)" in result.stdout
    assert "event payment.authorized" in result.stdout
    assert "event payment.captured" in result.stdout
    assert "authorization_expiry" in result.stdout

    as_json = cli("payments", "show", tenant, "shown", "--json")
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.stdout)
    assert (shown["tenant_id"], shown["payment"]["state"]) == (tenant, "partially_captured")
    operations = [(op["seq"], op["kind"], op["status"]) for op in shown["operations"]]
    assert operations == [(1, "authorize", "succeeded"), (2, "capture", "succeeded")]
    assert shown["operations"][0]["idempotency_key"] == f"{tenant}:shown:authorize:1"
    assert [t["to_state"] for t in shown["transitions"]] == [
        "authorizing",
        "authorized",
        "capturing",
        "partially_captured",
    ]
    assert [short(e["type"]) for e in shown["events"]] == ["payment.authorized", "payment.captured"]
    assert shown["events"][1]["data"]["amount"] == {"minor": 500, "currency": "USD"}
    assert [t["kind"] for t in shown["timers"]] == ["authorization_expiry"]


def test_show_of_an_unknown_payment_exits_2(cli: Cli, tenant_ids: Callable[[], str]) -> None:
    """The show command names an unknown payment, an unknown tenant or a malformed id; exit 2."""
    tenant = tenant_ids()
    provision(cli, tenant)
    for args, message in [
        ((tenant, "nope"), f"unknown payment nope in {tenant}"),
        (("tnt_never_was", "nope"), "unknown tenant tnt_never_was"),
        ((tenant, "not a payment!"), "invalid payment id"),
        (("x; drop", "nope"), "invalid tenant id"),
    ]:
        result = cli("payments", "show", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output


def test_resolving_an_in_doubt_authorization_authorizes_it(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """An operator's succeeded outcome authorizes an in-doubt payment and announces it."""
    tenant = tenant_ids()
    provision(cli, tenant)

    async def scenario(payments: Payments) -> None:
        payments.fakes[Processor.STRIPE].script(OperationKind.AUTHORIZE, TimeoutAfterApply())
        await payments.send(authorize("doubt"))

    in_tenant(database_dsn, tenant, scenario)
    assert payment_of(database_dsn, tenant, "doubt")["state"] == "in_doubt"
    listed = cli("payments", "attention", tenant, "--json")
    assert listed.exit_code == 0, listed.output
    [item] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (item["payment_id"], item["state"]) == ("doubt", "in_doubt")
    assert item["open_operations"] == [{"seq": 1, "kind": "authorize", "status": "in_doubt"}]

    decision = ["--operation", "1", "--outcome", "succeeded", "--reference", "pi_dashboard"]
    note = "succeeded on the Stripe dashboard"
    result = cli("payments", "resolve", tenant, "doubt", *decision, "--note", note)
    assert result.exit_code == 0, result.output
    assert "doubt is authorized" in result.stdout
    row = payment_of(database_dsn, tenant, "doubt")
    assert (row["state"], row["processor_reference"]) == ("authorized", "pi_dashboard")
    assert outbox_names(database_dsn, tenant, "doubt") == ["payment.authorized"]
    last = table(
        database_dsn,
        tenant,
        "SELECT cause, detail FROM {schema}.payment_transitions ORDER BY version DESC LIMIT 1",
    )
    assert last == [
        {"cause": "operator_resolved", "detail": "operator: succeeded on the Stripe dashboard"}
    ]
    assert cli("payments", "attention", tenant, "--json").stdout == ""


def test_resolving_an_operation_with_no_open_outcome_is_refused(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """The saga refuses to settle an operation that already has its outcome: exit 1, no change."""
    tenant = tenant_ids()
    provision(cli, tenant)

    async def scenario(payments: Payments) -> None:
        await payments.send(authorize("done"))

    in_tenant(database_dsn, tenant, scenario)
    before = payment_of(database_dsn, tenant, "done")
    decision = ["--operation", "1", "--outcome", "failed", "--note", "nothing there"]
    result = cli("payments", "resolve", tenant, "done", *decision)
    assert result.exit_code == 1, result.output
    assert "refused, nothing changed: operation #1 has no open outcome" in result.output
    assert payment_of(database_dsn, tenant, "done") == before
    assert outbox_names(database_dsn, tenant, "done") == ["payment.authorized"]


@pytest.fixture(scope="module")
def in_doubt_tenant(
    database_dsn: str, worker_token: str, tenant_migrations: tuple[Migration, ...]
) -> str:
    """A tenant whose payment ``doubt`` has an in-doubt authorization (operation #1)."""
    tenant = f"tnt_{worker_token}_{new_token()}doubt"

    async def go() -> None:
        db = await Database.open(database_dsn, min_size=1, max_size=4)
        try:
            payments = await make_payments(db, await provisioned(db, tenant_migrations, tenant))
            payments.fakes[Processor.STRIPE].script(OperationKind.AUTHORIZE, TimeoutAfterApply())
            await payments.send(authorize("doubt"))
        finally:
            await db.close()

    asyncio.run(go())
    return tenant


RESOLVE = "--operation 1 --outcome failed --note checked"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (f"'x; drop' doubt {RESOLVE}", "invalid tenant id"),
        (f"tnt_never_was doubt {RESOLVE}", "unknown tenant tnt_never_was"),
        (f"{{tenant}} ghost {RESOLVE}", "unknown payment ghost"),
        ("{tenant} doubt --operation one --outcome failed --note n", "Invalid value"),
        ("{tenant} doubt --operation 9 --outcome failed --note n", "has no operation #9"),
        (
            "{tenant} doubt --operation 1 --outcome succeeded --note n",
            "a successful outcome needs the vendor reference",
        ),
        ("{tenant} doubt --operation 1 --outcome maybe --note n", "Invalid value"),
        ("{tenant} doubt --operation 1 --outcome failed", "Missing option"),
        ("{tenant} doubt --operation 1 --outcome failed --note ' '", "--note must say"),
        ("{tenant} doubt --operation 1 --note n", "give --operation SEQ"),
        (
            "{tenant} doubt --operation 1 --outcome failed --note 'card 4242 4242 4242 4242'",
            "--note holds what looks like a card number",
        ),
        (
            "{tenant} doubt --retry-compensation --operation 1 --note n",
            "--retry-compensation takes no --operation",
        ),
        (f"{{tenant}} doubt {RESOLVE} --reference pi_1", "--reference goes with --outcome"),
    ],
)
def test_resolve_refuses_malformed_arguments(
    cli: Cli, database_dsn: str, in_doubt_tenant: str, args: str, message: str
) -> None:
    """A resolve the arguments do not support exits 2 with the reason and changes nothing."""
    result = cli("payments", "resolve", *shlex.split(args.format(tenant=in_doubt_tenant)))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "4242" not in result.output
    row = payment_of(database_dsn, in_doubt_tenant, "doubt")
    assert (row["state"], row["version"]) == ("in_doubt", 2)


def test_retry_compensation_sends_the_new_refund_at_once(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """--retry-compensation starts a new refund and sends it, not leaving it to a timer."""
    tenant = tenant_ids()
    provision(cli, tenant)

    async def scenario(payments: Payments) -> None:
        await payments.send(authorize("comp", 800))
        await payments.send(capture("comp"))
        payments.fakes[Processor.STRIPE].script(OperationKind.REFUND, Decline("processor_error"))
        await payments.send(cancel("comp"))

    in_tenant(database_dsn, tenant, scenario)
    assert payment_of(database_dsn, tenant, "comp")["state"] == "compensation_failed"
    cli.env["COLUMNS"] = "200"
    listed = cli("payments", "attention", tenant)
    assert listed.exit_code == 0, listed.output
    assert "compensation_failed" in listed.stdout
    assert "1 payment(s) need an operator" in listed.stdout

    note = "refund limit raised by the vendor"
    result = cli("payments", "resolve", tenant, "comp", "--retry-compensation", "--note", note)
    assert result.exit_code == 0, result.output
    assert "operation(s) sent: #4" in result.stdout
    refund = table(
        database_dsn,
        tenant,
        "SELECT kind, attempts, status FROM {schema}.payment_operations WHERE seq = 4",
    )
    # The CLI's in-memory processors never saw this capture, so the vendor refuses the
    # refund: what matters here is that it was sent, once, by the command itself.
    assert refund == [{"kind": "refund", "attempts": 1, "status": "failed"}]
    assert "attention: cancellation failed: refund #4" in result.stdout


def test_every_payments_command_has_help_with_an_example(cli: Cli) -> None:
    """--help works for gc-idempotency and each payments command, each with an example."""
    for command in (
        ("gc-idempotency",),
        ("payments", "show"),
        ("payments", "attention"),
        ("payments", "resolve"),
    ):
        result = cli(*command, "--help")
        assert result.exit_code == 0, result.output
        assert "Example" in result.stdout
    assert cli("payments", "--help").exit_code == 0
