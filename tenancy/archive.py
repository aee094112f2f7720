"""The snapshot-archive port: where a tenant's final schema dump is kept.

A local folder in dev and tests; a GCS bucket (Coldline, 7-year retention set on the
bucket) in prod.
"""

import asyncio
import shutil
from pathlib import Path
from typing import Protocol

from tenancy.errors import ArchiveError


class SnapshotArchive(Protocol):
    """Keeps schema snapshots; a stored snapshot is never overwritten."""

    async def store(self, key: str, source: Path) -> str:
        """Copy the file at ``source`` to ``key``; return a URI that names the stored copy."""
        ...


class LocalFolderArchive:
    """Snapshots as files under a folder; URIs are ``file://`` URLs."""

    def __init__(self, root: Path) -> None:
        """Keep snapshots under ``root``, created on first use."""
        self._root = root

    async def store(self, key: str, source: Path) -> str:
        """Copy ``source`` to ``<root>/<key>``; refuse to overwrite an existing snapshot."""
        return await asyncio.to_thread(self._store, key, source)

    def _store(self, key: str, source: Path) -> str:
        parts = key.split("/")
        if not key or any(part in {"", ".", ".."} for part in parts):
            raise ArchiveError(f"invalid archive key {key!r}")
        target = self._root.joinpath(*parts).resolve()
        if target.exists():
            raise ArchiveError(f"archive {target} already exists")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(source, partial)
        partial.rename(target)
        return target.as_uri()
