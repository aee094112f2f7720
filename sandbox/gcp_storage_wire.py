"""Wire formats of the Cloud Storage JSON API that the fake needs to read and write.

Multipart/related upload bodies, ``Content-Range`` headers of resumable uploads, the
``x-goog-hash`` header, and the checksums GCS reports (base64 CRC32C and MD5).
"""

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Final

import google_crc32c

_BOUNDARY: Final = re.compile(r'boundary="?(?P<boundary>[^";]+)"?', re.IGNORECASE)
_CONTENT_RANGE: Final = re.compile(
    r"bytes (?:(?P<start>\d+)-(?P<end>\d+)|\*)/(?:(?P<total>\d+)|\*)", re.IGNORECASE
)
_CRLF: Final = b"\r\n"


class WireError(ValueError):
    """A request body or header the fake cannot make sense of (answered with 400)."""


def crc32c_b64(data: bytes) -> str:
    """The CRC32C of ``data`` as GCS spells it: base64 of the big-endian 32-bit value."""
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode("ascii")


def md5_b64(data: bytes) -> str:
    """The MD5 of ``data`` as GCS spells it: base64 of the digest."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """The two parts of a ``uploadType=multipart`` request."""

    metadata: dict[str, object]
    content_type: str
    data: bytes


def _split_part(part: bytes) -> tuple[dict[str, str], bytes]:
    head, separator, content = part.partition(_CRLF + _CRLF)
    if not separator:
        raise WireError("multipart part without headers")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        key, colon, value = line.partition(":")
        if colon:
            headers[key.strip().lower()] = value.strip()
    return headers, content


def parse_multipart(content_type: str, body: bytes) -> MultipartUpload:
    """Split a multipart/related body into its JSON metadata part and its media part."""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise WireError("expected multipart/related with a boundary")
    delimiter = b"--" + match["boundary"].encode("latin-1")
    pieces = body.split(delimiter)
    # preamble, metadata part, media part, closing "--"
    if len(pieces) != 4 or not pieces[3].startswith(b"--"):  # noqa: PLR2004
        raise WireError("expected exactly two parts")
    parts = [piece.removeprefix(_CRLF).removesuffix(_CRLF) for piece in pieces[1:3]]
    _, meta_bytes = _split_part(parts[0])
    media_headers, data = _split_part(parts[1])
    try:
        metadata = json.loads(meta_bytes)
    except ValueError as exc:
        raise WireError("metadata part is not JSON") from exc
    if not isinstance(metadata, dict):
        raise WireError("metadata part is not a JSON object")
    media_type = media_headers.get("content-type", "application/octet-stream")
    return MultipartUpload(metadata, media_type, data)


@dataclass(frozen=True, slots=True)
class ContentRange:
    """A resumable-upload ``Content-Range``.

    ``start``/``end`` are ``None`` when the request carries no bytes; ``total`` is ``None``
    until the client knows the size.
    """

    start: int | None
    end: int | None
    total: int | None


def parse_content_range(header: str | None) -> ContentRange:
    """Parse ``bytes A-B/T``, ``bytes A-B/*``, ``bytes */T`` or ``bytes */*``."""
    match = _CONTENT_RANGE.fullmatch((header or "").strip())
    if match is None:
        raise WireError("missing or malformed Content-Range")
    start = int(match["start"]) if match["start"] is not None else None
    end = int(match["end"]) if match["end"] is not None else None
    total = int(match["total"]) if match["total"] is not None else None
    if start is not None and end is not None and end < start:
        raise WireError("Content-Range ends before it starts")
    return ContentRange(start, end, total)


def parse_goog_hash(header: str | None) -> dict[str, str]:
    """``x-goog-hash: crc32c=...,md5=...`` as a dict (empty when absent)."""
    hashes: dict[str, str] = {}
    for item in (header or "").split(","):
        kind, equals, value = item.strip().partition("=")
        if equals:
            hashes[kind.lower()] = value
    return hashes


def checksum_mismatch(data: bytes, expected: dict[str, object]) -> str | None:
    """Name the first checksum in ``expected`` (``crc32c``/``md5Hash``) that ``data`` fails."""
    crc = expected.get("crc32c")
    if crc is not None and crc != crc32c_b64(data):
        return "crc32c"
    md5 = expected.get("md5Hash")
    if md5 is not None and md5 != md5_b64(data):
        return "md5"
    return None
