"""The clock as a dependency: code that needs the time is handed a ``Clock``."""

from collections.abc import Callable
from datetime import datetime

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC ``datetime``."""
