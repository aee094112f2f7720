"""The fake PayPal's objects as PayPal's JSON: amounts as decimal strings, HATEOAS links."""

from datetime import datetime

from sandbox.paypal_model import Authorization, Capture, Line, Order, Refund, Store
from schemas.money import Money

Json = dict[str, object]


def stamp(at: datetime) -> str:
    """PayPal's time format: ``2026-01-31T12:00:00Z``."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def amount_json(money: Money, *, negative: bool = False) -> Json:
    """``{"currency_code", "value"}`` with the currency's decimal places."""
    value = money.to_decimal_string()
    return {"currency_code": money.currency, "value": f"-{value}" if negative else value}


def _link(href: str, rel: str, method: str = "GET") -> Json:
    return {"href": href, "rel": rel, "method": method}


def render_order(order: Order, store: Store, base: str) -> Json:
    """An order with its purchase unit's payments (authorizations, captures, refunds)."""
    auths = [render_authorization(store.authorizations[a], base) for a in order.authorizations]
    captures = [store.captures[c] for c in order.captures]
    refunds = [render_refund(store.refunds[r], base) for c in captures for r in c.refunds]
    payments: Json = {}
    if auths:
        payments["authorizations"] = auths
    if captures:
        payments["captures"] = [render_capture(c, base) for c in captures]
    if refunds:
        payments["refunds"] = refunds
    unit: Json = {
        "reference_id": order.reference_id or "default",
        "amount": amount_json(order.amount),
    }
    for name in ("custom_id", "invoice_id"):
        if (value := getattr(order, name)) is not None:
            unit[name] = value
    if payments:
        unit["payments"] = payments
    href = f"{base}/v2/checkout/orders/{order.id}"
    links = [_link(href, "self")]
    if order.status in {"CREATED", "PAYER_ACTION_REQUIRED"}:
        links.append(_link(f"{base}/checkoutnow?token={order.id}", "approve"))
    if order.status == "APPROVED":
        action = "authorize" if order.intent == "AUTHORIZE" else "capture"
        links.append(_link(f"{href}/{action}", action, "POST"))
    return {
        "id": order.id,
        "intent": order.intent,
        "status": order.status,
        "purchase_units": [unit],
        "create_time": stamp(order.created),
        "update_time": stamp(order.updated),
        "links": links,
    }


def render_authorization(auth: Authorization, base: str) -> Json:
    """An authorization, with links to capture, void and reauthorize it."""
    href = f"{base}/v2/payments/authorizations/{auth.id}"
    body: Json = {
        "id": auth.id,
        "status": auth.status,
        "amount": amount_json(auth.amount),
        "expiration_time": stamp(auth.expires),
        "create_time": stamp(auth.created),
        "update_time": stamp(auth.updated),
        "supplementary_data": {"related_ids": {"order_id": auth.order_id}},
        "links": [
            _link(href, "self"),
            _link(f"{href}/capture", "capture", "POST"),
            _link(f"{href}/void", "void", "POST"),
            _link(f"{href}/reauthorize", "reauthorize", "POST"),
            _link(f"{base}/v2/checkout/orders/{auth.order_id}", "up"),
        ],
    }
    _optional(body, custom_id=auth.custom_id, invoice_id=auth.invoice_id)
    if auth.response_code is not None:
        body["processor_response"] = {"response_code": auth.response_code}
    return body


def render_capture(capture: Capture, base: str) -> Json:
    """A capture, with its fee breakdown and links to refund it and to its authorization."""
    href = f"{base}/v2/payments/captures/{capture.id}"
    related: Json = {"order_id": capture.order_id}
    links = [_link(href, "self"), _link(f"{href}/refund", "refund", "POST")]
    if capture.authorization_id is not None:
        related["authorization_id"] = capture.authorization_id
        links.append(_link(f"{base}/v2/payments/authorizations/{capture.authorization_id}", "up"))
    fee = Money(minor=capture.amount.minor * 29 // 1000, currency=capture.amount.currency)
    body: Json = {
        "id": capture.id,
        "status": capture.status,
        "amount": amount_json(capture.amount),
        "final_capture": capture.final,
        "seller_receivable_breakdown": {
            "gross_amount": amount_json(capture.amount),
            "paypal_fee": amount_json(fee),
            "net_amount": amount_json(capture.amount - fee),
        },
        "create_time": stamp(capture.created),
        "update_time": stamp(capture.updated),
        "supplementary_data": {"related_ids": related},
        "links": links,
    }
    _optional(body, custom_id=capture.custom_id, invoice_id=capture.invoice_id)
    if capture.response_code is not None:
        body["processor_response"] = {"response_code": capture.response_code}
    return body


def render_refund(refund: Refund, base: str) -> Json:
    """A refund, with a link up to its capture."""
    body: Json = {
        "id": refund.id,
        "status": refund.status,
        "amount": amount_json(refund.amount),
        "create_time": stamp(refund.created),
        "update_time": stamp(refund.updated),
        "links": [
            _link(f"{base}/v2/payments/refunds/{refund.id}", "self"),
            _link(f"{base}/v2/payments/captures/{refund.capture_id}", "up"),
        ],
    }
    _optional(
        body, custom_id=refund.custom_id, invoice_id=refund.invoice_id, note_to_payer=refund.note
    )
    return body


def render_line(line: Line) -> Json:
    """One ``transaction_details`` entry of the transaction report."""
    info: Json = {
        "transaction_id": line.id,
        "transaction_event_code": line.event_code,
        "transaction_initiation_date": stamp(line.at),
        "transaction_updated_date": stamp(line.at),
        "transaction_amount": amount_json(line.amount, negative=line.negative),
        "transaction_status": line.status,
    }
    if line.fee is not None:
        info["fee_amount"] = amount_json(line.fee, negative=True)
    if line.parent is not None:
        info["paypal_reference_id"] = line.parent
        info["paypal_reference_id_type"] = "TXN"
    if line.custom is not None:
        info["custom_field"] = line.custom
    return {"transaction_info": info}


def _optional(body: Json, **fields: str | None) -> None:
    for name, value in fields.items():
        if value is not None:
            body[name] = value
