"""Secret references: Secret Manager resource names, validated before any lookup."""

import pytest

from tenancy.errors import InvalidSecretRefError
from tenancy.secrets import SecretRef


def test_seed_reference_parses_and_round_trips() -> None:
    """The MIGRATION_PLAN's nested reference parses and prints back unchanged."""
    raw = "projects/gm-payments-prod/secrets/tnt_01H/stripe/prod/api_key/versions/latest"
    ref = SecretRef.parse(raw)
    assert ref.project == "gm-payments-prod"
    assert ref.secret == "tnt_01H/stripe/prod/api_key"
    assert ref.version == "latest"
    assert str(ref) == raw
    assert str(ref.with_version("3")).endswith("/versions/3")


@pytest.mark.parametrize(
    "bad",
    [
        "projects/p/secrets/../etc/versions/1",
        "projects/p/secrets/a//b/versions/1",
        "projects/p/secrets/a/versions/0",
        "projects/p/secrets/a/versions/newest",
        "projects/P/secrets/a/versions/1",
        "secrets/a/versions/1",
        "projects/p/secrets/a",
        "projects/p/secrets/a/versions/1/extra",
        "",
    ],
)
def test_malformed_references_are_refused(bad: str) -> None:
    """Traversal, empty segments, bad versions and partial names are refused."""
    with pytest.raises(InvalidSecretRefError, match="invalid secret reference"):
        SecretRef.parse(bad)
