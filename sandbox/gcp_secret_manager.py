"""A stateful fake of the Secret Manager v1 REST API, as the client's REST transport calls it.

Covered (``{name}`` is ``projects/P/secrets/S``):

    POST   /v1/projects/P/secrets?secretId=S       create_secret
    GET    /v1/{name}                              get_secret
    DELETE /v1/{name}                              delete_secret (with every version)
    POST   /v1/{name}:addVersion                   add_secret_version
    GET    /v1/{name}/versions/V:access            access_secret_version (V: N or latest)

Versions are numbered from 1 per secret and are all enabled. Payload checksums
(``dataCrc32c``) are verified on add and returned on access, as the real service does.
Errors use Google's JSON error body with the HTTP status the real API sends.
"""

import base64
import binascii
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import google_crc32c
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.gcp_server import HEALTH_PATH, ApiError, api_error_response

_PROJECT_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SECRET_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,255}")
_VERSION_ID: Final = re.compile(r"latest|[1-9][0-9]{0,8}")
MAX_PAYLOAD_BYTES: Final = 64 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Secret:
    resource: dict[str, object]
    versions: dict[int, bytes] = field(default_factory=dict)
    version_times: dict[int, str] = field(default_factory=dict)
    next_version: int = 1


class SecretManagerState:
    """The fake's secrets, guarded by a lock (tests may look in from another thread)."""

    def __init__(self) -> None:
        """Start with no secret."""
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}

    def create(self, name: str, resource: dict[str, object]) -> dict[str, object]:
        """Create the secret ``name``; 409 if it exists."""
        with self._lock:
            if name in self._secrets:
                raise ApiError(409, f"Secret [{name}] already exists.")
            stored = {**resource, "name": name, "createTime": _now()}
            self._secrets[name] = _Secret(stored)
            return dict(stored)

    def get(self, name: str) -> dict[str, object]:
        """The secret's resource; 404 if missing."""
        with self._lock:
            return dict(self._find(name).resource)

    def delete(self, name: str) -> None:
        """Delete the secret and its versions; 404 if missing."""
        with self._lock:
            self._find(name)
            del self._secrets[name]

    def add_version(self, name: str, data: bytes) -> dict[str, object]:
        """Store ``data`` as the next version; 404 if the secret is missing."""
        with self._lock:
            secret = self._find(name)
            number = secret.next_version
            secret.next_version += 1
            secret.versions[number] = data
            secret.version_times[number] = _now()
            return _version_json(name, number, secret.version_times[number])

    def access(self, name: str, version: str) -> tuple[str, bytes]:
        """The version's full name and data; ``latest`` is the newest; 404 if missing."""
        with self._lock:
            secret = self._find(name)
            number = max(secret.versions, default=0) if version == "latest" else int(version)
            if number not in secret.versions:
                raise ApiError(404, f"Secret Version [{name}/versions/{version}] not found.")
            return f"{name}/versions/{number}", secret.versions[number]

    def _find(self, name: str) -> _Secret:
        secret = self._secrets.get(name)
        if secret is None:
            raise ApiError(404, f"Secret [{name}] not found or has no versions.")
        return secret


def _version_json(name: str, number: int, created: str) -> dict[str, object]:
    return {
        "name": f"{name}/versions/{number}",
        "createTime": created,
        "state": "ENABLED",
        "etag": f'"{number}"',
        "clientSpecifiedPayloadChecksum": True,
    }


def _secret_name(request: Request) -> str:
    project = request.path_params["project"]
    secret = request.path_params["secret"]
    if not _PROJECT_ID.fullmatch(project) or not _SECRET_ID.fullmatch(secret):
        raise ApiError(400, "Invalid resource field value in the request.")
    return f"projects/{project}/secrets/{secret}"


async def _json_object(request: Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "Invalid JSON payload received.") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON payload received.")
    return body


def _decode_payload(body: dict[str, object]) -> bytes:
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise ApiError(400, "Payload is required.")
    raw = payload.get("data", "")
    if not isinstance(raw, str):
        raise ApiError(400, "Invalid value at 'payload.data'.")
    try:
        data = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise ApiError(400, "Invalid value at 'payload.data' (TYPE_BYTES).") from exc
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ApiError(400, f"Secret payload exceeds {MAX_PAYLOAD_BYTES} bytes.")
    checksum = payload.get("dataCrc32c")
    if checksum is not None and str(checksum) != str(google_crc32c.value(data)):
        raise ApiError(400, "Checksum mismatch: the payload was corrupted in transit.")
    return data


class _SecretManagerApi:
    def __init__(self, state: SecretManagerState) -> None:
        self._state = state

    async def create_secret(self, request: Request) -> Response:
        project = request.path_params["project"]
        secret_id = request.query_params.get("secretId", "")
        if not _PROJECT_ID.fullmatch(project) or not _SECRET_ID.fullmatch(secret_id):
            raise ApiError(400, "Invalid secretId or parent.")
        body = await _json_object(request)
        if not isinstance(body.get("replication"), dict):
            raise ApiError(400, "Secret.replication is required.")
        name = f"projects/{project}/secrets/{secret_id}"
        return JSONResponse(self._state.create(name, body))

    async def get_secret(self, request: Request) -> Response:
        return JSONResponse(self._state.get(_secret_name(request)))

    async def delete_secret(self, request: Request) -> Response:
        self._state.delete(_secret_name(request))
        return JSONResponse({})

    async def add_version(self, request: Request) -> Response:
        name = _secret_name(request)
        data = _decode_payload(await _json_object(request))
        return JSONResponse(self._state.add_version(name, data))

    async def access(self, request: Request) -> Response:
        name = _secret_name(request)
        version = request.path_params["version"]
        if not _VERSION_ID.fullmatch(version):
            raise ApiError(400, "Invalid secret version id.")
        full_name, data = self._state.access(name, version)
        payload = {
            "data": base64.b64encode(data).decode("ascii"),
            "dataCrc32c": str(google_crc32c.value(data)),
        }
        return JSONResponse({"name": full_name, "payload": payload})


async def _health(_: Request) -> Response:
    return PlainTextResponse("ok")


def build_secret_manager_app(state: SecretManagerState) -> Starlette:
    """The Starlette app of the fake, serving ``state``."""
    api = _SecretManagerApi(state)
    secrets = "/v1/projects/{project}/secrets"
    one = secrets + "/{secret}"
    routes = [
        Route(HEALTH_PATH, _health, methods=["GET"]),
        Route(one + "/versions/{version}:access", api.access, methods=["GET"]),
        Route(one + ":addVersion", api.add_version, methods=["POST"]),
        Route(secrets, api.create_secret, methods=["POST"]),
        Route(one, api.get_secret, methods=["GET"]),
        Route(one, api.delete_secret, methods=["DELETE"]),
    ]
    return Starlette(routes=routes, exception_handlers={ApiError: api_error_response})
