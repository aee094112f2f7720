"""``CachingSecretStore``: five minutes of caching, and forgetting on every write."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from tenancy.errors import SecretNotFoundError
from tenancy.secrets import CachingSecretStore, SecretRef

STRIPE = SecretRef.parse("projects/acme/secrets/stripe-key/versions/latest")
ADYEN = SecretRef.parse("projects/acme/secrets/adyen-key/versions/latest")


@dataclass
class ManualClock:
    """A clock that only moves when the test says so."""

    now: datetime = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        """The time the test set."""
        return self.now

    def advance(self, delta: timedelta) -> None:
        """Move the time forward by ``delta``."""
        self.now += delta


@dataclass
class CountingStore:
    """An in-memory ``SecretStore`` that counts the ``access`` calls reaching it."""

    versions: dict[str, list[str]] = field(default_factory=dict)
    access_calls: int = 0

    async def access(self, ref: SecretRef) -> SecretStr:
        """The value of the version; ``latest`` is the last one added."""
        self.access_calls += 1
        values = self.versions.get(ref.secret_name, [])
        index = len(values) if ref.version == "latest" else int(ref.version)
        if not 1 <= index <= len(values):
            raise SecretNotFoundError(f"secret {ref} not found")
        return SecretStr(values[index - 1])

    async def add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        """Append a version and return its numbered reference."""
        values = self.versions.setdefault(ref.secret_name, [])
        values.append(value.get_secret_value())
        return ref.with_version(str(len(values)))

    async def destroy(self, ref: SecretRef) -> None:
        """Forget every version of the secret."""
        self.versions.pop(ref.secret_name, None)

    def rotate_behind_the_cache(self, ref: SecretRef, value: str) -> None:
        """Add a version directly, as another instance of the service would."""
        self.versions.setdefault(ref.secret_name, []).append(value)


@pytest.fixture
def clock() -> ManualClock:
    """The cache's clock."""
    return ManualClock()


@pytest.fixture
def inner() -> CountingStore:
    """The store behind the cache, holding one version of the Stripe key."""
    return CountingStore(versions={STRIPE.secret_name: ["sk_1"]})


@pytest.fixture
def cache(inner: CountingStore, clock: ManualClock) -> CachingSecretStore:
    """The cache under test, with its default time-to-live."""
    return CachingSecretStore(inner, clock)


async def test_value_is_served_from_cache_within_five_minutes(
    cache: CachingSecretStore, inner: CountingStore, clock: ManualClock
) -> None:
    """Within five minutes of a read, the value comes from the cache, even if rotated behind it."""
    first = await cache.access(STRIPE)
    inner.rotate_behind_the_cache(STRIPE, "sk_2")
    clock.advance(timedelta(minutes=5) - timedelta(microseconds=1))

    again = await cache.access(STRIPE)

    assert (first.get_secret_value(), again.get_secret_value()) == ("sk_1", "sk_1")
    assert inner.access_calls == 1


async def test_value_is_read_again_after_five_minutes(
    cache: CachingSecretStore, inner: CountingStore, clock: ManualClock
) -> None:
    """Five minutes after a read, the next access goes to the inner store and sees rotation."""
    await cache.access(STRIPE)
    inner.rotate_behind_the_cache(STRIPE, "sk_2")
    clock.advance(timedelta(minutes=5))

    again = await cache.access(STRIPE)

    assert again.get_secret_value() == "sk_2"
    assert inner.access_calls == 2


async def test_add_version_forgets_every_cached_version_of_that_secret(
    cache: CachingSecretStore, inner: CountingStore
) -> None:
    """After ``add_version`` both ``latest`` and numbered versions of the secret are re-read."""
    await cache.access(STRIPE)
    await cache.access(STRIPE.with_version("1"))

    added = await cache.add_version(STRIPE, SecretStr("sk_2"))
    latest = await cache.access(STRIPE)
    await cache.access(STRIPE.with_version("1"))

    assert added.version == "2"
    assert latest.get_secret_value() == "sk_2"
    assert inner.access_calls == 4


async def test_add_version_keeps_other_secrets_cached(
    cache: CachingSecretStore, inner: CountingStore
) -> None:
    """Writing one secret leaves the cached values of other secrets in place."""
    await cache.add_version(ADYEN, SecretStr("ak_1"))
    await cache.access(ADYEN)

    await cache.add_version(STRIPE, SecretStr("sk_2"))
    await cache.access(ADYEN)

    assert inner.access_calls == 1


async def test_destroy_forgets_the_cached_value(
    cache: CachingSecretStore, inner: CountingStore
) -> None:
    """After ``destroy`` the cache no longer serves the value: access raises not found."""
    await cache.access(STRIPE)

    await cache.destroy(STRIPE)

    with pytest.raises(SecretNotFoundError):
        await cache.access(STRIPE)
    assert inner.access_calls == 2


async def test_not_found_is_not_cached(cache: CachingSecretStore, inner: CountingStore) -> None:
    """A failed read is not remembered: once the secret is written elsewhere, it is found."""
    with pytest.raises(SecretNotFoundError):
        await cache.access(ADYEN)
    inner.rotate_behind_the_cache(ADYEN, "ak_1")

    found = await cache.access(ADYEN)

    assert found.get_secret_value() == "ak_1"
