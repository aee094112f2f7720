"""Helpers for the test databases: DSN surgery and throwaway databases."""

import asyncio
import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointing at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def new_token() -> str:
    """A short random token for names that must not collide across test sessions."""
    return secrets.token_hex(3)


async def create_database(server_dsn: str, name: str) -> str:
    """Create database ``name``; return its DSN."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)


async def drop_databases_and_roles(server_dsn: str, names: list[str], role_prefix: str) -> None:
    """Drop test databases, then the tenant roles their tests created."""
    conn = await asyncpg.connect(server_dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        roles = await conn.fetch(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1)", role_prefix
        )
        for row in roles:
            await conn.execute(f'DROP ROLE IF EXISTS "{row["rolname"]}"')
    finally:
        await conn.close()


def run(coro: "asyncio.Future[object] | object") -> object:
    """Run a coroutine from synchronous fixture code."""
    return asyncio.run(coro)  # type: ignore[arg-type]
