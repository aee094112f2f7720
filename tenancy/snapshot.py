"""Schema snapshots with ``pg_dump``, for the archive taken before a tenant's schema drops.

Connection settings reach ``pg_dump`` through libpq environment variables, so a password
in the DSN never shows in a process listing.
"""

import asyncio
import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from tenancy.errors import ArchiveError


def libpq_environment(dsn: str) -> dict[str, str]:
    """The ``PG*`` variables equivalent to a ``postgresql://`` DSN."""
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    env = {
        "PGHOST": query.get("host") or parts.hostname or "",
        "PGPORT": query.get("port") or (str(parts.port) if parts.port else ""),
        "PGUSER": unquote(parts.username or "") or query.get("user", ""),
        "PGPASSWORD": unquote(parts.password or "") or query.get("password", ""),
        "PGDATABASE": parts.path.lstrip("/") or query.get("dbname", ""),
        "PGSSLMODE": query.get("sslmode", ""),
    }
    return {k: v for k, v in env.items() if v}


class PgDumpSnapshotter:
    """Dumps one schema in pg_dump's custom format."""

    def __init__(self, pg_dump: Path, dsn: str) -> None:
        """Use the ``pg_dump`` binary at ``pg_dump`` against the database at ``dsn``."""
        self._pg_dump = pg_dump
        self._env = libpq_environment(dsn)

    async def dump(self, schema: str, target: Path) -> None:
        """Write the schema's structure and data to ``target``."""
        process = await asyncio.create_subprocess_exec(
            str(self._pg_dump),
            "--format=custom",
            f"--schema={schema}",
            f"--file={target}",
            "--no-password",
            env={**os.environ, **self._env},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            detail = stderr.decode("utf-8", "replace").strip()[-500:]
            raise ArchiveError(f"pg_dump of schema {schema} failed: {detail}")
