"""The ``SnapshotArchive`` port on a Google Cloud Storage bucket.

Uploads are conditional on the object not existing (``ifGenerationMatch=0``), so a stored
snapshot is never overwritten, even by a racing writer; the retention policy and storage
class are properties of the bucket, set outside this code. The synchronous client runs in
a worker thread and is built on first use: finding default credentials may do network I/O.
"""

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import exceptions as storage_errors
from google.cloud.storage.retry import DEFAULT_RETRY

from tenancy.errors import ArchiveError

DEFAULT_TIMEOUT_S: Final = 120.0
DEFAULT_RETRY_TIMEOUT_S: Final = 300.0

_FAILURES: Final = (
    google_errors.GoogleAPIError,  # HTTP errors from the API, and exhausted retries
    auth_errors.GoogleAuthError,  # no credentials, or they could not be refreshed
    storage_errors.InvalidResponse,
    storage_errors.DataCorruption,  # the checksum GCS computed differs from ours
    OSError,  # the source file, and requests' ConnectionError and Timeout
)


class BlobLike(Protocol):
    """The part of ``google.cloud.storage.Blob`` the archive uses."""

    def upload_from_filename(
        self, filename: str, *, if_generation_match: int, timeout: float, retry: object
    ) -> None:
        """Upload the file's bytes as the object's content."""


class BucketLike(Protocol):
    """The part of ``google.cloud.storage.Bucket`` the archive uses."""

    def blob(self, blob_name: str) -> BlobLike:
        """A handle on one object of the bucket (no I/O)."""


class StorageClientLike(Protocol):
    """The part of ``google.cloud.storage.Client`` the archive uses."""

    def bucket(self, bucket_name: str) -> BucketLike:
        """A handle on one bucket (no I/O)."""


def _default_factory(project: str | None, endpoint: str | None) -> Callable[[], StorageClientLike]:
    def factory() -> StorageClientLike:
        if endpoint is None:
            client: StorageClientLike = storage.Client(project=project)
        else:
            client = storage.Client(
                project=project or "anonymous",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": endpoint},
            )
        return client

    return factory


def _valid_parts(path: str) -> bool:
    return all(part not in {"", ".", ".."} for part in path.split("/"))


class GcsArchive:
    """Snapshots as objects ``<prefix>/<key>`` in one bucket; URIs are ``gs://`` URLs."""

    def __init__(  # noqa: PLR0913 - keyword-only settings, each with a default
        self,
        bucket: str,
        prefix: str = "",
        *,
        project: str | None = None,
        endpoint: str | None = None,
        client_factory: Callable[[], StorageClientLike] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry_timeout: float = DEFAULT_RETRY_TIMEOUT_S,
    ) -> None:
        """Keep snapshots in ``bucket`` under ``prefix``; the client is made on first use.

        Args:
            bucket: The bucket's name.
            prefix: A folder-like prefix for every object name ('' for none).
            project: The project the default client bills to (default: from the
                environment).
            endpoint: A GCS-compatible API endpoint (a fake or an emulator), reached with
                anonymous credentials; default: Google's, with application-default ones.
            client_factory: Builds the storage client instead (then give neither
                ``project`` nor ``endpoint``).
            timeout: Seconds allowed for each HTTP request.
            retry_timeout: Seconds within which failed (idempotent) uploads are retried.
        """
        prefix = prefix.strip("/")
        if not bucket or (prefix and not _valid_parts(prefix)):
            raise ValueError(f"invalid bucket {bucket!r} or prefix {prefix!r}")
        if client_factory is not None and (project is not None or endpoint is not None):
            raise ValueError("give either client_factory or project/endpoint, not both")
        self._bucket = bucket
        self._prefix = prefix
        self._client_factory = client_factory or _default_factory(project, endpoint)
        self._timeout = timeout
        self._retry: object = DEFAULT_RETRY.with_timeout(retry_timeout)
        self._client: StorageClientLike | None = None
        self._client_lock = threading.Lock()

    def uri(self, key: str) -> str:
        """The ``gs://`` URI that a snapshot stored under ``key`` gets."""
        return f"gs://{self._bucket}/{self._object_name(key)}"

    def _object_name(self, key: str) -> str:
        return f"{self._prefix}/{key}" if self._prefix else key

    def _get_client(self) -> StorageClientLike:
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    async def store(self, key: str, source: Path) -> str:
        """Upload ``source`` as ``<prefix>/<key>``; refuse to overwrite an existing snapshot."""
        if not key or not _valid_parts(key):
            raise ArchiveError(f"invalid archive key {key!r}")
        return await asyncio.to_thread(self._store, key, source)

    def _store(self, key: str, source: Path) -> str:
        uri = self.uri(key)
        try:
            blob = self._get_client().bucket(self._bucket).blob(self._object_name(key))
            blob.upload_from_filename(
                str(source), if_generation_match=0, timeout=self._timeout, retry=self._retry
            )
        except google_errors.PreconditionFailed as exc:
            raise ArchiveError(f"archive {uri} already exists") from exc
        except google_errors.NotFound as exc:
            raise ArchiveError(f"cannot store {uri}: bucket not found") from exc
        except _FAILURES as exc:
            raise ArchiveError(f"cannot store {uri}: {type(exc).__name__}") from exc
        return uri
