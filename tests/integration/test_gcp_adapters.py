"""The secret-store and snapshot-archive contracts, run against every implementation.

The Google adapters talk real HTTP over loopback to the in-process fakes of
``sandbox.gcp``, through the official client libraries.
"""

import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager, storage
from pydantic import SecretStr

from sandbox.gcp import FakeCloudStorage, FakeSecretManager
from tenancy.archive import LocalFolderArchive, SnapshotArchive
from tenancy.errors import (
    ArchiveError,
    SecretError,
    SecretNotFoundError,
    SecretStoreUnavailableError,
)
from tenancy.gcp_secrets import GoogleSecretManagerStore
from tenancy.gcs_archive import GcsArchive, StorageClientLike
from tenancy.secrets import CachingSecretStore, FileSecretStore, SecretRef, SecretStore
from tests.contracts.secret_store import SecretStoreContract
from tests.contracts.snapshot_archive import ReadBack, SnapshotArchiveContract

BUCKET = "gm-payments-snapshots"
PREFIX = "final-snapshots"
MULTIPART_LIMIT = 8 * 1024 * 1024
"""Above this size the storage client switches from multipart to resumable uploads."""


@pytest.fixture(scope="module")
def secret_manager() -> Iterator[FakeSecretManager]:
    """A fake Secret Manager on loopback, shared by this module's tests."""
    with FakeSecretManager() as fake:
        yield fake


@pytest.fixture(scope="module")
def cloud_storage() -> Iterator[FakeCloudStorage]:
    """A fake Cloud Storage holding the snapshot bucket, shared by this module's tests."""
    with FakeCloudStorage(buckets=(BUCKET,)) as fake:
        yield fake


def _storage_client(url: str) -> StorageClientLike:
    client: StorageClientLike = storage.Client(
        project="sandbox",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )
    return client


def _download(url: str, uri: str) -> bytes:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    client = storage.Client(
        project="sandbox",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )
    data: bytes = client.bucket(bucket).blob(name).download_as_bytes()
    return data


class TestFileSecretStore(SecretStoreContract):
    """The contract on secrets kept as files."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> SecretStore:
        """A file store in a fresh folder."""
        return FileSecretStore(tmp_path / "secrets")


class TestCachingSecretStore(SecretStoreContract):
    """The contract on the cache in front of the file store."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> SecretStore:
        """A caching store over a file store in a fresh folder, on the real clock."""
        return CachingSecretStore(FileSecretStore(tmp_path / "secrets"), lambda: datetime.now(UTC))


class TestGoogleSecretManagerStore(SecretStoreContract):
    """The contract on Secret Manager, through the client's REST transport to the fake."""

    @pytest.fixture
    def store(self, secret_manager: FakeSecretManager) -> SecretStore:
        """A Secret Manager store pointed at the fake."""
        return GoogleSecretManagerStore(client_options={"api_endpoint": secret_manager.url})


class TestGoogleSecretManagerBoundary:
    """What the Secret Manager adapter adds: lazy connection and error translation."""

    @pytest.fixture
    def store(self, secret_manager: FakeSecretManager) -> GoogleSecretManagerStore:
        """A Secret Manager store pointed at the fake."""
        return GoogleSecretManagerStore(client_options={"api_endpoint": secret_manager.url})

    def test_constructor_does_no_network_io(self, secret_manager: FakeSecretManager) -> None:
        """Building the store sends no request; the client is made on first use."""
        before = secret_manager.request_count

        GoogleSecretManagerStore(client_options={"api_endpoint": secret_manager.url})

        assert secret_manager.request_count == before

    async def test_new_secret_is_created_with_automatic_replication(
        self, store: GoogleSecretManagerStore, secret_manager: FakeSecretManager
    ) -> None:
        """``add_version`` on a missing secret creates it with automatic replication."""
        ref = SecretRef.parse("projects/acme/secrets/stripe-key/versions/latest")
        await store.destroy(ref)

        await store.add_version(ref, SecretStr("sk_test_1"))

        client = secretmanager.SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": secret_manager.url},
        )
        secret = client.get_secret(name=ref.secret_name)
        assert "automatic" in secret.replication

    async def test_secret_values_are_not_logged_even_at_debug(
        self,
        secret_manager: FakeSecretManager,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """With Google's loggers at DEBUG, no log record holds the value or its base64 form."""
        # As an app that routes the client libraries' logs into its own would configure it
        # (the client otherwise stops "google" records from reaching the root logger).
        monkeypatch.setattr(logging.getLogger("google"), "propagate", True)
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="google")
        value = "whsec_debug_4d1b"
        store = GoogleSecretManagerStore(endpoint=secret_manager.url)
        ref = SecretRef.parse("projects/acme/secrets/webhook-key/versions/latest")

        await store.add_version(ref, SecretStr(value))
        assert (await store.access(ref)).get_secret_value() == value

        encoded = base64.b64encode(value.encode()).decode()
        logged = [repr(vars(record)) for record in caplog.records]  # extras included
        assert logged
        assert not [text for text in logged if value in text or encoded in text]

    async def test_unreachable_server_raises_unavailable(self) -> None:
        """A connection refused becomes the retryable ``SecretStoreUnavailableError``."""
        with FakeSecretManager() as gone:
            url = gone.url
        store = GoogleSecretManagerStore(client_options={"api_endpoint": url})
        ref = SecretRef.parse("projects/acme/secrets/stripe-key/versions/latest")

        with pytest.raises(SecretStoreUnavailableError, match="stripe-key"):
            await store.access(ref)

    async def test_service_unavailable_raises_unavailable(
        self, store: GoogleSecretManagerStore, secret_manager: FakeSecretManager
    ) -> None:
        """An HTTP 503 from Secret Manager becomes ``SecretStoreUnavailableError``."""
        ref = SecretRef.parse("projects/acme/secrets/adyen-key/versions/latest")
        secret_manager.fail_next(503)

        with pytest.raises(SecretStoreUnavailableError) as raised:
            await store.add_version(ref, SecretStr("ak_live_secret"))

        assert "ak_live_secret" not in repr(raised.value)

    async def test_permission_denied_raises_secret_error(
        self, store: GoogleSecretManagerStore, secret_manager: FakeSecretManager
    ) -> None:
        """A refusal that is neither "missing" nor "unavailable" becomes a plain ``SecretError``."""
        ref = SecretRef.parse("projects/acme/secrets/adyen-key/versions/latest")
        secret_manager.fail_next(403)

        with pytest.raises(SecretError) as raised:
            await store.access(ref)

        assert not isinstance(raised.value, SecretNotFoundError | SecretStoreUnavailableError)

    async def test_nested_reference_maps_to_a_flat_secret_id(
        self, store: GoogleSecretManagerStore, secret_manager: FakeSecretManager
    ) -> None:
        """The seed's nested references work: a/b/c is stored as Secret Manager id a__b__c."""
        ref = SecretRef.parse("projects/acme/secrets/tnt_1/stripe/prod/api_key/versions/latest")
        await store.add_version(ref, SecretStr("sk_live_nested"))

        flat = SecretRef.parse("projects/acme/secrets/tnt_1__stripe__prod__api_key/versions/1")
        assert (await store.access(flat)).get_secret_value() == "sk_live_nested"
        assert (await store.access(ref)).get_secret_value() == "sk_live_nested"
        assert secret_manager.request_count > 0


def _read_file_uri(uri: str) -> bytes:
    return Path(url2pathname(urlsplit(uri).path)).read_bytes()


class TestLocalFolderArchive(SnapshotArchiveContract):
    """The contract on snapshots kept in a local folder."""

    @pytest.fixture
    def archive(self, tmp_path: Path) -> SnapshotArchive:
        """An archive in a fresh folder."""
        return LocalFolderArchive(tmp_path / "archive")

    @pytest.fixture
    def read_back(self) -> ReadBack:
        """Reads the file a ``file://`` URI names."""
        return _read_file_uri


class TestGcsArchive(SnapshotArchiveContract):
    """The contract on a GCS bucket, through the storage client to the fake."""

    @pytest.fixture
    def archive(self, cloud_storage: FakeCloudStorage) -> SnapshotArchive:
        """An archive on the fake's bucket, under a prefix."""
        return GcsArchive(BUCKET, PREFIX, endpoint=cloud_storage.url)

    @pytest.fixture
    def read_back(self, cloud_storage: FakeCloudStorage) -> ReadBack:
        """Downloads the object a ``gs://`` URI names, with a separate storage client."""
        return lambda uri: _download(cloud_storage.url, uri)


class TestGcsArchiveBoundary:
    """What the GCS adapter adds: URIs, large files, lazy client and error translation."""

    async def test_store_returns_gs_uri_under_prefix(
        self, cloud_storage: FakeCloudStorage, tmp_path: Path
    ) -> None:
        """The URI is ``gs://<bucket>/<prefix>/<key>``."""
        source = tmp_path / "s.dump"
        source.write_bytes(b"x")
        archive = GcsArchive(BUCKET, f"/{PREFIX}/", endpoint=cloud_storage.url)

        uri = await archive.store("tnt_uri/final.dump", source)

        assert uri == f"gs://{BUCKET}/{PREFIX}/tnt_uri/final.dump"

    async def test_large_snapshot_reads_back_identical(
        self, cloud_storage: FakeCloudStorage, tmp_path: Path
    ) -> None:
        """A snapshot above the multipart limit (a resumable upload) is stored whole."""
        content = bytes(range(251)) * (MULTIPART_LIMIT // 251 + 4096)
        source = tmp_path / "big.dump"
        source.write_bytes(content)
        archive = GcsArchive(BUCKET, PREFIX, endpoint=cloud_storage.url)

        uri = await archive.store("tnt_big/final.dump", source)
        with pytest.raises(ArchiveError, match="already exists"):
            await archive.store("tnt_big/final.dump", source)

        assert len(content) > MULTIPART_LIMIT
        assert _download(cloud_storage.url, uri) == content

    async def test_missing_bucket_raises_archive_error(
        self, cloud_storage: FakeCloudStorage, tmp_path: Path
    ) -> None:
        """Storing into a bucket that does not exist raises ``ArchiveError``."""
        source = tmp_path / "s.dump"
        source.write_bytes(b"x")
        archive = GcsArchive("no-such-bucket", "", endpoint=cloud_storage.url)

        with pytest.raises(ArchiveError, match="bucket not found"):
            await archive.store("tnt_x/final.dump", source)

    async def test_unavailable_service_raises_archive_error(
        self, cloud_storage: FakeCloudStorage, tmp_path: Path
    ) -> None:
        """A 503 that outlasts the retry budget raises ``ArchiveError``."""
        source = tmp_path / "s.dump"
        source.write_bytes(b"x")
        archive = GcsArchive(BUCKET, PREFIX, endpoint=cloud_storage.url, retry_timeout=0)
        cloud_storage.fail_next(503, path_prefix="/upload/")

        with pytest.raises(ArchiveError, match="cannot store"):
            await archive.store("tnt_unavailable/final.dump", source)

    async def test_client_is_made_once_on_first_store(
        self, cloud_storage: FakeCloudStorage, tmp_path: Path
    ) -> None:
        """The constructor makes no client; the first store makes one, later stores reuse it."""
        made: list[StorageClientLike] = []

        def factory() -> StorageClientLike:
            made.append(_storage_client(cloud_storage.url))
            return made[-1]

        source = tmp_path / "s.dump"
        source.write_bytes(b"x")
        archive = GcsArchive(BUCKET, PREFIX, client_factory=factory)
        assert made == []

        await archive.store("tnt_lazy/one.dump", source)
        await archive.store("tnt_lazy/two.dump", source)

        assert len(made) == 1
