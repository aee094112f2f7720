"""The HesabPay stores' contract, run against the in-memory stores and the Postgres ones.

Then the adapter end to end on the Postgres stores: one adapter opens the checkout, a
second one (another process, sharing only the database) verifies the webhook, and the
first learns of the payment.
"""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from handlers.hesabpay_store import PostgresCheckoutSessions, PostgresReplayStore
from processors.hesabpay import HesabPayAdapter
from processors.hesabpay_sessions import (
    REPLAY_RETENTION,
    CheckoutPayment,
    CheckoutSession,
    CheckoutSessions,
    InMemoryCheckoutSessions,
    InMemoryReplayStore,
    ReplayStore,
)
from processors.port import (
    ActionRequired,
    Approved,
    AuthorizeRequest,
    InquiryRequest,
    OperationKind,
    WebhookRequest,
)
from sandbox.hesabpay_mock import HesabPayMock
from schemas.money import Money
from tenancy.db import Database
from tenancy.migration_files import Migration
from tests.integration.hesabpay_support import (
    API_KEY,
    MERCHANT,
    MOCK_SECRET,
    WAIT_S,
    credentials,
    utc_now,
)
from tests.integration.outbox_helpers import provisioned

T0 = datetime(2031, 5, 6, 10, 0, tzinfo=UTC)
AFN = "AFN"


@dataclass(frozen=True)
class Stores:
    """One tenant's pair of stores."""

    sessions: CheckoutSessions
    replays: ReplayStore


StoresFactory = Callable[[], Awaitable[Stores]]


def unique(prefix: str) -> str:
    """An id no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def session(key: str | None = None, *, session_id: str | None = None) -> CheckoutSession:
    """A new checkout session for ``key`` (a unique one by default)."""
    return CheckoutSession(
        session_id=session_id or unique("hps"),
        idempotency_key=key or unique("key"),
        payment_id=unique("pay"),
        amount=Money(minor=1500, currency=AFN),
        created_at=T0,
    )


def payment(
    *, succeeded: bool = True, at: datetime = T0, transaction_id: str | None = None
) -> CheckoutPayment:
    """A verified webhook outcome."""
    return CheckoutPayment(
        transaction_id=transaction_id or unique("tx"),
        succeeded=succeeded,
        amount=Money(minor=1500, currency=AFN),
        status_code=1 if succeeded else 15,
        at=at,
    )


class StoreContract:
    """Behaviour every ``CheckoutSessions`` and ``ReplayStore`` pair must show."""

    @pytest.fixture
    def tenant_stores(self) -> StoresFactory:
        """Makes the stores of a new tenant (overridden per backend)."""
        raise NotImplementedError

    @pytest.fixture
    async def stores(self, tenant_stores: StoresFactory) -> Stores:
        """The stores of this test's tenant."""
        return await tenant_stores()

    async def test_reserving_one_key_twice_returns_the_first_session(self, stores: Stores) -> None:
        """A second reservation with the same key stores nothing and returns the first."""
        first = session()
        again = session(first.idempotency_key)

        assert await stores.sessions.reserve(first) == first
        assert await stores.sessions.reserve(again) == first
        assert await stores.sessions.get(again.session_id) is None
        assert await stores.sessions.for_key(first.idempotency_key) == first

    async def test_a_session_id_of_another_key_is_refused(self, stores: Stores) -> None:
        """Reserving a used session id under another key raises ``ValueError``."""
        first = await stores.sessions.reserve(session())

        with pytest.raises(ValueError, match="another idempotency key"):
            await stores.sessions.reserve(session(session_id=first.session_id))

    async def test_unknown_sessions_are_none_or_key_errors(self, stores: Stores) -> None:
        """Lookups of an unknown session answer None and changes to it raise ``KeyError``."""
        assert await stores.sessions.get(unique("hps")) is None
        assert await stores.sessions.for_key(unique("key")) is None
        with pytest.raises(KeyError):
            await stores.sessions.open(unique("hps"), "https://pay.invalid/x")

    async def test_the_first_url_recorded_wins(self, stores: Stores) -> None:
        """Opening sets the URL once; a later open or refusal changes nothing."""
        reserved = await stores.sessions.reserve(session())

        opened = await stores.sessions.open(reserved.session_id, "https://pay.invalid/1")
        await stores.sessions.open(reserved.session_id, "https://pay.invalid/2")
        await stores.sessions.refuse(reserved.session_id, "status_code_15")

        assert opened == reserved.opened("https://pay.invalid/1")
        assert await stores.sessions.get(reserved.session_id) == opened

    async def test_a_refusal_is_kept_with_its_code(self, stores: Stores) -> None:
        """A refused session is stored refused, with HesabPay's code."""
        reserved = await stores.sessions.reserve(session())

        refused = await stores.sessions.refuse(reserved.session_id, "status_code_15")

        assert (refused.status, refused.vendor_code) == ("refused", "status_code_15")
        assert await stores.sessions.for_key(reserved.idempotency_key) == refused

    async def test_payments_settle_as_the_session_says(self, stores: Stores) -> None:
        """A failure fails the session, a success pays it, and a later failure never undoes it."""
        reserved = await stores.sessions.reserve(session())
        await stores.sessions.open(reserved.session_id, "https://pay.invalid/1")
        failure, success, late = payment(succeeded=False), payment(), payment(succeeded=False)

        failed = await stores.sessions.record_payment(reserved.session_id, failure)
        paid = await stores.sessions.record_payment(reserved.session_id, success)
        again = await stores.sessions.record_payment(reserved.session_id, success)
        after = await stores.sessions.record_payment(reserved.session_id, late)

        assert (failed.status, failed.vendor_code) == ("failed", "status_code_15")
        assert (paid.status, paid.transaction_id) == ("paid", success.transaction_id)
        assert again == paid
        assert after.status == "paid"
        assert after.payments == (failure, success, late)
        assert await stores.sessions.get(reserved.session_id) == after

    async def test_abandoning_keeps_a_paid_session_paid(self, stores: Stores) -> None:
        """A void abandons an open session, but a paid one stays paid, even paid after it."""
        open_one = await stores.sessions.reserve(session())
        paid_one = await stores.sessions.reserve(session())
        await stores.sessions.record_payment(paid_one.session_id, payment())

        abandoned = await stores.sessions.abandon(open_one.session_id)
        still_paid = await stores.sessions.abandon(paid_one.session_id)
        paid_late = await stores.sessions.record_payment(open_one.session_id, payment())

        assert abandoned.status == "abandoned"
        assert still_paid.status == "paid"
        assert paid_late.status == "paid"

    async def test_payments_on_lists_the_days_successes_only(self, stores: Stores) -> None:
        """``payments_on`` answers each successful payment timed on that day, and nothing else."""
        day = date(2031, 5, 6) + timedelta(days=uuid.uuid4().int % 10_000)
        noon = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
        first = await stores.sessions.reserve(session())
        other = await stores.sessions.reserve(session())
        today, failed = payment(at=noon), payment(succeeded=False, at=noon)
        second, tomorrow = payment(at=noon + timedelta(hours=1)), payment(at=noon + timedelta(1))
        await stores.sessions.record_payment(first.session_id, failed)
        await stores.sessions.record_payment(first.session_id, today)
        await stores.sessions.record_payment(first.session_id, second)
        await stores.sessions.record_payment(other.session_id, tomorrow)

        listed = await stores.sessions.payments_on(day)

        assert [(s.session_id, p) for s, p in listed] == [
            (first.session_id, today),
            (first.session_id, second),
        ]
        assert [p for _, p in await stores.sessions.payments_on(day + timedelta(1))] == [tomorrow]

    async def test_a_signature_is_new_then_replayed_or_conflicting(self, stores: Stores) -> None:
        """A signature is new once, then replayed with its transaction, a conflict with another."""
        signature, transaction = unique("sig"), unique("tx")
        later = T0 + timedelta(seconds=30)

        assert await stores.replays.sight(signature, transaction, T0) == "new"
        assert await stores.replays.sight(signature, transaction, later) == "replayed"
        assert await stores.replays.sight(signature, unique("tx"), later) == "conflict"

    async def test_a_sighting_is_forgotten_after_the_retention(self, stores: Stores) -> None:
        """A signature seen longer than the retention before is new again."""
        signature, transaction = unique("sig"), unique("tx")
        await stores.replays.sight(signature, transaction, T0)

        within = T0 + REPLAY_RETENTION
        after = within + timedelta(seconds=1)

        assert await stores.replays.sight(signature, transaction, within) == "replayed"
        assert await stores.replays.sight(signature, transaction, after) == "new"

    async def test_two_tenants_do_not_see_each_others_records(
        self, stores: Stores, tenant_stores: StoresFactory
    ) -> None:
        """One session id, key and signature are independent in two tenants' stores."""
        other = await tenant_stores()
        mine = await stores.sessions.reserve(session())
        theirs = session(mine.idempotency_key, session_id=mine.session_id)

        assert await other.sessions.get(mine.session_id) is None
        assert await other.sessions.payments_on(T0.date()) == []
        assert await other.sessions.reserve(theirs) == theirs
        await other.sessions.record_payment(theirs.session_id, payment())
        assert await stores.sessions.get(mine.session_id) == mine
        signature = unique("sig")
        assert await stores.replays.sight(signature, unique("tx"), T0) == "new"
        assert await other.replays.sight(signature, unique("tx"), T0) == "new"


class TestInMemoryStores(StoreContract):
    """The in-memory stores keep the contract."""

    @pytest.fixture
    def tenant_stores(self) -> StoresFactory:
        """Fresh in-memory stores per tenant."""

        async def make() -> Stores:
            return Stores(InMemoryCheckoutSessions(), InMemoryReplayStore())

        return make


class TestPostgresStores(StoreContract):
    """The Postgres stores keep the contract, each tenant in its own schema."""

    @pytest.fixture
    def tenant_stores(
        self,
        db: Database,
        tenant_migrations: tuple[Migration, ...],
        tenant_ids: Callable[[], str],
    ) -> StoresFactory:
        """Stores on a newly provisioned tenant."""

        async def make() -> Stores:
            tenant = await provisioned(db, tenant_migrations, tenant_ids())
            return Stores(PostgresCheckoutSessions(db, tenant), PostgresReplayStore(db, tenant))

        return make


@pytest.fixture(scope="module")
def mock() -> Iterator[HesabPayMock]:
    """hesabpay-mock on loopback, with the merchant's account and no webhook URL."""
    with HesabPayMock(signing_secret=MOCK_SECRET) as server:
        account = {"merchant_id": MERCHANT, "api_key": API_KEY}
        httpx.post(f"{server.url}/_sandbox/accounts", json=account).raise_for_status()
        yield server


@pytest.fixture
async def sandbox(mock: HesabPayMock) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the mock's customer side and controls."""
    async with httpx.AsyncClient(base_url=mock.url, timeout=WAIT_S) as client:
        yield client


def hesabpay(mock: HesabPayMock, db: Database, tenant: str) -> HesabPayAdapter:
    """An adapter on the tenant's Postgres stores, as one process would build it."""
    return HesabPayAdapter(
        credentials,
        base_url=mock.url,
        clock=utc_now,
        sessions=PostgresCheckoutSessions(db, tenant),
        replays=PostgresReplayStore(db, tenant),
    )


async def test_a_payment_verified_by_another_process_is_approved(
    mock: HesabPayMock,
    sandbox: httpx.AsyncClient,
    db: Database,
    tenant_migrations: tuple[Migration, ...],
    tenant_ids: Callable[[], str],
) -> None:
    """A webhook verified by a second adapter on the same database settles the first's checkout."""
    tenant = await provisioned(db, tenant_migrations, tenant_ids())
    worker, endpoint = hesabpay(mock, db, tenant), hesabpay(mock, db, tenant)
    amount = Money(minor=2500, currency=AFN)
    request = AuthorizeRequest(
        idempotency_key=unique("key"),
        account=MERCHANT,
        payment_id=unique("pay"),
        amount=amount,
        payment_method_type=min(worker.capabilities.payment_method_types),
        payment_method_token=None,
        capture="automatic",
        return_url="https://hotel.invalid/return",
        booking_reference="BK-STORE",
    )
    opened = await worker.authorize(request)
    assert isinstance(opened, ActionRequired)
    mock_session = opened.redirect_url.rsplit("/", 1)[-1]
    (await sandbox.post(f"/_sandbox/sessions/{mock_session}/pay")).raise_for_status()
    stamp = int(utc_now().timestamp())
    signed = await sandbox.post(
        f"/_sandbox/sessions/{mock_session}/webhook", json={"timestamp": stamp}
    )
    webhook = WebhookRequest({"content-type": "application/json"}, signed.content, utc_now())

    notification = await endpoint.parse_webhook(webhook)
    inquiry = InquiryRequest(
        OperationKind.AUTHORIZE, request.idempotency_key, MERCHANT, opened.reference, amount
    )
    answer = await worker.inquire(inquiry)

    assert notification.kind == "captured"
    assert isinstance(answer, Approved)
    assert answer.captured
