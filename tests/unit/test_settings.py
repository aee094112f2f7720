"""Settings: environment variables, dev defaults, and what production insists on."""

import pytest
from pydantic import ValidationError

from gateway.dev import redact_dsn
from gateway.settings import Environment, Settings
from tenancy.snapshot import libpq_environment


def test_dev_defaults_need_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no variables set, dev runs on embedded Postgres and local files."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.environment is Environment.DEV
    assert settings.database_url is None
    assert not settings.production


def test_database_url_is_read_and_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATABASE_URL is read without prefix and never shown by repr."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@db/x")
    settings = Settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().endswith("@db/x")
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PAYMENTS_ENVIRONMENT": "prod"}, "requires DATABASE_URL"),
        ({"PAYMENTS_ENVIRONMENT": "staging"}, "requires DATABASE_URL"),
        ({"PAYMENTS_ENVIRONMENT": "qa"}, "Input should be"),
        ({"PAYMENTS_ARCHIVE_BACKEND": "gcs"}, "ARCHIVE_BUCKET"),
        ({"PAYMENTS_DB_POOL_MAX": "0"}, "greater than or equal"),
        ({"PAYMENTS_DB_POOL_MIN": "5", "PAYMENTS_DB_POOL_MAX": "2"}, "exceeds"),
        ({"PAYMENTS_API_FORWARDED_ALLOW_IPS": "*"}, "not '\\*'"),
        ({"PAYMENTS_API_PORT": "70000"}, "less than or equal"),
        ({"PAYMENTS_WEBHOOK_MAX_BODY_BYTES": "10"}, "greater than or equal"),
        ({"PAYMENTS_WEBHOOK_ALLOWLISTS": '{"stripe": ["not-a-network"]}'}, "network"),
        ({"PAYMENTS_WEBHOOK_ALLOWLISTS": '{"adyen": ["10.0.0.0/8"]}'}, "Input should be"),
    ],
)
def test_bad_configuration_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    """Invalid or incomplete configuration fails at start-up with the reason."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_prod_needs_secret_manager_and_gcs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production refuses the file secret store and the local archive."""
    monkeypatch.setenv("PAYMENTS_ENVIRONMENT", "prod")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    with pytest.raises(ValidationError, match="PAYMENTS_SECRET_BACKEND=gcp"):
        Settings()


def test_prod_refuses_fake_processors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production never runs on the in-memory fake processors."""
    monkeypatch.setenv("PAYMENTS_ENVIRONMENT", "prod")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    monkeypatch.setenv("PAYMENTS_SECRET_BACKEND", "gcp")
    monkeypatch.setenv("PAYMENTS_ARCHIVE_BACKEND", "gcs")
    monkeypatch.setenv("PAYMENTS_ARCHIVE_BUCKET", "b")
    with pytest.raises(ValidationError, match="PAYMENTS_PROCESSOR_BACKEND=fake"):
        Settings()


def test_pg_dump_gets_the_dsn_through_the_environment() -> None:
    """The libpq variables carry host, port, user, password and database; socket DSNs work too."""
    env = libpq_environment("postgresql://svc:p%40ss@db.internal:6432/payments?sslmode=require")
    assert env == {
        "PGHOST": "db.internal",
        "PGPORT": "6432",
        "PGUSER": "svc",
        "PGPASSWORD": "p@ss",
        "PGDATABASE": "payments",
        "PGSSLMODE": "require",
    }
    socket = libpq_environment("postgresql://postgres:@/test?host=/run/pg")
    assert socket == {"PGHOST": "/run/pg", "PGUSER": "postgres", "PGDATABASE": "test"}


def test_redact_dsn_hides_the_password() -> None:
    """Logged DSNs show *** in place of the password."""
    assert redact_dsn("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert redact_dsn("postgresql://u@db/x") == "postgresql://u@db/x"
    assert redact_dsn("postgresql://u:@/x?host=/run/pg") == "postgresql://u:@/x?host=/run/pg"
