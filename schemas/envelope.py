"""The CloudEvents context of a message, independent of any transport."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

SPEC_VERSION: Final = "1.0"
JSON: Final = "application/json"
TYPE_PREFIX: Final = "io.ghasi.melmastoon.payments."
SOURCE: Final = "//payments.melmastoon.ghasi.io/payment-gateway-service"


@dataclass(frozen=True, slots=True)
class Envelope:
    """CloudEvents attributes plus our extensions ``tenantid`` and ``traceparent``."""

    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    tenant_id: str | None = None
    traceparent: str | None = None
    data_content_type: str = JSON


REJECTION_NAMESPACE: Final = uuid.UUID("6f1c2b52-3f0e-4d7e-9a55-1f0d6c3a9b10")


def rejection_id(source: str, message_id: str) -> str:
    """The ce-id of the ``command.rejected`` event answering message ``message_id``.

    Derived from the refused message, so however often it is delivered, one rejection.
    """
    return str(uuid.uuid5(REJECTION_NAMESPACE, f"{source}|{message_id}"))
