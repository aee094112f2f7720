"""Embedded Postgres for dev and tests: pgserver runs a real Postgres 16 in a folder."""

import fcntl
import warnings
from pathlib import Path
from typing import Literal

import pgserver
from pgserver.postgres_server import get_server

from tenancy.errors import InvalidRequestError


def start_embedded_postgres(folder: Path, *, cleanup: Literal["stop", "delete"] = "stop") -> str:
    """Start (or join) the server for ``folder``; return its DSN.

    Several processes may ask at once (test workers): an exclusive lock on a file beside
    the folder serializes them, since pgserver creates its bookkeeping files unlocked.
    The server stops (or is deleted) when the last process using it exits.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / ".pgserver-start.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            folder.mkdir(exist_ok=True)
            with warnings.catch_warnings():
                # pgserver asks platformdirs for a runtime folder that containers lack
                warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
                server = get_server(folder, cleanup_mode=cleanup)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    uri: str = server.get_uri()
    return uri


def bundled_pg_dump() -> Path:
    """The ``pg_dump`` that ships with pgserver (Postgres 16, so it dumps 15 and 16)."""
    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    if not path.is_file():
        raise InvalidRequestError(f"pg_dump not found at {path}; set PAYMENTS_PG_DUMP_PATH")
    return path
