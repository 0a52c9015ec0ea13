"""Structured logs: one event per line, logfmt by default or JSON (SCOUT_LOG_FORMAT=json).

Built on structlog (maintained, and it renders both formats with proper quoting) on top
of the standard library's logging, so records from aiohttp, asyncio and redis come out
in the same format as Scout's own:

    ts=2026-11-30T00:14:14.474118Z level=info logger=scout.chat event=turn id=... intent=...

Call sites log an event name plus fields, never pre-formatted text:
`log.info("turn", id=turn.id, intent=name)`. Timestamps are RFC 3339 in UTC. Routine
events are INFO; WARNING and above mean someone should look.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError

FORMATS = ("logfmt", "json")
_TIMESTAMP = structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts")
_FIELDS: list[Any] = [structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                      _TIMESTAMP]

structlog.configure(
    processors=[structlog.stdlib.filter_by_level, *_FIELDS,
                structlog.processors.StackInfoRenderer(),
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def get_logger(name: str) -> Any:
    """A logger for `name` (a stdlib logger underneath: levels and handlers apply)."""
    return structlog.stdlib.get_logger(name)


def _json(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def formatter(fmt: str = "logfmt") -> logging.Formatter:
    """The formatter for one of FORMATS: Scout's events and every library's records alike."""
    if fmt not in FORMATS:
        raise ValueError(f"SCOUT_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {fmt!r}")
    renderer: Any = (structlog.processors.JSONRenderer(serializer=_json) if fmt == "json" else
                     structlog.processors.LogfmtRenderer(
                         key_order=["ts", "level", "logger", "event"], bool_as_flag=False))
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_FIELDS, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _one_line, renderer])


def _one_line(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Values as plain strings on one line: a control character (a tab, a carriage
    return) would end a logfmt value where a parser does not expect it."""
    for key, value in event.items():
        if isinstance(value, str) and not value.isprintable():
            event[key] = value.encode("unicode_escape").decode("ascii")
    return event


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    fmt = fmt or os.environ.get("SCOUT_LOG_FORMAT", "logfmt")
    # Fields no format here shows, which every record would otherwise look up: the calling
    # frame, thread, process and asyncio task (the logging HOWTO's "Optimization" knobs).
    # On a busy process every microsecond of a turn's own work shows in its latency.
    logging._srcfile = None   # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.logAsyncioTasks = False   # type: ignore[attr-defined]  # Python 3.12+
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.set_name("scout")
    root = logging.getLogger()
    # Replace only the handler a previous call installed: others (a test's) stay.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "scout"] + [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # What libraries warn through `warnings` (a deprecation, an unclosed resource) comes
    # out as a record like any other, not as raw text on stderr.
    logging.captureWarnings(True)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs an unparseable request at ERROR with a traceback quoting the offending
    header line, which may hold a credential or attacker-chosen text. Keep one INFO line
    with the reason's class and the peer, never the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "bad_http_request", ()
            record.status, record.error, record.peer = exc.code, type(exc).__name__, str(peer)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def install_filters() -> None:
    """Idempotent: every app (and test) gets the same log hygiene."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())
