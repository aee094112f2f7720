"""Stripe Connect OAuth, end to end against the fake Stripe over HTTP: exchange, store, attach."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from gateway.vendor_mode import VendorMode
from gateway.vendors import credential_source
from handlers.stripe_connect import (
    ConnectCallback,
    ConnectIncompleteError,
    complete_stripe_connect,
)
from processors.port import Approved, AuthorizeRequest
from processors.stripe import StripeAdapter
from processors.stripe_connect import ConnectCodeError, StripeConnectOAuth
from sandbox.stripe_api import DEFAULT_KEY, FakeStripe
from schemas.money import Money
from schemas.processors import Processor, VendorEnv
from tenancy.db import Database
from tenancy.errors import (
    DuplicateAttachmentError,
    InvalidRequestError,
    SecretStoreUnavailableError,
    UnknownTenantError,
)
from tenancy.migration_files import Migration
from tenancy.secrets import FileSecretStore, SecretRef, SecretStore
from tenancy.vendors import VendorAttachment, list_attachments
from tests.integration.conftest import Cli
from tests.integration.outbox_helpers import provisioned
from tests.integration.stripe_support import utc_now
from tests.integration.test_cli_tenants import count_attachments, provision, put_secret

pytestmark = pytest.mark.integration
PROJECT = "gm-payments-dev"
HOOK_SECRET = SecretStr("whsec_connect_platform_3c9e")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    """One fake Stripe on loopback for this module, accepting the platform's key."""
    with FakeStripe(api_keys=(DEFAULT_KEY,)) as sandbox:
        yield sandbox


@pytest.fixture
def oauth(fake: FakeStripe) -> StripeConnectOAuth:
    """The OAuth adapter, pointed at the fake for both ``connect`` and ``api``."""
    return StripeConnectOAuth(SecretStr(DEFAULT_KEY), base_url=fake.url, timeout_s=5)


@pytest.fixture
def secrets(tmp_path: Path) -> FileSecretStore:
    """A secret store of this test's own."""
    return FileSecretStore(tmp_path / "secrets")


@dataclass
class Harness:
    """What a test needs: the database, a store, the OAuth adapter, the fake, new tenants."""

    db: Database
    secrets: FileSecretStore
    oauth: StripeConnectOAuth
    fake: FakeStripe
    migrations: tuple[Migration, ...]
    tenant_ids: Callable[[], str]

    async def tenant(self) -> str:
        """A freshly provisioned tenant."""
        return await provisioned(self.db, self.migrations, self.tenant_ids())

    async def connect(
        self, tenant: str, code: str, secrets: SecretStore | None = None
    ) -> VendorAttachment:
        """Run the handler outside production, without backoff between store attempts."""
        return await complete_stripe_connect(
            self.db,
            secrets or self.secrets,
            self.oauth,
            ConnectCallback(tenant, code, PROJECT, HOOK_SECRET),
            production=False,
            store_backoff_s=0,
        )


@pytest.fixture
def h(  # noqa: PLR0913, PLR0917 (gathers the fixtures so that tests take one)
    db: Database,
    secrets: FileSecretStore,
    oauth: StripeConnectOAuth,
    fake: FakeStripe,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> Harness:
    """This test's harness."""
    return Harness(db, secrets, oauth, fake, tenant_migrations, tenant_ids)


async def test_a_minted_code_attaches_the_new_account(h: Harness) -> None:
    """A fresh code attaches the new acct with references whose secrets hold its tokens."""
    tenant, code = await h.tenant(), h.fake.mint_oauth_code()

    attached = await h.connect(tenant, code)

    base = f"projects/{PROJECT}/secrets/{tenant}/stripe/sandbox"
    account = h.fake.oauth.account_of(code)
    assert (attached.processor, attached.env, attached.account_ref) == (
        Processor.STRIPE,
        VendorEnv.SANDBOX,
        account,
    )
    assert str(attached.api_key_ref) == f"{base}/api_key/versions/latest"
    assert str(attached.webhook_secret_ref) == f"{base}/webhook_secret/versions/latest"
    api_key = await h.secrets.access(attached.api_key_ref)
    refresh = await h.secrets.access(SecretRef.parse(f"{base}/refresh_token/versions/latest"))
    assert api_key.get_secret_value().startswith("sk_test_")
    assert refresh.get_secret_value().startswith("rt_")
    hook = await h.secrets.access(SecretRef.parse(f"{base}/webhook_secret/versions/1"))
    assert hook == HOOK_SECRET
    assert [a.account_ref for a in await list_attachments(h.db, tenant)] == [account]


async def test_a_spent_code_is_refused_without_a_second_attachment(h: Harness) -> None:
    """Exchanging the same code twice fails clearly and attaches nothing the second time."""
    code = h.fake.mint_oauth_code()
    await h.connect(await h.tenant(), code)
    other = await h.tenant()

    with pytest.raises(ConnectCodeError, match="already used or has expired") as raised:
        await h.connect(other, code)

    assert code not in str(raised.value)
    assert await list_attachments(h.db, other) == []


async def test_a_spent_code_gets_stripes_oauth_error_shape(fake: FakeStripe) -> None:
    """Over HTTP, a minted code is exchanged once; the second try is a 400 invalid_grant."""
    auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    async with httpx.AsyncClient(base_url=fake.url) as client:
        minted = (await client.post("/_sandbox/oauth/codes", json={})).json()
        form = {"grant_type": "authorization_code", "code": minted["code"]}
        first = await client.post("/oauth/token", data=form, headers=auth)
        again = await client.post("/oauth/token", data=form, headers=auth)
        anonymous = await client.post("/oauth/token", data=form)

    assert first.status_code == 200
    assert first.json()["stripe_user_id"] == minted["account"]
    assert first.json()["livemode"] is False
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert "error_description" in again.json()
    assert anonymous.status_code == 401


async def test_an_unknown_tenant_is_refused_before_the_code_is_spent(h: Harness) -> None:
    """A tenant that does not exist is refused without exchanging; the code still works."""
    code = h.fake.mint_oauth_code()

    with pytest.raises(UnknownTenantError):
        await h.connect(h.tenant_ids(), code)

    attached = await h.connect(await h.tenant(), code)
    assert attached.account_ref == h.fake.oauth.account_of(code)


async def test_an_existing_stripe_attachment_is_refused_before_the_code_is_spent(
    h: Harness,
) -> None:
    """A tenant with Stripe already attached is refused without spending the new code."""
    tenant = await h.tenant()
    first = await h.connect(tenant, h.fake.mint_oauth_code())
    code = h.fake.mint_oauth_code()

    with pytest.raises(DuplicateAttachmentError, match="already attached"):
        await h.connect(tenant, code)

    assert await list_attachments(h.db, tenant) == [first]
    other = await h.tenant()
    assert (await h.connect(other, code)).tenant_id == other


async def test_a_live_grant_is_refused_outside_production(h: Harness, tmp_path: Path) -> None:
    """A livemode grant is neither stored nor attached outside production."""
    tenant, code = await h.tenant(), h.fake.mint_oauth_code(livemode=True)

    with pytest.raises(InvalidRequestError, match="live vendor credentials"):
        await h.connect(tenant, code)

    assert await list_attachments(h.db, tenant) == []
    assert not (tmp_path / "secrets").exists()


async def test_the_new_account_is_usable_with_the_stored_credentials(h: Harness) -> None:
    """An adapter built from the attachment authorizes with Stripe-Account set to the acct."""
    tenant = await h.tenant()
    attached = await h.connect(tenant, h.fake.mint_oauth_code())
    credentials = credential_source(h.secrets, attached, VendorMode.LOCAL_SANDBOX)
    adapter = StripeAdapter(credentials, base_url=h.fake.url, clock=utc_now)
    key = f"{tenant}:pay_connect:authorize:1"
    request = AuthorizeRequest(
        idempotency_key=key,
        account=attached.account_ref,
        payment_id="pay_connect",
        amount=Money(minor=1500, currency="USD"),
        payment_method_type=min(adapter.capabilities.payment_method_types),
        payment_method_token="pm_card_visa",
        capture="manual",
    )
    try:
        result = await adapter.authorize(request)
    finally:
        await adapter.aclose()

    assert isinstance(result, Approved)
    sent = [r for r in h.fake.requests if r.idempotency_key == key]
    assert [r.account for r in sent] == [attached.account_ref]


class FlakySecretStore(FileSecretStore):
    """A file store whose first ``failures`` writes find the store unavailable."""

    def __init__(self, root: Path, failures: int) -> None:
        """Fail the next ``failures`` writes."""
        super().__init__(root)
        self.failures = failures
        self.attempts = 0

    async def add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        """Fail while failures remain, then write."""
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise SecretStoreUnavailableError(f"secret {ref} could not be written")
        return await super().add_version(ref, value)


async def test_a_flaky_store_is_retried_and_a_dead_one_names_the_account(
    h: Harness, tmp_path: Path
) -> None:
    """Storing is retried; when it keeps failing the error names the acct, never a token."""
    flaky = FlakySecretStore(tmp_path / "flaky", failures=2)
    attached = await h.connect(await h.tenant(), h.fake.mint_oauth_code(), flaky)
    assert attached.account_ref.startswith("acct_")
    assert flaky.attempts == 5

    dead = FlakySecretStore(tmp_path / "dead", failures=1_000)
    code, other = h.fake.mint_oauth_code(), await h.tenant()
    with capture_logs() as logs, pytest.raises(ConnectIncompleteError) as raised:
        await h.connect(other, code, dead)

    account = h.fake.oauth.account_of(code)
    assert dead.attempts == 4
    assert account in str(raised.value)
    assert "sk_test_" not in str(raised.value)
    failed = [e["account_id"] for e in logs if e["event"] == "stripe_connect_store_failed"]
    assert failed == [account]
    assert await list_attachments(h.db, other) == []


async def test_no_token_reaches_the_logs_or_errors(h: Harness) -> None:
    """Neither the tokens nor the code appear in log entries or in a refusal's message."""
    tenant, code = await h.tenant(), h.fake.mint_oauth_code()
    with capture_logs() as logs:
        attached = await h.connect(tenant, code)
        with pytest.raises(ConnectCodeError) as raised:
            await h.oauth.exchange(code)

    base = f"projects/{PROJECT}/secrets/{tenant}/stripe/sandbox"
    refresh = SecretRef.parse(f"{base}/refresh_token/versions/latest")
    tokens = [
        (await h.secrets.access(attached.api_key_ref)).get_secret_value(),
        (await h.secrets.access(refresh)).get_secret_value(),
        HOOK_SECRET.get_secret_value(),
        DEFAULT_KEY,
    ]
    text = json.dumps(logs, default=str) + str(raised.value) + repr(attached)
    assert [t for t in tokens if t in text] == []
    assert code not in str(raised.value)
    assert any(e["event"] == "stripe_connect_attached" for e in logs)


def connect_args(tenant: str, code: str, *extra: str) -> list[str]:
    """A stripe-connect command line with this module's project and secrets, plus ``extra``."""
    return [
        "stripe-connect",
        "--tenant-id",
        tenant,
        "--code",
        code,
        "--project",
        PROJECT,
        "--webhook-secret-from-secret",
        f"projects/{PROJECT}/secrets/stripe-connect/webhook_secret/versions/latest",
        "--platform-key-from-secret",
        f"projects/{PROJECT}/secrets/stripe-platform/api_key/versions/latest",
        *extra,
    ]


def test_the_cli_connects_an_account_and_refuses_malformed_input(
    cli: Cli, database_dsn: str, fake: FakeStripe, tenant_ids: Callable[[], str]
) -> None:
    """stripe-connect attaches the account and prints references only; bad input exits 2."""
    tenant = tenant_ids()
    provision(cli, tenant)
    cli.env["PAYMENTS_SANDBOX_URLS"] = json.dumps({"stripe": fake.url})
    put_secret(cli, connect_args(tenant, "")[8], HOOK_SECRET.get_secret_value())
    put_secret(cli, connect_args(tenant, "")[10], DEFAULT_KEY)
    code = fake.mint_oauth_code()

    malformed = [
        connect_args("not-a-tenant", code),
        connect_args(tenant, ""),
        [*connect_args(tenant, code)[:-1], "projects/x/secrets"],
        connect_args(tenant, code, "--precedence", "0"),
    ]
    for args in malformed:
        refused = cli(*args)
        assert refused.exit_code == 2, (args, refused.output)
        assert "error" in refused.output.lower() or "invalid" in refused.output.lower()
    assert count_attachments(database_dsn, tenant) == 0

    result = cli(*connect_args(tenant, code, "--precedence", "50"))

    assert result.exit_code == 0, result.output
    account = fake.oauth.account_of(code)
    assert f"connected to {tenant} as {account}, precedence 50" in result.stdout
    base = f"projects/{PROJECT}/secrets/{tenant}/stripe/sandbox"
    for name in ("api_key", "refresh_token", "webhook_secret"):
        assert f"{name}: {base}/{name}/versions/latest" in result.stdout
    assert "sk_test_" not in result.output
    assert HOOK_SECRET.get_secret_value() not in result.output
    assert count_attachments(database_dsn, tenant) == 1
    other = tenant_ids()
    provision(cli, other)
    spent = cli(*connect_args(other, code))
    assert spent.exit_code == 2, spent.output


def test_help_shows_an_example(cli: Cli) -> None:
    """stripe-connect --help explains the command with an example."""
    result = cli("stripe-connect", "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
