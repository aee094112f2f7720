"""Completing Stripe Connect (Standard) OAuth for a tenant: MIGRATION_PLAN 2.2.

The back office's callback hands over the authorization code. Everything that can refuse
the request without Stripe is checked first (the tenant, an existing Stripe attachment,
the precedence), because a code is single-use. Then the code is exchanged once, the
grant's mode is checked against the environment, the account's tokens and the platform's
Connect webhook secret are stored as new secret versions, and the account is attached::

    projects/{project}/secrets/{tenant}/stripe/{prod|sandbox}/api_key/versions/latest
    projects/{project}/secrets/{tenant}/stripe/{prod|sandbox}/refresh_token/versions/latest
    projects/{project}/secrets/{tenant}/stripe/{prod|sandbox}/webhook_secret/versions/latest

A grant cannot be fetched again, so storing its secrets is retried (bounded); if it still
fails, ``ConnectIncompleteError`` names the account (never a token) for the operator.
"""

import re
from dataclasses import dataclass
from typing import Final

import structlog
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from processors.stripe_connect import ConnectGrant, OAuthExchange
from schemas.ids import validate_tenant_id
from schemas.processors import Processor, VendorEnv
from tenancy.db import Database
from tenancy.errors import (
    DuplicateAttachmentError,
    InvalidRequestError,
    SecretStoreUnavailableError,
    TenantStateError,
)
from tenancy.lifecycle import TenantStatus
from tenancy.registry import get_tenant
from tenancy.secrets import SecretRef, SecretStore
from tenancy.vendors import (
    MAX_PRECEDENCE,
    MIN_PRECEDENCE,
    AttachRequest,
    VendorAttachment,
    attach_vendor,
    check_vendor_env,
    list_attachments,
)

STORE_ATTEMPTS: Final = 4
SECRET_NAMES: Final = ("api_key", "refresh_token", "webhook_secret")
_CODE: Final = re.compile(r"ac_[A-Za-z0-9_]{1,250}")
_PROJECT: Final = re.compile(r"[a-z][a-z0-9-]{0,62}")
_ENV_FOLDER: Final = {VendorEnv.PRODUCTION: "prod", VendorEnv.SANDBOX: "sandbox"}
_log = structlog.get_logger(__name__)


class ConnectIncompleteError(Exception):
    """The code was spent but the account could not be recorded; reconnect it."""


class StripeAlreadyAttachedError(DuplicateAttachmentError):
    """The tenant already had Stripe attached; the new grant was stored, not attached."""


@dataclass(frozen=True, slots=True)
class ConnectCallback:
    """What the OAuth callback received, and where the account's secrets go."""

    tenant_id: str
    code: str
    project: str
    webhook_secret: SecretStr
    precedence: int = 100

    def __post_init__(self) -> None:
        """Refuse a malformed tenant id, code, project or precedence before any I/O."""
        validate_tenant_id(self.tenant_id)
        if not _CODE.fullmatch(self.code):
            raise InvalidRequestError("invalid authorization code: expected ac_ then letters")
        if not _PROJECT.fullmatch(self.project):
            raise InvalidRequestError(f"invalid Secret Manager project {self.project[:64]!r}")
        if not self.webhook_secret.get_secret_value().startswith("whsec_"):
            raise InvalidRequestError("the Connect webhook secret must start with whsec_")
        if not MIN_PRECEDENCE <= self.precedence <= MAX_PRECEDENCE:
            raise InvalidRequestError(
                f"precedence must be between {MIN_PRECEDENCE} and {MAX_PRECEDENCE}"
                f" (lower wins), got {self.precedence}"
            )

    def secret_ref(self, env: VendorEnv, name: str) -> SecretRef:
        """The reference of one of the account's secrets."""
        folder = f"{self.tenant_id}/stripe/{_ENV_FOLDER[env]}/{name}"
        return SecretRef(self.project, folder, "latest")


async def complete_stripe_connect(  # noqa: PLR0913 (the port's dependencies, then the request)
    db: Database,
    secrets: SecretStore,
    exchange: OAuthExchange,
    request: ConnectCallback,
    *,
    production: bool,
    store_backoff_s: float = 0.5,
) -> VendorAttachment:
    """Exchange the code once, store the grant's secrets, attach the account to the tenant."""
    log = _log.bind(tenant_id=request.tenant_id)
    await _check_can_attach(db, request, production=production)
    grant = await exchange.exchange(request.code)
    log = log.bind(account_id=grant.account_id, livemode=grant.livemode)
    env = VendorEnv.PRODUCTION if grant.livemode else VendorEnv.SANDBOX
    check_vendor_env(env, production=production)
    stored = await _store(secrets, request, env, grant, backoff_s=store_backoff_s)
    attach = AttachRequest(
        tenant_id=request.tenant_id,
        processor=Processor.STRIPE,
        env=env,
        account_ref=grant.account_id,
        api_key_ref=stored["api_key"],
        webhook_secret_ref=stored["webhook_secret"],
        precedence=request.precedence,
    )
    try:
        attached = await attach_vendor(db, secrets, attach, production=production)
    except DuplicateAttachmentError as exc:
        log.warning("stripe_connect_not_attached", reason="duplicate")
        raise StripeAlreadyAttachedError(
            f"{exc}; the grant for {grant.account_id} was stored as new versions of"
            f" {stored['api_key'].secret_name} (and refresh_token, webhook_secret) but not"
            " attached: the existing attachment stays"
        ) from exc
    log.info("stripe_connect_attached", env=env.value, precedence=request.precedence)
    return attached


async def _check_can_attach(db: Database, request: ConnectCallback, *, production: bool) -> None:
    """Everything attach_vendor would refuse that is known before the exchange."""
    async with db.connection() as conn:
        tenant = await get_tenant(conn, request.tenant_id)
    if tenant.status not in {TenantStatus.ACTIVE, TenantStatus.DELETION_PAUSED}:
        raise TenantStateError(f"tenant {request.tenant_id} is {tenant.status}")
    env = VendorEnv.PRODUCTION if production else VendorEnv.SANDBOX
    for existing in await list_attachments(db, request.tenant_id):
        if existing.env is not env:
            continue
        if existing.processor is Processor.STRIPE:
            raise DuplicateAttachmentError(
                f"tenant {request.tenant_id}: stripe ({env}) is already attached as"
                f" {existing.account_ref}; the authorization code was not used"
            )
        if existing.precedence == request.precedence:
            raise DuplicateAttachmentError(
                f"tenant {request.tenant_id}: precedence {request.precedence} is already used"
                f" by {existing.processor} ({env}); the authorization code was not used"
            )


async def _store(
    secrets: SecretStore,
    request: ConnectCallback,
    env: VendorEnv,
    grant: ConnectGrant,
    *,
    backoff_s: float,
) -> dict[str, SecretRef]:
    """Add the three secrets as new versions, retrying each; their ``latest`` references."""
    values = {
        "api_key": grant.access_token,
        "refresh_token": grant.refresh_token,
        "webhook_secret": request.webhook_secret,
    }
    stored: dict[str, SecretRef] = {}
    for name, value in values.items():
        ref = request.secret_ref(env, name)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((SecretStoreUnavailableError, OSError)),
            stop=stop_after_attempt(STORE_ATTEMPTS),
            wait=wait_exponential(multiplier=backoff_s, max=8 * backoff_s),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await secrets.add_version(ref, value)
        except (SecretStoreUnavailableError, OSError) as exc:
            _log.error(
                "stripe_connect_store_failed",
                tenant_id=request.tenant_id,
                account_id=grant.account_id,
                secret=str(ref),
                error=type(exc).__name__,
            )
            raise ConnectIncompleteError(
                f"tenant {request.tenant_id}: Stripe account {grant.account_id} was connected"
                f" but its {name} could not be stored in {ref.secret_name}"
                f" ({type(exc).__name__}); reconnect the account from the back office"
            ) from None
        stored[name] = ref
    return stored
