"""Refunds, balance transactions and lists of the fake Stripe: what moves money back, and reports.

Functions over one account's ``Book``; ``StripeState`` calls them under its lock.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox import stripe_objects as obj
from sandbox.stripe_objects import BalanceTransaction, Intent, Refund
from sandbox.stripe_wire import Params, StripeApiError, as_int, as_metadata, as_str, expands, new_id


@dataclass(slots=True)
class Book:
    """One account's objects."""

    intents: dict[str, Intent] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    transactions: list[BalanceTransaction] = field(default_factory=list)


def _refund_error(message: str, code: str, param: str | None = None) -> StripeApiError:
    return StripeApiError(400, "invalid_request_error", message, code=code, param=param)


def refund(book: Book, intent: Intent, params: Params, now: int) -> Refund:
    """Refund ``amount`` (default: all that is left) of ``intent``'s captured charge."""
    amount = as_int(params, "amount")
    charge = intent.charge
    if charge is None or charge.amount_captured == 0:
        raise _refund_error(
            f"This PaymentIntent ({intent.id}) does not have a successful charge to refund.",
            "charge_not_refundable",
            "payment_intent",
        )
    left = charge.amount_captured - charge.amount_refunded
    if left == 0:
        raise _refund_error(
            f"Charge {charge.id} has already been refunded.", "charge_already_refunded"
        )
    amount = left if amount is None else amount
    if amount < 1:
        raise StripeApiError.invalid("Amount must be at least 1.", param="amount")
    if amount > left:
        raise _refund_error(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left}).",
            "amount_too_large",
            "amount",
        )
    created = Refund(
        new_id("re"),
        intent.id,
        charge.id,
        amount,
        intent.currency,
        now,
        as_metadata(params),
        as_str(params, "reason"),
    )
    charge.amount_refunded += amount
    book.refunds[created.id] = created
    txn = BalanceTransaction(new_id("txn"), -amount, 0, intent.currency, now, "refund", created.id)
    book.transactions.append(txn)
    return created


def list_refunds(book: Book, params: Params) -> Params:
    """``GET /v1/refunds``, optionally of one ``payment_intent``; newest first."""
    intent_id = as_str(params, "payment_intent")
    refunds = sorted(book.refunds.values(), key=lambda r: (r.created, r.id), reverse=True)
    rendered = [obj.refund_json(r) for r in refunds if intent_id in {None, r.intent_id}]
    return paginate(rendered, "/v1/refunds", params)


def list_balance_transactions(book: Book, params: Params) -> Params:
    """``GET /v1/balance_transactions`` with ``created`` filters and ``expand[]=data.source``."""
    created = created_filter(params)
    sources: dict[str, Params] = {}
    if "data.source" in expands(params):
        sources = {
            i.charge.id: obj.charge_json(i.charge) for i in book.intents.values() if i.charge
        }
        sources |= {r.id: obj.refund_json(r) for r in book.refunds.values()}
    rendered = [
        obj.balance_transaction_json(txn, sources.get(txn.source))
        for txn in sorted(book.transactions, key=lambda t: (t.created, t.id), reverse=True)
        if created(txn.created)
    ]
    return paginate(rendered, "/v1/balance_transactions", params)


def created_filter(params: Params) -> Callable[[int], bool]:
    """The ``created[gt|gte|lt|lte]`` filter of a list request."""
    created = params.get("created")
    bounds = created if isinstance(created, dict) else {}
    limits = {name: as_int(bounds, name) for name in ("gt", "gte", "lt", "lte")}
    gt, gte, lt, lte = (limits[name] for name in ("gt", "gte", "lt", "lte"))

    def accept(at: int) -> bool:
        return (
            (gt is None or at > gt)
            and (gte is None or at >= gte)
            and (lt is None or at < lt)
            and (lte is None or at <= lte)
        )

    return accept


def paginate(rendered: list[Params], url: str, params: Params) -> Params:
    """One page of ``rendered`` (``limit``, ``starting_after``) as a Stripe list object."""
    limit = as_int(params, "limit") or 10
    if not 1 <= limit <= 100:  # noqa: PLR2004 (Stripe's bounds on limit)
        raise StripeApiError.invalid("Limit must be between 1 and 100.", param="limit")
    after = as_str(params, "starting_after")
    return obj.page(rendered, url=url, limit=limit, starting_after=after)
