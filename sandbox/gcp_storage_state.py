"""The state of the Cloud Storage fake: buckets, object generations, open uploads."""

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from sandbox.gcp_server import ApiError

_PRECONDITION_FAILED: Final = "At least one of the pre-conditions you specified did not hold."


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object generation as the fake keeps it."""

    bucket: str
    name: str
    data: bytes
    generation: int
    content_type: str
    created: str


@dataclass(slots=True)
class Upload:
    """An object being written: one multipart request, or a resumable upload's chunks."""

    bucket: str
    name: str
    content_type: str
    if_generation_match: int | None
    total: int | None = None
    received: bytearray = field(default_factory=bytearray)


class StorageState:
    """Buckets, objects and open resumable uploads, guarded by one lock."""

    def __init__(self) -> None:
        """Start with no bucket."""
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, StoredObject]] = {}
        self._uploads: dict[str, Upload] = {}
        self._created: dict[str, str] = {}
        self._last_generation = 0

    def create_bucket(self, bucket: str) -> None:
        """Create an empty bucket (a no-op if it exists)."""
        with self._lock:
            self._buckets.setdefault(bucket, {})
            self._created.setdefault(bucket, now())

    def bucket_created(self, bucket: str) -> str:
        """When the bucket was created; 404 if it does not exist."""
        with self._lock:
            self._objects(bucket)
            return self._created[bucket]

    def read(self, bucket: str, name: str) -> StoredObject:
        """The live generation of an object; 404 if the bucket or object is missing."""
        with self._lock:
            stored = self._objects(bucket).get(name)
        if stored is None:
            raise ApiError(404, f"No such object: {bucket}/{name}")
        return stored

    def check(self, bucket: str, name: str, if_generation_match: int | None) -> None:
        """404 for a missing bucket, 412 if ``ifGenerationMatch`` does not hold."""
        with self._lock:
            self._check(bucket, name, if_generation_match)

    def commit(self, upload: Upload, data: bytes) -> StoredObject:
        """Write ``data`` as a new generation if the upload's precondition still holds."""
        with self._lock:
            self._check(upload.bucket, upload.name, upload.if_generation_match)
            generation = max(self._last_generation + 1, time.time_ns() // 1000)
            self._last_generation = generation
            stored = StoredObject(
                upload.bucket, upload.name, data, generation, upload.content_type, now()
            )
            self._buckets[upload.bucket][upload.name] = stored
            return stored

    def open_upload(self, upload: Upload) -> str:
        """Register a resumable upload; return its id."""
        upload_id = secrets.token_urlsafe(16)
        with self._lock:
            self._uploads[upload_id] = upload
        return upload_id

    def upload(self, upload_id: str) -> Upload:
        """An open resumable upload; 404 if unknown or finished."""
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None:
            raise ApiError(404, "No such upload session.")
        return upload

    def close_upload(self, upload_id: str) -> None:
        """Forget a finished resumable upload."""
        with self._lock:
            self._uploads.pop(upload_id, None)

    def _objects(self, bucket: str) -> dict[str, StoredObject]:
        objects = self._buckets.get(bucket)
        if objects is None:
            raise ApiError(404, f"The specified bucket does not exist: {bucket}")
        return objects

    def _check(self, bucket: str, name: str, if_generation_match: int | None) -> None:
        current = self._objects(bucket).get(name)
        generation = current.generation if current is not None else 0
        if if_generation_match is not None and if_generation_match != generation:
            raise ApiError(412, _PRECONDITION_FAILED)


def now() -> str:
    """The current UTC time in RFC 3339, as the JSON API writes timestamps."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
