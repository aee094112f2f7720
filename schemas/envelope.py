"""The CloudEvents context of a message, independent of any transport."""

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
