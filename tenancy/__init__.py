"""Tenancy: registry, provisioning, per-tenant roles, migrations, offboarding, secrets."""
