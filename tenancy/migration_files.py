"""Migration files: ``NNNN_name.sql``, applied in version order, checksummed.

A file whose first line is ``-- migrate:no-transaction`` runs outside a transaction, one
statement at a time (statements separated by ``;`` at the end of a line). It is the only
kind that may use ``CONCURRENTLY``, and its statements must be idempotent
(``IF NOT EXISTS``), since a failure part-way leaves the earlier statements applied.
Because of that naive split, such a file may not use dollar quoting (``$$`` or
``$tag$``): a ``DO`` block or function body would be cut at its inner semicolons.
"""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tenancy.errors import MigrationFileError

_FILE_PATTERN: Final = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql")
_NO_TRANSACTION: Final = "-- migrate:no-transaction"
_CONCURRENTLY: Final = re.compile(r"\bconcurrently\b", re.IGNORECASE)
_STATEMENT_END: Final = re.compile(r";\s*$", re.MULTILINE)
_DOLLAR_QUOTE: Final = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file, read and checksummed."""

    version: int
    name: str
    sql: str
    checksum: str
    transactional: bool

    def statements(self) -> tuple[str, ...]:
        """The file split into statements (for no-transaction migrations)."""
        parts = (part.strip() for part in _STATEMENT_END.split(self.sql))
        return tuple(part for part in parts if part and not _only_comments(part))


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def load_migrations(folder: Path) -> tuple[Migration, ...]:
    """Read every migration in ``folder``, sorted by version.

    Raises ``MigrationFileError`` for a stray file, a duplicate version, a
    ``CONCURRENTLY`` in a file that does not declare ``-- migrate:no-transaction``, or
    dollar quoting in one that does.
    """
    if not folder.is_dir():
        raise MigrationFileError(f"migrations folder {folder} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        match = _FILE_PATTERN.fullmatch(path.name)
        if match is None:
            raise MigrationFileError(f"{path.name}: expected NNNN_lower_snake_name.sql")
        migration = _read(path, int(match["version"]), match["name"])
        if migration.version in found:
            raise MigrationFileError(f"{path.name}: version {migration.version} is used twice")
        found[migration.version] = migration
    return tuple(found[v] for v in sorted(found))


def _read(path: Path, version: int, name: str) -> Migration:
    raw = path.read_bytes()
    sql = raw.decode("utf-8")
    transactional = not sql.lstrip().startswith(_NO_TRANSACTION)
    if transactional and _CONCURRENTLY.search(sql):
        raise MigrationFileError(
            f"{path.name}: uses CONCURRENTLY, so its first line must be '{_NO_TRANSACTION}'"
        )
    if not transactional and _DOLLAR_QUOTE.search(sql):
        raise MigrationFileError(
            f"{path.name}: no-transaction files are split on ';' at line ends, so they may"
            " not use dollar quoting ($$ or $tag$); move the block to a transactional file"
        )
    if version <= 0:
        raise MigrationFileError(f"{path.name}: versions start at 0001")
    checksum = hashlib.sha256(raw).hexdigest()
    return Migration(version, name, sql, checksum, transactional)
