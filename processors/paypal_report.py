"""Reconciliation at PayPal: one UTC day of ``/v1/reporting/transactions``, every page.

Lines are classified by their transaction event code (T-code): T1300/T1301 an
authorization (``charge``), T00xx a payment received (``capture``), T1107 a refund, T01xx
fees, T04xx withdrawals (``payout``), T11xx/T12xx reversals and adjustments. Amounts are
magnitudes; a line's ``custom_field`` names our payment.
"""

from datetime import date
from typing import Final, Literal

from processors.paypal_client import PayPalClient
from processors.paypal_errors import Call
from processors.paypal_mapping import (
    malformed,
    money_in,
    obj,
    objects,
    optional_text,
    payment_id_from,
    text,
    time_in,
)
from processors.port import OperationKind
from schemas.notifications import VendorTransaction
from schemas.processors import Processor

_MAX_PAGES: Final = 1_000
_PAGE_SIZE: Final = "500"


_KINDS: Final[dict[str, Literal["charge", "capture", "refund", "fee", "payout", "adjustment"]]] = {
    "T00": "capture",
    "T01": "fee",
    "T04": "payout",
    "T11": "adjustment",
    "T12": "adjustment",
}
_STATUSES: Final = {"S": "succeeded", "P": "pending", "D": "denied", "V": "reversed"}


def report_window(day: date) -> dict[str, str]:
    """The ``start_date`` and ``end_date`` of one UTC day."""
    return {
        "start_date": f"{day.isoformat()}T00:00:00Z",
        "end_date": f"{day.isoformat()}T23:59:59Z",
    }


def transaction(detail: object) -> VendorTransaction:
    """One ``transaction_details`` entry of ``/v1/reporting/transactions``."""
    info = obj(obj(detail, "transaction").get("transaction_info"), "transaction_info")
    where = "transaction_info"
    event_code = text(info, "transaction_event_code", where)
    kind = _KINDS.get(event_code[:3], "other")
    if event_code in {"T1300", "T1301"}:
        kind = "charge"  # an authorization (or reauthorization)
    elif event_code == "T1107":
        kind = "refund"
    occurred = time_in(info, "transaction_initiation_date")
    if occurred is None:
        raise malformed("transaction_info.transaction_initiation_date is missing")
    has_fee = isinstance(info.get("fee_amount"), dict)
    status = text(info, "transaction_status", where)
    return VendorTransaction(
        processor=Processor.PAYPAL,
        reference=text(info, "transaction_id", where),
        kind=kind,
        amount=money_in(info, "transaction_amount", where, signed=True),
        fee=money_in(info, "fee_amount", where, signed=True) if has_fee else None,
        status=_STATUSES.get(status, status.lower()[:50]),
        occurred_at=occurred,
        payment_id=payment_id_from(optional_text(info, "custom_field")),
    )


async def list_transactions(client: PayPalClient, day: date) -> list[VendorTransaction]:
    """The account's report lines of ``day`` (UTC), every page."""
    call = Call(OperationKind.AUTHORIZE)  # a read: no operation's rule applies
    lines: list[VendorTransaction] = []
    for page in range(1, _MAX_PAGES + 1):
        params = {**report_window(day), "fields": "all", "page_size": _PAGE_SIZE}
        data = await client.get("/v1/reporting/transactions", call, {**params, "page": str(page)})
        lines.extend(transaction(d) for d in objects(data, "transaction_details", "report"))
        total = data.get("total_pages")
        if not isinstance(total, int):
            raise malformed("report.total_pages is missing")
        if page >= total:
            break
    return lines
