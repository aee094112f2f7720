"""hesabpay-mock's webhook delivery: POST to the merchant's URL in the background, with retries.

Each attempt is signed afresh (a new timestamp, so a new signature). A 2xx ends the
delivery, and so does a 4xx other than 408 and 429 (the receiver refused it for good);
anything else (5xx, 408, 429, no answer) is retried after the next of ``delays``. Every
attempt is logged in the state (``GET /_sandbox/deliveries``).
"""

import asyncio
from collections.abc import Sequence
from typing import Final

import httpx
from pydantic import JsonValue

from sandbox.hesabpay_mock_model import MockError
from sandbox.hesabpay_mock_state import HesabPayMockState

DEFAULT_DELAYS: Final = (0.5, 2.0, 8.0)
"""Seconds before the 2nd, 3rd and 4th attempt."""
_RETRIED_CLIENT_ERRORS: Final = frozenset({408, 429})


def _final(status: int | None) -> bool:
    if status is None:
        return False
    return status < 500 and status not in _RETRIED_CLIENT_ERRORS  # noqa: PLR2004 (5xx)


class WebhookDelivery:
    """Sends webhooks from the mock's event loop; keeps its tasks until they finish."""

    def __init__(
        self,
        state: HesabPayMockState,
        *,
        delays: Sequence[float] = DEFAULT_DELAYS,
        timeout_s: float = 5.0,
    ) -> None:
        """Deliver ``state``'s webhooks, retrying after each of ``delays``."""
        self._state = state
        self._delays = tuple(delays)
        self._timeout = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, session_id: str, transaction_id: str, url: str) -> None:
        """Start delivering the webhook about ``transaction_id`` (call from the mock's loop)."""
        task = asyncio.get_running_loop().create_task(
            self._deliver(session_id, transaction_id, url)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, session_id: str, transaction_id: str, url: str) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            for attempt, delay in enumerate((0.0, *self._delays), start=1):
                if delay > 0:
                    await asyncio.sleep(delay)  # the mock's backoff between deliveries
                try:
                    body = self._state.webhook(session_id, transaction_id)
                except MockError:
                    return
                status, error = await self._post(http, url, body)
                self._state.record_delivery(
                    {
                        "session_id": session_id,
                        "transaction_id": transaction_id,
                        "attempt": attempt,
                        "status": status,
                        "error": error,
                        "timestamp": body["timestamp"],
                    }
                )
                if _final(status):
                    return

    @staticmethod
    async def _post(
        http: httpx.AsyncClient, url: str, body: dict[str, JsonValue]
    ) -> tuple[int | None, str | None]:
        try:
            response = await http.post(url, json=body)
        except httpx.HTTPError as exc:
            return None, type(exc).__name__
        return response.status_code, None
