"""Tenant ids and the SQL names derived from them."""

import pytest

from schemas.ids import (
    InvalidTenantIdError,
    quote_sql_name,
    role_name_for,
    schema_name_for,
    validate_tenant_id,
)


@pytest.mark.parametrize("good", ["tnt_smoke_001", "tnt_01HABCDEFGHJKMNPQRSTVWXYZ", "tnt_a"])
def test_well_formed_ids_pass(good: str) -> None:
    """Ids of the form tnt_ + 1-48 of [A-Za-z0-9_] are accepted unchanged."""
    assert validate_tenant_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "x; drop schema y",
        "tnt_",
        "TNT_abc",
        "tnt_a-b",
        'tnt_a"; drop',
        "tnt_" + "a" * 49,
        " tnt_a",
        "tnt_a\n",
        "",
        None,
        42,
    ],
)
def test_malformed_ids_are_refused(bad: object) -> None:
    """Anything else is refused with InvalidTenantIdError naming the expected form."""
    with pytest.raises(InvalidTenantIdError, match="expected 'tnt_'"):
        validate_tenant_id(bad)


def test_schema_and_role_names_are_lower_case_and_fit_postgres() -> None:
    """A 52-character id gives a schema and role within Postgres's 63-byte limit."""
    tenant = "tnt_" + "A" * 48
    assert schema_name_for(tenant) == tenant.lower()
    assert role_name_for(tenant) == tenant.lower() + "_rw"
    assert len(role_name_for(tenant)) <= 63


@pytest.mark.parametrize("bad", ['a"b', "A", "a;b", "1abc", "a" * 64, ""])
def test_quote_sql_name_refuses_anything_but_plain_names(bad: str) -> None:
    """Only plain lower-case names are ever interpolated as identifiers."""
    with pytest.raises(InvalidTenantIdError):
        quote_sql_name(bad)
    assert quote_sql_name("tnt_abc_rw") == '"tnt_abc_rw"'
