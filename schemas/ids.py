"""Tenant identifiers, and the SQL names derived from them.

A tenant id reaches us from the CLI, from commands and from webhook URLs. It is checked
against ``TENANT_ID_PATTERN`` before anything else happens to it; the schema and role
names derived from a valid id are themselves safe SQL identifiers.
"""

import re
from typing import Final

TENANT_ID_PATTERN: Final = re.compile(r"tnt_[A-Za-z0-9_]{1,48}")
_SQL_NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,62}")
ROLE_SUFFIX: Final = "_rw"


class InvalidTenantIdError(ValueError):
    """A tenant id does not have the form ``tnt_`` followed by 1-48 letters, digits or ``_``."""


def validate_tenant_id(raw: object) -> str:
    """Return ``raw`` if it is a well-formed tenant id, else raise ``InvalidTenantIdError``."""
    if not isinstance(raw, str) or TENANT_ID_PATTERN.fullmatch(raw) is None:
        shown = repr(raw)[:60]
        raise InvalidTenantIdError(
            f"invalid tenant id {shown}: expected 'tnt_' then 1-48 of [A-Za-z0-9_]"
        )
    return raw


def schema_name_for(tenant_id: str) -> str:
    """The Postgres schema that holds a tenant's data: the id, lower-cased."""
    return validate_tenant_id(tenant_id).lower()


def role_name_for(tenant_id: str) -> str:
    """The per-tenant Postgres role: USAGE on the tenant's own schema and nothing else."""
    return schema_name_for(tenant_id) + ROLE_SUFFIX


def quote_sql_name(name: str) -> str:
    """Double-quote a schema or role name after checking it is a plain lower-case name.

    Only names built by this module, or read back from the tenant registry, pass.
    """
    if _SQL_NAME_PATTERN.fullmatch(name) is None:
        raise InvalidTenantIdError(f"refusing to use {name[:70]!r} as an SQL identifier")
    return f'"{name}"'
