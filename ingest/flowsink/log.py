"""Logging for the node: plain text or JSON lines on stderr, and a per-reason rate limit for per-packet errors.

A router sending garbage at 50k datagrams/s must not turn into 50k log lines/s: :class:`RateLimitedLog` writes
the first line of each reason, then at most one line per ``interval`` saying how many were suppressed; the
suppressed lines are counted in ``flowsink_log_lines_suppressed_total{reason}`` so nothing goes unseen.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from flowsink.settings import setting

LOGGER_NAME = "flowsink"


@dataclass
class LoggingSettings:
    """The ``logging`` section."""

    level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), reloadable=True)
    format: str = setting("text", choices=("text", "json"), help="json: one JSON object per line")
    rate_limit_interval_s: float = setting(
        10.0, min=0, reloadable=True, help="per-packet errors: at most one line per reason per interval"
    )

    @staticmethod
    def normalise(name: str, value: Any) -> Any:
        """Log levels and formats in any case."""
        if name == "level" and isinstance(value, str):
            return value.upper()
        if name == "format" and isinstance(value, str):
            return value.lower()
        return value


# LogRecord attributes that are not extra fields supplied by the caller
_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, process role, message, and any ``extra=`` fields."""

    def __init__(self, role: str = "") -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if self.role:
            entry["role"] = self.role
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self, role: str = "") -> None:
        tag = f" {role}" if role else ""
        super().__init__(f"%(asctime)s %(levelname)s{tag}[%(process)d] %(name)s: %(message)s")


def setup_logging(level: str = "INFO", fmt: str = "text", role: str = "") -> None:
    """Configure the ``flowsink`` logger of this process (each node process calls it with its role)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLinesFormatter(role) if fmt == "json" else TextFormatter(role))
    logger = logging.getLogger(LOGGER_NAME)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    # elasticsearch-py logs every failed request at WARNING; our retry path logs once per outage instead.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    logging.getLogger("elasticsearch").setLevel(logging.ERROR)


def set_level(level: str) -> None:
    logging.getLogger(LOGGER_NAME).setLevel(level.upper())


def get_logger(name: str) -> logging.Logger:
    """A child of the ``flowsink`` logger (``name`` is usually ``__name__``)."""
    if name == LOGGER_NAME or name.startswith(LOGGER_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


class RateLimitedLog:
    """At most one line per reason per ``interval_s``; the lines in between are counted, then summarised.

    Thread-safe; the clock is injectable for tests.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, clock=time.monotonic) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(self, level: int, reason: str, message: str, *args: Any) -> bool:
        """Log ``message`` under ``reason`` unless one was logged within the interval; True if written."""
        now = self._clock()
        with self._lock:
            last = self._last.get(reason)
            if last is not None and now - last < self.interval_s:
                self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
                suppressed_now = True
            else:
                self._last[reason] = now
                skipped = self._suppressed.pop(reason, 0)
                suppressed_now = False
        if suppressed_now:
            _count_suppressed(reason)
            return False
        if skipped:
            message = f"{message} ({skipped} more like this in the last {self.interval_s:g} s not shown)"
        self.logger.log(level, message, *args, extra={"reason": reason})
        return True

    def warning(self, reason: str, message: str, *args: Any) -> bool:
        return self.log(logging.WARNING, reason, message, *args)

    def error(self, reason: str, message: str, *args: Any) -> bool:
        return self.log(logging.ERROR, reason, message, *args)


def _count_suppressed(reason: str) -> None:
    # Imported late: metrics must be imported after the node set PROMETHEUS_MULTIPROC_DIR.
    from flowsink.metrics import LOG_LINES_SUPPRESSED

    LOG_LINES_SUPPRESSED.labels(reason=reason[:64]).inc()
