"""payments-admin-cli webhooks: the ingestion switch, parked rows and their retry."""

import json
from collections.abc import Callable

import pytest

from tests.integration.conftest import Cli
from tests.integration.test_cli_migrate import query
from tests.integration.test_cli_tenants import provision

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ingestion_switch")]
_PARKED = """
INSERT INTO payments_central.webhook_inbox
       (processor, vendor_event_id, tenant_id, event_type, payload, status, attempts, last_error)
VALUES ('stripe', $1, $2, 'payment_intent.amount_capturable_updated', '{}', 'parked', 7,
        'gave up waiting: no payment of this tenant matches it yet')
RETURNING inbox_id
"""


def test_pause_status_resume(cli: Cli) -> None:
    """Pause, see it, resume; a second pause or resume says it changed nothing."""
    paused = cli("webhooks", "pause", "--reason", "PITR restore", "--by", "sre-oncall")
    assert paused.exit_code == 0, paused.output
    assert "paused" in paused.output
    assert "PAUSED (PITR restore)" in cli("webhooks", "status").output
    assert "already paused" in cli("webhooks", "pause", "--reason", "x", "--by", "y").output
    resumed = cli("webhooks", "resume", "--by", "sre-oncall")
    assert (resumed.exit_code, "resumed" in resumed.output) == (0, True)
    assert "running" in cli("webhooks", "status").output
    assert "was not paused" in cli("webhooks", "resume", "--by", "sre-oncall").output


def test_parked_rows_are_listed_and_queued_again(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """A parked row shows with its reason; retry makes it pending, due now; only once."""
    tenant = tenant_ids()
    provision(cli, tenant)
    [row] = query(database_dsn, _PARKED, f"evt_parked_{tenant}", tenant)
    inbox_id = row["inbox_id"]

    listed = cli("webhooks", "list", "--tenant", tenant, "--json")
    assert listed.exit_code == 0, listed.output
    [entry] = [json.loads(line) for line in listed.output.splitlines()]
    assert (entry["inbox_id"], entry["status"], entry["attempts"]) == (inbox_id, "parked", 7)
    assert entry["last_error"].startswith("gave up waiting")
    assert "1 parked row(s)" in cli("webhooks", "list", "--tenant", tenant).output

    retried = cli("webhooks", "retry", str(inbox_id))
    assert retried.exit_code == 0, retried.output
    [after] = query(
        database_dsn,
        "SELECT status FROM payments_central.webhook_inbox WHERE inbox_id = $1",
        inbox_id,
    )
    assert after["status"] == "pending"
    again = cli("webhooks", "retry", str(inbox_id))
    assert again.exit_code == 2
    assert f"no parked inbox row {inbox_id}" in again.output


@pytest.mark.parametrize(
    "args",
    [
        ("webhooks", "pause", "--reason", "  ", "--by", "sre"),
        ("webhooks", "pause", "--by", "sre"),
        ("webhooks", "pause", "--reason", "x" * 501, "--by", "sre"),
        ("webhooks", "resume"),
        ("webhooks", "list", "--status", "lost"),
        ("webhooks", "list", "--tenant", "bad tenant"),
        ("webhooks", "list", "--limit", "0"),
        ("webhooks", "retry", "0"),
        ("webhooks", "retry", "abc"),
    ],
)
def test_malformed_arguments_are_refused(cli: Cli, args: tuple[str, ...]) -> None:
    """Bad input: exit 2 with a message, nothing done."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "running" in cli("webhooks", "status").output
