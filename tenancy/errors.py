"""Errors raised by the tenancy layer.

Every one of them means "the request was refused and nothing was changed", except
``MigrationFailedError`` (some tenants may have been migrated) and ``IsolationBreachError``
(provisioning stopped before the tenant became active).

    TenancyError
    ├── InvalidRequestError          bad input: a malformed id, profile, key URI, precedence...
    ├── UnknownTenantError           not in the registry (or archived, where that matters)
    ├── TenantStateError             the tenant's lifecycle state forbids the request
    ├── ProvisionConflictError       re-provisioning with different settings
    ├── DuplicateAttachmentError     the vendor is already attached for that env
    ├── SecretError
    │   ├── InvalidSecretRefError    a reference that is not a Secret Manager resource name
    │   ├── SecretNotFoundError      the reference resolves to nothing
    │   └── SecretStoreUnavailableError   the store could not be reached (retryable)
    ├── ArchiveError                 the schema snapshot could not be written
    ├── MigrationFileError           a migrations folder that cannot be trusted
    ├── ChecksumMismatchError        an applied migration was edited afterwards
    ├── InvalidIndexError            a no-transaction migration left an INVALID index (retryable)
    ├── MigrationFailedError         one or more tenants failed to migrate
    └── IsolationBreachError         a tenant role could read outside its schema
"""


class TenancyError(Exception):
    """Base of every error the tenancy layer raises on purpose."""


class InvalidRequestError(TenancyError):
    """The request itself is malformed; nothing was looked up or changed."""


class UnknownTenantError(TenancyError):
    """The tenant id is well-formed but not in the registry."""


class TenantStateError(TenancyError):
    """The tenant exists but its lifecycle state does not allow the request."""


class ProvisionConflictError(TenancyError):
    """The tenant is already provisioned with different settings."""


class DuplicateAttachmentError(TenancyError):
    """The processor is already attached to the tenant for that environment."""


class SecretError(TenancyError):
    """Base of secret-store errors. Messages name the reference, never the value."""


class InvalidSecretRefError(SecretError, InvalidRequestError):
    """A secret reference that is not of the form projects/P/secrets/S/versions/V."""


class SecretNotFoundError(SecretError):
    """The secret or the requested version does not exist (or was destroyed)."""


class SecretStoreUnavailableError(SecretError):
    """The secret store did not answer; the same call may succeed later."""


class ArchiveError(TenancyError):
    """A schema snapshot could not be taken or stored."""


class MigrationFileError(TenancyError):
    """A migration file is misnamed, duplicated or declares itself wrongly."""


class ChecksumMismatchError(TenancyError):
    """An already-applied migration differs from the file now on disk."""


class InvalidIndexError(TenancyError):
    """A no-transaction migration left an INVALID index; it was not recorded as applied.

    Retrying is the cure: the next run drops the INVALID indexes before it starts.
    """


class MigrationFailedError(TenancyError):
    """Some tenants could not be migrated; they are listed on the registry."""


class IsolationBreachError(TenancyError):
    """A tenant role could read data outside its own schema."""
