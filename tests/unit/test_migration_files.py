"""Loading migration folders: names, versions, checksums and no-transaction files."""

from pathlib import Path

import pytest

from gateway.settings import REPO_ROOT
from tenancy.errors import ChecksumMismatchError, MigrationFileError
from tenancy.migration_files import load_migrations
from tenancy.tenant_migrations import pending_for


def write(folder: Path, files: dict[str, str]) -> Path:
    """Write ``files`` into ``folder`` and return it."""
    folder.mkdir(exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql, encoding="utf-8")
    return folder


def test_repository_migrations_load_in_order() -> None:
    """The committed central and tenant folders load, sorted, with distinct versions."""
    for kind in ("central", "tenant"):
        migrations = load_migrations(REPO_ROOT / "migrations" / kind)
        versions = [m.version for m in migrations]
        assert versions == sorted(set(versions))
        assert versions[0] == 1


def test_checksums_change_with_content(tmp_path: Path) -> None:
    """The checksum is of the bytes: an edit changes it."""
    before = load_migrations(write(tmp_path / "a", {"0001_x.sql": "SELECT 1;"}))[0]
    after = load_migrations(write(tmp_path / "b", {"0001_x.sql": "SELECT 2;"}))[0]
    assert before.checksum != after.checksum
    assert len(before.checksum) == 64


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"1_x.sql": ""}, "expected NNNN_lower_snake_name.sql"),
        ({"0001_X.sql": ""}, "expected NNNN_lower_snake_name.sql"),
        ({"0001_a.sql": "", "0001_b.sql": ""}, "used twice"),
        ({"0000_a.sql": ""}, "start at 0001"),
        ({"0001_a.sql": "CREATE INDEX CONCURRENTLY i ON t (c);"}, "no-transaction"),
        ({"notes.txt": ""}, "expected NNNN"),
    ],
)
def test_untrustworthy_folders_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    """Stray files, duplicate versions and undeclared CONCURRENTLY are errors."""
    with pytest.raises(MigrationFileError, match=message):
        load_migrations(write(tmp_path / "m", files))


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    """A folder that does not exist is reported, not treated as empty."""
    with pytest.raises(MigrationFileError, match="does not exist"):
        load_migrations(tmp_path / "nope")


def test_no_transaction_files_split_into_statements(tmp_path: Path) -> None:
    """A no-transaction file runs statement by statement, comment-only parts dropped."""
    sql = (
        "-- migrate:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n"
        "-- a comment\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y);\n"
    )
    migration = load_migrations(write(tmp_path / "m", {"0002_idx.sql": sql}))[0]
    assert not migration.transactional
    assert len(migration.statements()) == 2
    assert migration.statements()[1].endswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS b ON t (y)")


@pytest.mark.parametrize(
    "body",
    [
        "DO $$\nBEGIN\n    PERFORM 1;\nEND $$;\n",
        "DO $body$\nBEGIN\n    PERFORM 1;\nEND $body$;\n",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $fn$ SELECT 1; $fn$;\n",
    ],
)
def test_no_transaction_files_may_not_use_dollar_quoting(tmp_path: Path, body: str) -> None:
    """Dollar quoting in a no-transaction file is refused: the split would cut the block."""
    sql = "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x);\n"
    with pytest.raises(MigrationFileError, match="dollar quoting"):
        load_migrations(write(tmp_path / "m", {"0002_block.sql": sql + body}))


def test_transactional_files_may_use_dollar_quoting(tmp_path: Path) -> None:
    """A transactional file runs whole, so a DO block in it is fine."""
    sql = "DO $$\nBEGIN\n    PERFORM 1;\nEND $$;\n"
    migration = load_migrations(write(tmp_path / "m", {"0002_block.sql": sql}))[0]
    assert migration.transactional


def test_pending_detects_edits_and_missing_files(tmp_path: Path) -> None:
    """Applied versions must still be on disk with the same checksum."""
    migrations = load_migrations(
        write(tmp_path / "m", {"0001_a.sql": "SELECT 1;", "0002_b.sql": "SELECT 2;"})
    )
    first = migrations[0]
    assert pending_for("tnt_a", {1: first.checksum}, migrations) == [migrations[1]]
    with pytest.raises(ChecksumMismatchError, match="edited"):
        pending_for("tnt_a", {1: "0" * 64}, migrations)
    with pytest.raises(ChecksumMismatchError, match="missing"):
        pending_for("tnt_a", {7: "0" * 64}, migrations)
