"""The ``SecretStore`` port on Google Secret Manager, through the official client's REST transport.

The synchronous client runs in worker threads (``asyncio.to_thread``). It is built on first
use, not in the constructor, because finding default credentials may query the metadata
server. Library errors are translated here, at the boundary; messages name the secret
reference and the error class, never a value.
"""

import asyncio
import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Final

import google_crc32c
from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import secretmanager
from pydantic import SecretStr

from tenancy.errors import (
    InvalidSecretRefError,
    SecretError,
    SecretNotFoundError,
    SecretStoreUnavailableError,
)
from tenancy.secrets import SecretRef

DEFAULT_TIMEOUT_S: Final = 30.0
_PAYLOAD_LOGGERS: Final = ("google.cloud.secretmanager_v1",)
"""Loggers that write request and response payloads (secret values) at DEBUG level."""

_UNAVAILABLE: Final = (
    google_errors.ServerError,  # 500, 502, 503 ServiceUnavailable, 504 DeadlineExceeded
    google_errors.TooManyRequests,  # 429 ResourceExhausted
    google_errors.RetryError,  # the client's own retries ran out of time
    auth_errors.TransportError,  # credentials could not be refreshed over the network
    OSError,  # requests' ConnectionError and Timeout derive from it
)


_MAX_SECRET_ID = 255


@contextmanager
def _translated(ref: SecretRef) -> Iterator[None]:
    """Turn the client's exceptions into the tenancy layer's, naming only ``ref``."""
    try:
        yield
    except google_errors.NotFound as exc:
        raise SecretNotFoundError(f"secret {ref} not found") from exc
    except _UNAVAILABLE as exc:
        raise SecretStoreUnavailableError(
            f"secret manager unavailable for {ref}: {type(exc).__name__}"
        ) from exc
    except (google_errors.GoogleAPIError, auth_errors.GoogleAuthError) as exc:
        raise SecretError(f"secret manager refused {ref}: {type(exc).__name__}") from exc


SEGMENT_JOINER = "__"
"""Secret Manager ids have no '/': the path segments of a reference are joined with this."""


def secret_id(ref: SecretRef) -> str:
    """The Secret Manager secret id for ``ref``: ``a/b/c`` becomes ``a__b__c``."""
    return ref.secret.replace("/", SEGMENT_JOINER)


def _secret_name(ref: SecretRef) -> str:
    return f"projects/{ref.project}/secrets/{secret_id(ref)}"


def _check_ref(ref: SecretRef) -> None:
    if len(secret_id(ref)) > _MAX_SECRET_ID:
        raise InvalidSecretRefError(
            f"secret {ref}: longer than Secret Manager's {_MAX_SECRET_ID}-character ids"
        )


def _silence_payload_logging() -> None:
    # The REST transport logs full request and response bodies when its logger is enabled
    # for DEBUG (e.g. inherited from a DEBUG root logger): that would log secret values.
    for name in _PAYLOAD_LOGGERS:
        payload_logger = logging.getLogger(name)
        if payload_logger.getEffectiveLevel() < logging.INFO:
            payload_logger.setLevel(logging.INFO)


class GoogleSecretManagerStore:
    """Secrets in Google Secret Manager; ``SecretRef`` names are Secret Manager resource names.

    New secrets are created with automatic replication. Versions are added with a CRC32C
    of the payload, and the checksum returned on access is verified.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        client_options: Mapping[str, str] | None = None,
        credentials: Credentials | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Configure the client; nothing is connected or looked up until the first call.

        Args:
            endpoint: An API endpoint override (a fake or an emulator); short for
                ``client_options={"api_endpoint": endpoint}``.
            client_options: Passed to the client, e.g. ``{"api_endpoint": url}`` for a fake.
            credentials: Explicit credentials; anonymous when an endpoint override is given
                without them, application-default credentials otherwise.
            timeout: Seconds allowed for each request.
        """
        self._client_options = dict(client_options or {})
        if endpoint is not None:
            self._client_options["api_endpoint"] = endpoint
        if credentials is None and "api_endpoint" in self._client_options:
            credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        self._credentials = credentials
        self._timeout = timeout
        self._client: secretmanager.SecretManagerServiceClient | None = None
        self._client_lock = threading.Lock()

    def _get_client(self) -> secretmanager.SecretManagerServiceClient:
        with self._client_lock:
            if self._client is None:
                _silence_payload_logging()
                self._client = secretmanager.SecretManagerServiceClient(
                    transport="rest",
                    credentials=self._credentials,
                    client_options=self._client_options,
                )
            return self._client

    async def access(self, ref: SecretRef) -> SecretStr:
        """Return the value of one version (``latest`` is the newest enabled one)."""
        _check_ref(ref)
        return await asyncio.to_thread(self._access, ref)

    def _access(self, ref: SecretRef) -> SecretStr:
        with _translated(ref):
            response = self._get_client().access_secret_version(
                name=f"{_secret_name(ref)}/versions/{ref.version}", timeout=self._timeout
            )
        data = bytes(response.payload.data)
        if (
            "data_crc32c" in response.payload
            and response.payload.data_crc32c != google_crc32c.value(data)
        ):
            raise SecretStoreUnavailableError(f"secret {ref}: payload checksum mismatch")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # ``from None``: the decode error carries the raw bytes in its args.
            raise SecretError(f"secret {ref} is not UTF-8 text") from None
        return SecretStr(text)

    async def add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        """Add ``value`` as a new version, creating the secret first if it is missing."""
        _check_ref(ref)
        return await asyncio.to_thread(self._add_version, ref, value)

    def _add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        data = value.get_secret_value().encode("utf-8")
        payload = secretmanager.SecretPayload(data=data, data_crc32c=google_crc32c.value(data))
        with _translated(ref):
            client = self._get_client()
            try:
                version = client.add_secret_version(
                    parent=_secret_name(ref), payload=payload, timeout=self._timeout
                )
            except google_errors.NotFound:
                self._create_secret(client, ref)
                version = client.add_secret_version(
                    parent=_secret_name(ref), payload=payload, timeout=self._timeout
                )
        return ref.with_version(version.name.rsplit("/", 1)[-1])

    def _create_secret(
        self, client: secretmanager.SecretManagerServiceClient, ref: SecretRef
    ) -> None:
        secret = secretmanager.Secret(
            replication=secretmanager.Replication(automatic=secretmanager.Replication.Automatic())
        )
        # Conflict: another writer created it meanwhile; the version is added to that one.
        with suppress(google_errors.Conflict):
            client.create_secret(
                parent=f"projects/{ref.project}",
                secret_id=secret_id(ref),
                secret=secret,
                timeout=self._timeout,
            )

    async def destroy(self, ref: SecretRef) -> None:
        """Delete the secret with all its versions; a missing secret is a no-op."""
        _check_ref(ref)
        await asyncio.to_thread(self._destroy, ref)

    def _destroy(self, ref: SecretRef) -> None:
        with _translated(ref):
            try:
                self._get_client().delete_secret(name=_secret_name(ref), timeout=self._timeout)
            except google_errors.NotFound:
                return
