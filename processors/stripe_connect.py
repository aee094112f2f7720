"""Stripe Connect (Standard) OAuth: exchanging an authorization code for an account's tokens.

A code is single-use, so the exchange is sent once: no SDK retries, and no retry here. The
tokens travel as ``SecretStr`` and never reach a log line or an exception message.

    ConnectError                       the exchange did not yield a grant
    ├── ConnectCodeError               Stripe refused the code (used, expired or unknown)
    ├── ConnectRefusedError            Stripe refused the platform (key, client, scope)
    └── ConnectUnavailableError        no usable answer; the code may have been spent
"""

import asyncio
from dataclasses import dataclass
from typing import Final, Protocol

import stripe
import structlog
from pydantic import SecretStr

DEFAULT_TIMEOUT_S: Final = 20.0
_log = structlog.get_logger(__name__)


class ConnectError(Exception):
    """The authorization code could not be exchanged for a grant."""


class ConnectCodeError(ConnectError):
    """Stripe refused the authorization code itself; a new OAuth flow is needed."""


class ConnectRefusedError(ConnectError):
    """Stripe refused the platform's request (its key, client id or the requested scope)."""


class ConnectUnavailableError(ConnectError):
    """No usable answer came back; the code may or may not have been spent."""


@dataclass(frozen=True, slots=True)
class ConnectGrant:
    """What Stripe grants for a connected Standard account."""

    account_id: str
    access_token: SecretStr
    refresh_token: SecretStr
    livemode: bool


class OAuthExchange(Protocol):
    """Turns a Connect OAuth authorization code into the account's grant."""

    async def exchange(self, code: str) -> ConnectGrant:
        """Exchange ``code`` (once); raise a ``ConnectError`` if no grant comes back."""
        ...


class StripeConnectOAuth:
    """``POST /oauth/token`` through the official SDK, with the platform's secret key."""

    def __init__(
        self,
        platform_key: SecretStr,
        *,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """Exchange at ``base_url`` (for ``connect`` and ``api``; None: Stripe's own hosts)."""
        self._platform_key = platform_key
        self._base_url = base_url
        self._timeout_s = timeout_s

    async def exchange(self, code: str) -> ConnectGrant:
        """Send the code once and read the grant; errors become ``ConnectError``s."""
        # stripe 16.1.0 has no async OAuth method: the sync one runs in a worker thread.
        http = stripe.HTTPXClient(timeout=self._timeout_s, allow_sync_methods=True)
        base = self._base_url
        client = stripe.StripeClient(
            self._platform_key.get_secret_value(),
            http_client=http,
            max_network_retries=0,
            base_addresses={"connect": base, "api": base} if base else None,
        )
        params: stripe.OAuth.OAuthTokenParams = {"grant_type": "authorization_code", "code": code}
        try:
            token = await asyncio.to_thread(client.oauth.token, params)
        except stripe.StripeError as exc:
            error = _translate(exc)
            _log.warning(
                "stripe_connect_exchange_failed",
                error=type(error).__name__,
                vendor_code=exc.code,
                http_status=exc.http_status,
                request_id=exc.request_id,
            )
            raise error from None  # the SDK's message may quote the code
        finally:
            await asyncio.to_thread(http.close)
        grant = _grant(token)
        _log.info("stripe_connect_exchanged", account_id=grant.account_id, livemode=grant.livemode)
        return grant


def _translate(exc: stripe.StripeError) -> ConnectError:
    """The ``ConnectError`` for an SDK failure, with a message that quotes nothing secret."""
    if isinstance(exc, stripe.oauth_error.InvalidGrantError):
        return ConnectCodeError("the authorization code was already used or has expired")
    if isinstance(exc, stripe.oauth_error.OAuthError):
        return ConnectRefusedError(f"Stripe refused the OAuth exchange ({exc.code})")
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ConnectRefusedError("Stripe refused the platform's secret key")
    if isinstance(exc, stripe.APIConnectionError):
        return ConnectUnavailableError(
            "Stripe could not be reached; the code may have been spent: start the OAuth flow again"
        )
    status = exc.http_status
    return ConnectUnavailableError(
        f"Stripe answered HTTP {status} to the OAuth exchange; the code may have been"
        " spent: start the OAuth flow again"
    )


def _grant(token: stripe.OAuth.OAuthToken) -> ConnectGrant:
    """Read the token answer; a malformed one is a ``ConnectUnavailableError``."""
    data = token.to_dict()
    account = data.get("stripe_user_id")
    access, refresh, livemode = (
        data.get("access_token"),
        data.get("refresh_token"),
        data.get("livemode"),
    )
    if not isinstance(account, str) or not account.startswith("acct_"):
        raise ConnectUnavailableError("Stripe's OAuth answer has no stripe_user_id")
    if not isinstance(access, str) or not isinstance(refresh, str) or not access or not refresh:
        raise ConnectUnavailableError(f"Stripe's OAuth answer for {account} lacks its tokens")
    if not isinstance(livemode, bool):
        raise ConnectUnavailableError(f"Stripe's OAuth answer for {account} lacks livemode")
    return ConnectGrant(account, SecretStr(access), SecretStr(refresh), livemode)
