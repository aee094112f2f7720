"""The ``SecretStore`` contract: what every secret store must do, whatever holds the secrets.

Subclass ``SecretStoreContract`` as ``Test<Implementation>`` and provide a ``store`` fixture
returning a fresh (or shared) store; each test works on a secret name of its own.
"""

import uuid

import pytest
from pydantic import SecretStr

from tenancy.errors import SecretNotFoundError
from tenancy.secrets import SecretRef, SecretStore

PROJECT = "contract-project"
VALUE = "contract-value-7f3a9c"
"""A value distinctive enough that finding it in an error message cannot be chance."""


def _error_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    current: BaseException | None = exc
    while current is not None:
        texts += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return texts


class SecretStoreContract:
    """Behaviour every ``SecretStore`` shows; subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def ref(self) -> SecretRef:
        """A ``latest`` reference to a secret no other test uses."""
        return SecretRef(PROJECT, f"contract-{uuid.uuid4().hex[:16]}", "latest")

    async def test_access_latest_returns_newest_version(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """Accessing ``latest`` returns the value of the most recently added version."""
        await store.add_version(ref, SecretStr("first"))
        await store.add_version(ref, SecretStr("second"))

        assert (await store.access(ref)).get_secret_value() == "second"

    async def test_access_numbered_version_returns_that_version(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """Accessing a numbered version returns that version's value, not the newest."""
        first = await store.add_version(ref, SecretStr("first"))
        await store.add_version(ref, SecretStr("second"))

        assert (await store.access(first)).get_secret_value() == "first"

    async def test_add_version_returns_increasing_version_numbers(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """Each added version gets the next number, starting at 1 for a new secret."""
        first = await store.add_version(ref, SecretStr("first"))
        second = await store.add_version(ref, SecretStr("second"))

        assert (first.secret_name, first.version) == (ref.secret_name, "1")
        assert (second.secret_name, second.version) == (ref.secret_name, "2")

    async def test_access_missing_secret_raises_not_found(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """Accessing a secret that was never written raises ``SecretNotFoundError``."""
        with pytest.raises(SecretNotFoundError):
            await store.access(ref)

    async def test_access_missing_version_raises_not_found(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """Accessing a version number the secret does not have raises ``SecretNotFoundError``."""
        await store.add_version(ref, SecretStr("first"))

        with pytest.raises(SecretNotFoundError):
            await store.access(ref.with_version("7"))

    async def test_destroy_then_access_raises_not_found(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """After ``destroy`` neither ``latest`` nor a numbered version can be accessed."""
        first = await store.add_version(ref, SecretStr("first"))
        await store.access(ref)

        await store.destroy(ref)

        with pytest.raises(SecretNotFoundError):
            await store.access(ref)
        with pytest.raises(SecretNotFoundError):
            await store.access(first)

    async def test_destroy_missing_secret_is_a_no_op(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """Destroying a secret that does not exist returns quietly and leaves it missing."""
        await store.destroy(ref)

        with pytest.raises(SecretNotFoundError):
            await store.access(ref)

    async def test_add_version_after_destroy_holds_the_new_value(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """A destroyed secret can be written again, and ``latest`` then has the new value."""
        await store.add_version(ref, SecretStr("old"))
        await store.destroy(ref)

        await store.add_version(ref, SecretStr("new"))

        assert (await store.access(ref)).get_secret_value() == "new"

    async def test_errors_never_show_the_secret_value(
        self, store: SecretStore, ref: SecretRef
    ) -> None:
        """Errors about a secret name its reference but never its value, even in their causes."""
        await store.add_version(ref, SecretStr(VALUE))

        with pytest.raises(SecretNotFoundError) as missing_version:
            await store.access(ref.with_version("9"))
        await store.destroy(ref)
        with pytest.raises(SecretNotFoundError) as destroyed:
            await store.access(ref)

        for error in (missing_version.value, destroyed.value):
            assert ref.secret in str(error)
            assert not [text for text in _error_texts(error) if VALUE in text]

    async def test_value_is_not_shown_by_repr(self, store: SecretStore, ref: SecretRef) -> None:
        """The accessed value prints masked, so logging it by mistake leaks nothing."""
        await store.add_version(ref, SecretStr(VALUE))

        value = await store.access(ref)

        assert VALUE not in repr(value)
        assert VALUE not in str(value)
        assert value.get_secret_value() == VALUE
