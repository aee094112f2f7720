"""A stateful fake of the Cloud Storage JSON API, enough for ``google-cloud-storage`` uploads.

Covered (object names are percent-encoded in paths, as the client sends them):

    POST /upload/storage/v1/b/B/o?uploadType=multipart      one-shot upload (<= 8 MiB)
    POST /upload/storage/v1/b/B/o?uploadType=resumable      start a resumable upload
    PUT  /upload/storage/v1/b/B/o?upload_id=U               send a chunk / query progress
    GET  /download/storage/v1/b/B/o/NAME?alt=media           read an object's bytes
    GET  /storage/v1/b/B/o/NAME[?alt=media]                 object metadata (or bytes)
    GET  /storage/v1/b/B                                    bucket metadata (the client
                                                            looks it up in the background)

``ifGenerationMatch`` is honoured (``0`` means "only if absent"; a failed condition is a
412), uploaded checksums are verified, and buckets exist only once created.
"""

from urllib.parse import quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandbox.gcp_server import HEALTH_PATH, ApiError, api_error_response
from sandbox.gcp_storage_state import StorageState, StoredObject, Upload
from sandbox.gcp_storage_wire import (
    ContentRange,
    checksum_mismatch,
    crc32c_b64,
    md5_b64,
    parse_content_range,
    parse_goog_hash,
    parse_multipart,
)


def _object_json(request: Request, stored: StoredObject) -> dict[str, object]:
    base = str(request.base_url).rstrip("/")
    path = f"b/{stored.bucket}/o/{quote(stored.name, safe='')}"
    return {
        "kind": "storage#object",
        "id": f"{stored.bucket}/{stored.name}/{stored.generation}",
        "name": stored.name,
        "bucket": stored.bucket,
        "generation": str(stored.generation),
        "metageneration": "1",
        "contentType": stored.content_type,
        "size": str(len(stored.data)),
        "crc32c": crc32c_b64(stored.data),
        "md5Hash": md5_b64(stored.data),
        "storageClass": "STANDARD",
        "timeCreated": stored.created,
        "updated": stored.created,
        "selfLink": f"{base}/storage/v1/{path}",
        "mediaLink": f"{base}/download/storage/v1/{path}?generation={stored.generation}&alt=media",
    }


def _media_response(stored: StoredObject) -> Response:
    headers = {
        "x-goog-hash": f"crc32c={crc32c_b64(stored.data)},md5={md5_b64(stored.data)}",
        "x-goog-generation": str(stored.generation),
        "x-goog-stored-content-length": str(len(stored.data)),
    }
    return Response(stored.data, media_type=stored.content_type, headers=headers)


def _generation_condition(request: Request) -> int | None:
    raw = request.query_params.get("ifGenerationMatch")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(400, "Invalid ifGenerationMatch.")
    return int(raw)


def _object_name(metadata: dict[str, object], request: Request) -> str:
    name = metadata.get("name", request.query_params.get("name"))
    if not isinstance(name, str) or not name:
        raise ApiError(400, "Required object name is missing.")
    return name


class _StorageApi:
    def __init__(self, state: StorageState) -> None:
        self._state = state

    async def start_upload(self, request: Request) -> Response:
        bucket = request.path_params["bucket"]
        kind = request.query_params.get("uploadType")
        condition = _generation_condition(request)
        body = await request.body()
        if kind == "multipart":
            parts = parse_multipart(request.headers.get("content-type", ""), body)
            upload = Upload(
                bucket, _object_name(parts.metadata, request), parts.content_type, condition
            )
            failed = checksum_mismatch(parts.data, parts.metadata)
            if failed is not None:
                raise ApiError(400, f"Provided {failed} doesn't match calculated {failed}.")
            return JSONResponse(_object_json(request, self._state.commit(upload, parts.data)))
        if kind != "resumable":
            raise ApiError(400, f"Unsupported uploadType {kind!r}.")
        metadata = await request.json() if body else {}
        content_type = request.headers.get("x-upload-content-type", "application/octet-stream")
        upload = Upload(bucket, _object_name(metadata, request), content_type, condition)
        self._state.check(bucket, upload.name, condition)
        upload_id = self._state.open_upload(upload)
        location = request.url.include_query_params(upload_id=upload_id)
        return JSONResponse({}, headers={"location": str(location)})

    async def put_chunk(self, request: Request) -> Response:
        upload_id = request.query_params.get("upload_id", "")
        upload = self._state.upload(upload_id)
        content_range = parse_content_range(request.headers.get("content-range"))
        chunk = await request.body()
        self._append(upload, content_range, chunk)
        if upload.total is None or len(upload.received) < upload.total:
            received = len(upload.received)
            headers = {"range": f"bytes=0-{received - 1}"} if received else {}
            return Response(status_code=308, headers=headers)
        data = bytes(upload.received)
        expected = parse_goog_hash(request.headers.get("x-goog-hash"))
        failed = checksum_mismatch(
            data, {"crc32c": expected.get("crc32c"), "md5Hash": expected.get("md5")}
        )
        self._state.close_upload(upload_id)
        if failed is not None:
            raise ApiError(400, f"Provided {failed} doesn't match calculated {failed}.")
        return JSONResponse(_object_json(request, self._state.commit(upload, data)))

    @staticmethod
    def _append(upload: Upload, content_range: ContentRange, chunk: bytes) -> None:
        if content_range.total is not None:
            upload.total = content_range.total
        if content_range.start is None:
            if chunk:
                raise ApiError(400, "Bytes sent with an empty Content-Range.")
            return
        if content_range.start != len(upload.received):
            raise ApiError(400, "Chunk does not start where the upload stands.")
        if content_range.end is not None and content_range.end - content_range.start + 1 != len(
            chunk
        ):
            raise ApiError(400, "Content-Range does not match the body length.")
        upload.received.extend(chunk)
        if upload.total is not None and len(upload.received) > upload.total:
            raise ApiError(400, "More bytes than the declared total.")

    async def get_bucket(self, request: Request) -> Response:
        bucket = request.path_params["bucket"]
        created = self._state.bucket_created(bucket)
        resource = {
            "kind": "storage#bucket",
            "id": bucket,
            "name": bucket,
            "projectNumber": "0",
            "location": "US",
            "locationType": "multi-region",
            "storageClass": "STANDARD",
            "metageneration": "1",
            "timeCreated": created,
            "updated": created,
        }
        return JSONResponse(resource)

    async def download(self, request: Request) -> Response:
        params = request.path_params
        return _media_response(self._state.read(params["bucket"], params["name"]))

    async def get_object(self, request: Request) -> Response:
        stored = self._state.read(request.path_params["bucket"], request.path_params["name"])
        if request.query_params.get("alt") == "media":
            return _media_response(stored)
        return JSONResponse(_object_json(request, stored))


async def _health(_: Request) -> Response:
    return PlainTextResponse("ok")


def build_storage_app(state: StorageState) -> Starlette:
    """The Starlette app of the fake, serving ``state``."""
    api = _StorageApi(state)
    upload = "/upload/storage/v1/b/{bucket}/o"
    routes = [
        Route(HEALTH_PATH, _health, methods=["GET"]),
        Route(upload, api.start_upload, methods=["POST"]),
        Route(upload, api.put_chunk, methods=["PUT"]),
        Route("/download/storage/v1/b/{bucket}/o/{name:path}", api.download, methods=["GET"]),
        Route("/storage/v1/b/{bucket}/o/{name:path}", api.get_object, methods=["GET"]),
        Route("/storage/v1/b/{bucket}", api.get_bucket, methods=["GET"]),
    ]
    handlers = {ApiError: api_error_response, ValueError: api_error_response}
    return Starlette(routes=routes, exception_handlers=handlers)
