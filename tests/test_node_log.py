"""Structured logging: JSON lines carry extra fields; per-packet errors are rate-limited per reason."""

from __future__ import annotations

import io
import logging

import orjson

from flowsink.log import JsonLinesFormatter, RateLimitedLog


def make_logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"flowsink.test.{id(stream)}")
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def test_json_lines_have_level_message_and_extra_fields():
    logger, stream = make_logger(JsonLinesFormatter(role="pipeline-0"))
    logger.warning("bad datagram from %s", "192.0.2.1", extra={"reason": "truncated"})
    entry = orjson.loads(stream.getvalue().strip())
    assert entry["level"] == "warning"
    assert entry["message"] == "bad datagram from 192.0.2.1"
    assert entry["reason"] == "truncated"
    assert entry["role"] == "pipeline-0"
    assert entry["ts"].endswith("Z")


def test_rate_limit_one_line_per_reason_per_interval_then_summary():
    logger, stream = make_logger(logging.Formatter("%(message)s"))
    now = [0.0]
    limited = RateLimitedLog(logger, interval_s=10.0, clock=lambda: now[0])
    assert limited.warning("truncated", "truncated datagram %d", 1)
    for i in range(500):
        assert not limited.warning("truncated", "truncated datagram %d", i)
    assert limited.warning("unknown_version", "other reason is not limited by the first")
    now[0] = 10.5
    assert limited.warning("truncated", "truncated datagram %d", 2)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "truncated datagram 1",
        "other reason is not limited by the first",
        "truncated datagram 2 (500 more like this in the last 10 s not shown)",
    ]


def test_suppressed_lines_are_counted():
    from flowsink.metrics import LOG_LINES_SUPPRESSED

    logger, _ = make_logger(logging.Formatter("%(message)s"))
    limited = RateLimitedLog(logger, interval_s=60.0, clock=lambda: 0.0)
    before = LOG_LINES_SUPPRESSED.labels(reason="test_counted")._value.get()
    for _ in range(4):
        limited.error("test_counted", "x")
    assert LOG_LINES_SUPPRESSED.labels(reason="test_counted")._value.get() - before == 3
