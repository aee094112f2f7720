"""structlog configured once per process: JSON lines, ISO timestamps, contextvars merged."""

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(level: str = "info", *, stream: TextIO | None = None) -> None:
    """Send JSON log lines to ``stream`` (stdout by default) at ``level`` and above."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
