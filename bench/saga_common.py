"""Names shared by bench.sagas and its parts."""

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pgserver

from gateway.settings import REPO_ROOT
from schemas.catalog import type_of
from schemas.commands import AuthorizePayment
from schemas.events import CommandRejected, PaymentAuthorized
from schemas.processors import Processor

PROJECT: Final = "payments-bench"
RESULTS: Final = REPO_ROOT / "bench" / "results"
PGBENCH: Final = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
BOOKING: Final = "//booking.melmastoon.ghasi.io"
AUTHORIZE: Final = type_of(AuthorizePayment)
AUTHORIZED: Final = type_of(PaymentAuthorized)
REJECTED: Final = type_of(CommandRejected)
MAX_REJECTIONS_KEPT: Final = 20
PUBLISH_BATCH: Final = 500
PUBLISH_CHUNK: Final = 50
"""The fewest commands a throughput run publishes at once (unless fewer are left)."""
TICK: Final = 0.01
"""Seconds between the publishes of a paced run (each sends the commands then due)."""
WARMUP: Final = 50
WAIT_SAMPLE_SECONDS: Final = 0.05
GOAL_SAGAS_PER_S: Final = 500
GOAL_P99_OVERHEAD_MS: Final = 25
PRECEDENCE: Final = {Processor.STRIPE: 10, Processor.PAYPAL: 20, Processor.HESABPAY: 30}
ATTACH: Final = """
INSERT INTO payments_central.vendor_attachments
       (tenant_id, processor, env, account_ref, api_key_ref, webhook_secret_ref, precedence)
VALUES ($1, $2, 'sandbox', $3, $4, NULL, $5)
"""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]
