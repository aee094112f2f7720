"""payments-admin-cli provision-tenant, attach-vendor and list-tenants, end to end."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from tenancy.secrets import FileSecretStore, SecretRef
from tests.integration.conftest import Cli

pytestmark = pytest.mark.integration
KEY = "projects/gm-payments-dev/secrets/{tenant}/stripe/sandbox/api_key/versions/latest"
HOOK = "projects/gm-payments-dev/secrets/{tenant}/stripe/sandbox/webhook_secret/versions/latest"


def put_secret(cli: Cli, ref: str, value: str) -> None:
    """Store a secret where the CLI's file store will find it."""
    store = FileSecretStore(cli.secret_dir)
    asyncio.run(store.add_version(SecretRef.parse(ref), SecretStr(value)))


def provision(cli: Cli, tenant: str) -> None:
    """Provision ``tenant`` and insist it worked."""
    result = cli("provision-tenant", "--tenant-id", tenant, "--pci-profile", "saq_a")
    assert result.exit_code == 0, result.output


def attach_args(tenant: str, *extra: str) -> list[str]:
    """A valid attach-vendor command line for Stripe's sandbox, plus ``extra``."""
    return [
        "attach-vendor",
        "--tenant-id",
        tenant,
        "--processor",
        "stripe",
        "--env",
        "sandbox",
        "--account-ref",
        "acct_1NXz",
        "--api-key-from-secret",
        KEY.format(tenant=tenant),
        "--webhook-secret-from-secret",
        HOOK.format(tenant=tenant),
        *extra,
    ]


def count_attachments(dsn: str, tenant: str) -> int:
    """How many vendor attachments the registry holds for ``tenant``."""

    async def go() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM payments_central.vendor_attachments WHERE tenant_id = $1",
                tenant,
            )
        finally:
            await conn.close()
        return count

    return asyncio.run(go())


def test_provision_tenant_prints_each_step(cli: Cli, tenant_ids: Callable[[], str]) -> None:
    """provision-tenant reports schema, role, migrations and the denied cross-tenant probes."""
    tenant = tenant_ids()
    cmek = "projects/gm-payments-dev/locations/us/keyRings/gm-payments/cryptoKeys/" + tenant
    result = cli("provision-tenant", "--tenant-id", tenant, "--cmek-key", cmek)
    assert result.exit_code == 0, result.output
    assert f"{tenant} provisioned" in result.stdout
    assert "payments_isolation_canary.payments denied" in result.stdout
    again = cli("provision-tenant", "--tenant-id", tenant, "--cmek-key", cmek)
    assert again.exit_code == 0, again.output
    assert "already provisioned" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant-id", "x; drop schema y"], "invalid tenant id"),
        (["--tenant-id", "tnt_ok", "--pci-profile", "saq_d"], "unsupported PCI profile"),
        (["--tenant-id", "tnt_ok", "--cmek-key", "not-a-key"], "invalid CMEK key"),
    ],
)
def test_provision_tenant_refuses_bad_input(
    cli: Cli, database_dsn: str, args: list[str], message: str
) -> None:
    """Bad provisioning input exits 2 with a clear message and creates nothing."""
    result = cli("provision-tenant", *args)
    assert result.exit_code == 2
    assert message in result.output

    async def schemas() -> int:
        conn = await asyncpg.connect(database_dsn)
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'tnt_ok'"
            )
        finally:
            await conn.close()
        return count

    assert asyncio.run(schemas()) == 0


def test_attach_vendor_records_references_not_values(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """attach-vendor stores the references, prints no secret, and list-tenants shows it."""
    tenant = tenant_ids()
    provision(cli, tenant)
    put_secret(cli, KEY.format(tenant=tenant), "sk_test_VERYSECRET")
    put_secret(cli, HOOK.format(tenant=tenant), "whsec_VERYSECRET")
    result = cli(*attach_args(tenant, "--precedence", "100"))
    assert result.exit_code == 0, result.output
    assert "VERYSECRET" not in result.output
    assert count_attachments(database_dsn, tenant) == 1
    listing = cli("list-tenants", "--json")
    assert listing.exit_code == 0, listing.output
    assert "VERYSECRET" not in listing.output
    row = next(json.loads(line) for line in listing.stdout.splitlines() if f'"{tenant}"' in line)
    assert row["vendors"] == [{"processor": "stripe", "env": "sandbox", "precedence": 100}]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precedence", "0"], "precedence must be between"),
        (["--precedence", "x"], "Invalid value"),
        (["--processor", "adyen"], "Invalid value"),
        (["--env", "production"], "live vendor credentials are refused outside production"),
        (["--api-key-from-secret", "projects/p/secrets/../x/versions/1"], "invalid secret"),
        (["--api-key-from-secret", KEY.format(tenant="tnt_nobody")], "not found"),
    ],
)
def test_attach_vendor_refuses_bad_input(
    cli: Cli,
    database_dsn: str,
    tenant_ids: Callable[[], str],
    extra: list[str],
    message: str,
) -> None:
    """Bad attach-vendor input exits 2 with a one-line reason and attaches nothing."""
    tenant = tenant_ids()
    provision(cli, tenant)
    put_secret(cli, KEY.format(tenant=tenant), "sk_test_1")
    put_secret(cli, HOOK.format(tenant=tenant), "whsec_1")
    result = cli(*attach_args(tenant, *extra))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert count_attachments(database_dsn, tenant) == 0


def test_attach_vendor_refuses_duplicates_and_precedence_ties(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """A second attachment of the same vendor, or a tie on precedence, exits 2."""
    tenant = tenant_ids()
    provision(cli, tenant)
    put_secret(cli, KEY.format(tenant=tenant), "sk_test_1")
    put_secret(cli, HOOK.format(tenant=tenant), "whsec_1")
    assert cli(*attach_args(tenant)).exit_code == 0
    duplicate = cli(*attach_args(tenant))
    assert duplicate.exit_code == 2
    assert "already attached" in duplicate.output
    paypal = attach_args(tenant)
    paypal[paypal.index("stripe")] = "paypal"
    tie = cli(*paypal)
    assert tie.exit_code == 2
    assert "precedence 100 is already used" in tie.output
    assert count_attachments(database_dsn, tenant) == 1


def test_attach_vendor_to_unknown_tenant_is_refused(cli: Cli) -> None:
    """attach-vendor for a tenant not in the registry exits 2."""
    put_secret(cli, KEY.format(tenant="tnt_ghost"), "sk_test_1")
    result = cli(*attach_args("tnt_ghost"))
    assert result.exit_code == 2
    assert "unknown tenant tnt_ghost" in result.output


def test_list_tenants_prints_a_table(cli: Cli, tenant_ids: Callable[[], str]) -> None:
    """list-tenants shows each tenant with its status and schema version."""
    tenant = tenant_ids()
    provision(cli, tenant)
    result = cli("list-tenants")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if tenant in line)
    assert "active" in line


def test_every_command_has_help_with_examples(cli: Cli) -> None:
    """--help works for the app and each command, and the main commands show an example."""
    top = cli("--help")
    assert top.exit_code == 0
    for command in ("provision-tenant", "attach-vendor", "migrate-all", "offboard-tenant"):
        result = cli(command, "--help")
        assert result.exit_code == 0, result.output
        assert "Example" in result.stdout


def test_two_cli_processes_provisioning_one_tenant_at_once(
    cli: Cli, database_dsn: str, tenant_ids: Callable[[], str]
) -> None:
    """Two payments-admin-cli processes racing on one tenant both exit 0; one creates it."""
    tenant = tenant_ids()
    command = [
        str(Path(sys.executable).with_name("payments-admin-cli")),
        "provision-tenant",
        "--tenant-id",
        tenant,
    ]
    env = {**os.environ, **cli.env}
    processes = [
        subprocess.Popen(  # noqa: S603 (our own console script)
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    created = sum(f"{tenant} provisioned" in out for out, _ in outputs)
    already = sum(f"{tenant} already provisioned" in out for out, _ in outputs)
    assert (created, already) == (1, 1)
    assert count_rows(database_dsn, "tenant_schema_registry", tenant) == 1


def count_rows(dsn: str, table: str, tenant: str) -> int:
    """Rows of a central table that belong to ``tenant``."""

    async def go() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            count: int = await conn.fetchval(
                f"SELECT count(*) FROM payments_central.{table} WHERE tenant_id = $1",  # noqa: S608
                tenant,
            )
        finally:
            await conn.close()
        return count

    return asyncio.run(go())
