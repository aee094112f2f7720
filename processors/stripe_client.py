"""The SDK side of the Stripe adapter: clients per API key, request options, failures.

``StripeTransport`` resolves the tenant's credentials on every call, keeps one
``StripeClient`` per API key (over ``stripe.HTTPXClient`` with the adapter's timeout and
``max_network_retries=0``: the operation executor retries, with the same key), sets
``Idempotency-Key`` to the request's derived key on writes (so the SDK never makes one up)
and ``Stripe-Account`` for a Connect account, and turns every SDK failure into a
``ProcessorError`` through ``processors.stripe_errors``. Answers come back as plain JSON.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import stripe
import structlog

from processors import stripe_errors
from processors.port import CredentialSource, VendorCredentials
from processors.stripe_errors import Call
from processors.stripe_mapping import Json, MalformedResponseError

T = TypeVar("T")
Send = Callable[[stripe.StripeClient, stripe.RequestOptions], Awaitable[object]]
CONNECT_PREFIX: Final = "acct_"
_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful response: its JSON, HTTP status and Stripe's request id."""

    data: Json
    status: int = 200
    request_id: str | None = None


def read(call: Call, answer: Answer, reader: Callable[[Json], T]) -> T:
    """``reader(answer.data)``; a malformed answer becomes the call's ``ProcessorError``."""
    try:
        return reader(answer.data)
    except MalformedResponseError as exc:
        raise stripe_errors.malformed(call, str(exc), answer.status, answer.request_id) from exc


class StripeTransport:
    """Sends SDK calls for one tenant's Stripe account."""

    def __init__(
        self, credentials: CredentialSource, *, base_url: str | None, timeout_s: float
    ) -> None:
        """Use ``credentials`` (resolved per call) against ``base_url`` (None: Stripe's API)."""
        self._credentials = credentials
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._clients: dict[str, tuple[stripe.StripeClient, stripe.HTTPXClient]] = {}

    async def credentials(self) -> VendorCredentials:
        """The tenant's credentials now."""
        return await self._credentials()

    async def aclose(self) -> None:
        """Close the connections of every client made so far."""
        clients, self._clients = self._clients, {}
        for _, http in clients.values():
            await http.close_async()  # type: ignore[no-untyped-call] # the SDK leaves it untyped

    def _client(self, credentials: VendorCredentials) -> stripe.StripeClient:
        key = credentials.api_key.get_secret_value()
        cached = self._clients.get(key)
        if cached is None:
            http = stripe.HTTPXClient(timeout=self._timeout_s)
            client = stripe.StripeClient(
                key,
                http_client=http,
                max_network_retries=0,
                base_addresses={"api": self._base_url} if self._base_url else None,
            )
            cached = self._clients[key] = (client, http)
        return cached[0]

    async def send(self, call: Call, send: Send, *, idempotency_key: str | None) -> Answer:
        """Run ``send`` with the tenant's client and options; the answer, or a ProcessorError."""
        credentials = await self._credentials()
        options: stripe.RequestOptions = {}
        if credentials.account.startswith(CONNECT_PREFIX):
            options["stripe_account"] = credentials.account
        if idempotency_key is not None:
            options["idempotency_key"] = idempotency_key
        try:
            result = await send(self._client(credentials), options)
        except stripe.StripeError as exc:
            error = stripe_errors.translate(call, exc)
            _log.warning(
                "stripe_call_failed",
                operation=call.label,
                error=type(error).__name__,
                failure_code=error.code,
                vendor_code=error.vendor_code,
                sent=error.sent,
                http_status=exc.http_status,
                request_id=exc.request_id,
            )
            raise error from exc
        response = getattr(result, "last_response", None)
        status = response.code if response is not None else 200
        request_id = response.request_id if response is not None else None
        if not isinstance(result, stripe.StripeObject):
            raise stripe_errors.malformed(call, "the body is not an object", status, request_id)
        return Answer(result.to_dict(), status, request_id)
