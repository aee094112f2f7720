"""The fake Stripe's Connect OAuth: minted authorization codes and ``POST /oauth/token``.

Stripe serves the token endpoint on ``connect.stripe.com`` (the SDK's ``connect`` base
address); the fake serves it next to the API, so both addresses point at ``fake.url``::

    POST /oauth/token            grant_type=authorization_code&code=ac_...
                                 (authenticated with the platform's secret key)
    POST /_sandbox/oauth/codes   {"livemode": false} -> {"code": "ac_...", "account": "acct_..."}

A minted code stands for a Standard account that finished the OAuth flow. It can be
exchanged once; the answer's ``access_token`` becomes an API key of the new account, so
the account is usable through the API (with ``Stripe-Account: acct_...``) from then on.
A spent or unknown code gets 400 ``{"error": "invalid_grant", "error_description": ...}``.
"""

import json
import secrets
from dataclasses import dataclass
from threading import Lock

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import stripe_responses as responses
from sandbox.stripe_wire import Params, api_key_of, decode_params, new_id


@dataclass(frozen=True, slots=True)
class _Grant:
    account: str
    livemode: bool


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """Stripe's OAuth error shape: ``error`` is a string, not an object."""
    return JSONResponse({"error": error, "error_description": description}, status)


class StripeOAuth:
    """Authorization codes waiting to be exchanged, and the tokens issued for them."""

    def __init__(self, keys: dict[str, str]) -> None:
        """Issue tokens into ``keys`` (API key -> account), the map the API authenticates with."""
        self._keys = keys
        self._pending: dict[str, _Grant] = {}
        self._spent: set[str] = set()
        self._issued: set[str] = set()
        self._lock = Lock()

    def mint(self, *, livemode: bool = False, account: str | None = None) -> str:
        """A single-use code for a new (or the given) connected account."""
        code = new_id("ac")
        with self._lock:
            self._pending[code] = _Grant(account or new_id("acct"), livemode)
        return code

    def account_of(self, code: str) -> str:
        """The connected account a code (pending or spent) was minted for, or KeyError."""
        with self._lock:
            return self._pending[code].account

    def exchange(self, code: str) -> Params | None:
        """The token answer for ``code``; None if it is unknown or already spent."""
        with self._lock:
            grant = self._pending.get(code)
            if grant is None or code in self._spent:
                return None
            self._spent.add(code)
            mode = "live" if grant.livemode else "test"
            access_token = f"sk_{mode}_{secrets.token_hex(24)}"
            self._keys[access_token] = grant.account
            self._issued.add(access_token)
        return {
            "access_token": access_token,
            "refresh_token": f"rt_{secrets.token_hex(24)}",
            "stripe_user_id": grant.account,
            "livemode": grant.livemode,
            "scope": "read_write",
            "token_type": "bearer",
            "stripe_publishable_key": f"pk_{mode}_{secrets.token_hex(12)}",
        }

    async def token(self, request: Request) -> Response:
        """``POST /oauth/token``: exchange an authorization code, once."""
        key = api_key_of(request)
        if key is None or key not in self._keys or key in self._issued:
            return responses.unauthorized(key).response(new_id("req"))
        params = decode_params((await request.body()).decode("utf-8", "replace"))
        grant_type, code = params.get("grant_type"), params.get("code")
        if grant_type != "authorization_code":
            return _oauth_error(
                "unsupported_grant_type", f"Unsupported grant type: {str(grant_type)[:40]}"
            )
        if not isinstance(code, str) or not code:
            return _oauth_error("invalid_request", "No authorization code provided")
        answer = self.exchange(code)
        if answer is None:
            return _oauth_error(
                "invalid_grant",
                "This authorization code has already been used or does not exist."
                " All tokens issued with this code have been revoked.",
            )
        return JSONResponse(answer)

    async def mint_endpoint(self, request: Request) -> Response:
        """``POST /_sandbox/oauth/codes``: mint a code (admin; no key, loopback only)."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("livemode", False), bool):
            message = 'expected a JSON object: {"livemode": bool, "account": "acct_..."}'
            return JSONResponse({"error": {"type": "sandbox_error", "message": message}}, 400)
        account = body.get("account")
        code = self.mint(
            livemode=body.get("livemode", False) is True,
            account=account if isinstance(account, str) and account else None,
        )
        return JSONResponse({"code": code, "account": self.account_of(code)})

    def routes(self) -> list[Route]:
        """The token endpoint and the admin endpoint that mints codes."""
        return [
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/_sandbox/oauth/codes", self.mint_endpoint, methods=["POST"]),
        ]
