"""Embedded Postgres for dev and tests: pgserver runs a real Postgres 16 in a folder."""

from pathlib import Path

import pgserver
from pgserver.postgres_server import get_server

from tenancy.errors import InvalidRequestError


def start_embedded_postgres(folder: Path) -> str:
    """Start (or join) the server for ``folder``; return its DSN. It stops with the process."""
    folder.mkdir(parents=True, exist_ok=True)
    server = get_server(folder, cleanup_mode="stop")
    uri: str = server.get_uri()
    return uri


def bundled_pg_dump() -> Path:
    """The ``pg_dump`` that ships with pgserver (Postgres 16, so it dumps 15 and 16)."""
    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    if not path.is_file():
        raise InvalidRequestError(f"pg_dump not found at {path}; set PAYMENTS_PG_DUMP_PATH")
    return path
