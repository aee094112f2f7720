"""In-process fakes of the Google Cloud APIs the gateway uses: Secret Manager and Cloud Storage.

Each fake is a real HTTP server on 127.0.0.1 (a free port) in a background thread, for
tests and local development; point the official client at its ``url``::

    with FakeSecretManager() as fake:
        client = SecretManagerServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": fake.url},
        )
"""

from sandbox.gcp_secret_manager import SecretManagerState, build_secret_manager_app
from sandbox.gcp_server import FaultInjector, LoopbackServer
from sandbox.gcp_storage import build_storage_app
from sandbox.gcp_storage_state import StorageState

__all__ = ["FakeCloudStorage", "FakeSecretManager"]


class FakeSecretManager(LoopbackServer):
    """The Secret Manager v1 REST API (secrets and versions), in memory."""

    def __init__(self) -> None:
        """Prepare an empty fake; ``start()`` or ``with`` serves it."""
        self.state = SecretManagerState()
        self._faults = FaultInjector(build_secret_manager_app(self.state))
        super().__init__(self._faults, name="fake-secret-manager")

    @property
    def request_count(self) -> int:
        """How many API requests the fake received so far."""
        return self._faults.request_count

    def fail_next(self, status: int, times: int = 1, *, path_prefix: str = "/") -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status`` (e.g. 503)."""
        self._faults.fail_next(status, times, path_prefix=path_prefix)


class FakeCloudStorage(LoopbackServer):
    """The Cloud Storage JSON API (object upload and download), in memory."""

    def __init__(self, buckets: tuple[str, ...] = ()) -> None:
        """Prepare a fake holding the empty ``buckets``; ``start()`` or ``with`` serves it."""
        self.state = StorageState()
        for bucket in buckets:
            self.state.create_bucket(bucket)
        self._faults = FaultInjector(build_storage_app(self.state))
        super().__init__(self._faults, name="fake-cloud-storage")

    @property
    def request_count(self) -> int:
        """How many API requests the fake received so far."""
        return self._faults.request_count

    def fail_next(self, status: int, times: int = 1, *, path_prefix: str = "/") -> None:
        """Answer the next ``times`` requests under ``path_prefix`` with ``status`` (e.g. 503)."""
        self._faults.fail_next(status, times, path_prefix=path_prefix)
