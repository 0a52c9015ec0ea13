"""Structured logs: one key=value line per event."""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import HttpProcessingError


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs an unparseable request at ERROR with a traceback quoting the offending
    header line, which may hold a credential or attacker-chosen text. Keep one INFO line
    with the reason's class and the peer, never the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "event=bad_http_request status=%s error=%s peer=%s"
            record.args = (exc.code, type(exc).__name__, peer)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_filters() -> None:
    """Idempotent: every app (and test) gets the same log hygiene."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())
