"""structlog configured once per process: JSON lines, ISO timestamps, contextvars merged."""

import logging
import sys
from typing import Literal, TextIO

import structlog


class _CurrentStream:
    """Writes to ``sys.<name>`` as it is at write time, not as it was at configuration.

    Test runners and CLI harnesses swap (and close) the standard streams; a logger that
    kept the old object would write to a closed file.
    """

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        self._name = name

    def write(self, text: str) -> int:
        stream: TextIO = getattr(sys, self._name)
        return stream.write(text)

    def flush(self) -> None:
        stream: TextIO = getattr(sys, self._name)
        stream.flush()


def configure_logging(
    level: str = "info", *, stream: Literal["stdout", "stderr"] = "stdout"
) -> None:
    """Send JSON log lines to standard output (or error) at ``level`` and above."""
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
        logger_factory=structlog.PrintLoggerFactory(_CurrentStream(stream)),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
