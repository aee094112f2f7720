"""The secret-store port, the local file store for dev and tests, and a 5-minute cache.

Secrets are named by Secret Manager resource names
(``projects/P/secrets/S/versions/V``); the values travel as ``pydantic.SecretStr`` so
that printing, logging or ``repr`` never shows them.
"""

import asyncio
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

from pydantic import SecretStr

from schemas.clock import Clock
from tenancy.errors import InvalidSecretRefError, SecretNotFoundError

_REF_PATTERN: Final = re.compile(
    r"projects/(?P<project>[a-z][a-z0-9-]{0,62})"
    r"/secrets/(?P<secret>[A-Za-z0-9_-]{1,255}(?:/[A-Za-z0-9_-]{1,255}){0,9})"
    r"/versions/(?P<version>latest|[1-9][0-9]{0,8})"
)
DEFAULT_CACHE_TTL: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A parsed, validated reference to one version of a secret."""

    project: str
    secret: str
    version: str

    @classmethod
    def parse(cls, raw: str) -> "SecretRef":
        """Parse ``projects/P/secrets/S/versions/V``; raise ``InvalidSecretRefError`` if not."""
        match = _REF_PATTERN.fullmatch(raw)
        if match is None:
            raise InvalidSecretRefError(
                f"invalid secret reference {raw[:120]!r}: expected "
                "projects/<project>/secrets/<name>/versions/<latest|N>"
            )
        return cls(match["project"], match["secret"], match["version"])

    @property
    def secret_name(self) -> str:
        """The secret's resource name without a version."""
        return f"projects/{self.project}/secrets/{self.secret}"

    def with_version(self, version: str) -> "SecretRef":
        """The same secret at another version."""
        return SecretRef(self.project, self.secret, version)

    def __str__(self) -> str:
        """The full resource name, as Secret Manager spells it."""
        return f"{self.secret_name}/versions/{self.version}"


class SecretStore(Protocol):
    """Where vendor credentials live: Secret Manager in prod, files in dev and tests."""

    async def access(self, ref: SecretRef) -> SecretStr:
        """Return the value of one secret version (``latest`` means the newest enabled)."""
        ...

    async def add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        """Store ``value`` as a new version of the secret (created if needed); return its ref."""
        ...

    async def destroy(self, ref: SecretRef) -> None:
        """Destroy the secret with all its versions; destroying a missing secret is a no-op."""
        ...


class FileSecretStore:
    """Secrets as files: ``<root>/<project>/<secret path>/<version>``, one value per file.

    For dev and tests. Files are written with mode 0600 and read on every access.
    """

    def __init__(self, root: Path) -> None:
        """Keep secrets under ``root``, created on first write."""
        self._root = root

    def _folder(self, ref: SecretRef) -> Path:
        return self._root.joinpath(ref.project, *ref.secret.split("/"))

    async def access(self, ref: SecretRef) -> SecretStr:
        """Read the version's file; ``latest`` is the highest numbered version."""
        return await asyncio.to_thread(self._access, ref)

    def _access(self, ref: SecretRef) -> SecretStr:
        folder = self._folder(ref)
        version = self._latest(folder) if ref.version == "latest" else ref.version
        path = folder / (version or "0")
        if version is None or not path.is_file():
            raise SecretNotFoundError(f"secret {ref} not found")
        return SecretStr(path.read_text(encoding="utf-8"))

    @staticmethod
    def _latest(folder: Path) -> str | None:
        if not folder.is_dir():
            return None
        versions = [int(p.name) for p in folder.iterdir() if p.is_file() and p.name.isdigit()]
        return str(max(versions)) if versions else None

    async def add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        """Write the value as the next numbered version."""
        return await asyncio.to_thread(self._add_version, ref, value)

    def _add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        folder = self._folder(ref)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        version = str(int(self._latest(folder) or "0") + 1)
        fd = os.open(folder / version, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value.get_secret_value())
        return ref.with_version(version)

    async def destroy(self, ref: SecretRef) -> None:
        """Delete every version file of the secret."""
        await asyncio.to_thread(self._destroy, ref)

    def _destroy(self, ref: SecretRef) -> None:
        folder = self._folder(ref)
        if not folder.is_dir():
            return
        for path in folder.iterdir():
            if path.is_file() and path.name.isdigit():
                path.unlink()


@dataclass(slots=True)
class _Entry:
    value: SecretStr
    expires_at: datetime


@dataclass(slots=True)
class CachingSecretStore:
    """Caches ``access`` results for ``ttl`` (5 minutes by default) in front of any store.

    Writes and destruction pass through and drop the cached versions of that secret.
    """

    inner: SecretStore
    clock: Clock
    ttl: timedelta = DEFAULT_CACHE_TTL
    _entries: dict[SecretRef, _Entry] = field(default_factory=dict)

    async def access(self, ref: SecretRef) -> SecretStr:
        """Serve from the cache while fresh, else read through and remember."""
        now = self.clock()
        entry = self._entries.get(ref)
        if entry is not None and entry.expires_at > now:
            return entry.value
        value = await self.inner.access(ref)
        self._entries[ref] = _Entry(value, now + self.ttl)
        return value

    async def add_version(self, ref: SecretRef, value: SecretStr) -> SecretRef:
        """Write through, then forget what was cached for that secret."""
        added = await self.inner.add_version(ref, value)
        self._forget(ref)
        return added

    async def destroy(self, ref: SecretRef) -> None:
        """Destroy through, then forget what was cached for that secret."""
        await self.inner.destroy(ref)
        self._forget(ref)

    def _forget(self, ref: SecretRef) -> None:
        for cached in [r for r in self._entries if r.secret_name == ref.secret_name]:
            del self._entries[cached]
