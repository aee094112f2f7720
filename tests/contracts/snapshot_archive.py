"""The ``SnapshotArchive`` contract: what every snapshot archive must do, wherever it stores.

Subclass ``SnapshotArchiveContract`` as ``Test<Implementation>`` and provide two fixtures:
``archive`` (the archive under test) and ``read_back`` (a ``ReadBack`` returning the bytes
stored under a URI that the archive returned, read by other means than the archive).
"""

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tenancy.archive import SnapshotArchive
from tenancy.errors import ArchiveError

ReadBack = Callable[[str], bytes]
"""Reads the stored copy named by a URI that ``store`` returned."""

SNAPSHOT = b"-- pg_dump of tnt_acme\n" + bytes(range(256)) * 64 + b"\r\n\x00end"


class SnapshotArchiveContract:
    """Behaviour every ``SnapshotArchive`` shows; subclasses give ``archive`` and ``read_back``."""

    @pytest.fixture
    def key(self) -> str:
        """A nested key no other test uses."""
        return f"tenants/tnt_{uuid.uuid4().hex[:12]}/final.dump"

    @pytest.fixture
    def source(self, tmp_path: Path) -> Path:
        """A snapshot file with binary content (every byte value, CR/LF, NUL)."""
        path = tmp_path / "snapshot.dump"
        path.write_bytes(SNAPSHOT)
        return path

    async def test_stored_content_reads_back_identical(
        self, archive: SnapshotArchive, read_back: ReadBack, key: str, source: Path
    ) -> None:
        """The copy named by the returned URI holds exactly the bytes of the source file."""
        uri = await archive.store(key, source)

        assert read_back(uri) == SNAPSHOT

    async def test_empty_snapshot_is_stored(
        self, archive: SnapshotArchive, read_back: ReadBack, key: str, tmp_path: Path
    ) -> None:
        """An empty source file is stored as an empty copy."""
        empty = tmp_path / "empty.dump"
        empty.write_bytes(b"")

        assert read_back(await archive.store(key, empty)) == b""

    async def test_distinct_keys_get_distinct_copies(
        self, archive: SnapshotArchive, read_back: ReadBack, key: str, tmp_path: Path
    ) -> None:
        """Two keys store two copies, each with its own content and its own URI."""
        one, two = tmp_path / "one", tmp_path / "two"
        one.write_bytes(b"one")
        two.write_bytes(b"two")

        first = await archive.store(key, one)
        second = await archive.store(key + ".2", two)

        assert first != second
        assert (read_back(first), read_back(second)) == (b"one", b"two")

    async def test_second_store_of_same_key_raises_and_keeps_the_first(
        self, archive: SnapshotArchive, read_back: ReadBack, key: str, source: Path, tmp_path: Path
    ) -> None:
        """Storing under a key already used raises ``ArchiveError`` and leaves the first copy."""
        uri = await archive.store(key, source)
        other = tmp_path / "other.dump"
        other.write_bytes(b"something else")

        with pytest.raises(ArchiveError):
            await archive.store(key, other)

        assert read_back(uri) == SNAPSHOT

    @pytest.mark.parametrize("bad_key", ["", "a//b", "../escape", "a/./b", "a/b/", "/abs"])
    async def test_invalid_key_raises(
        self, archive: SnapshotArchive, source: Path, bad_key: str
    ) -> None:
        """Empty keys and keys with empty, ``.`` or ``..`` segments are refused."""
        with pytest.raises(ArchiveError):
            await archive.store(bad_key, source)
