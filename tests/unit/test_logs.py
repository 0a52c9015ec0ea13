"""The log formats, read back by real parsers: every value survives, one event per line."""

from __future__ import annotations

import datetime
import json
import logging

import logfmtkv
import pytest

from gateway.logs import formatter, get_logger, setup_logging

TRICKY = {"quote": 'it\'s "down"', "spaces": "Connect call failed ('127.0.0.1', 19002)",
          "newline": "line one\nline two", "tab": "a\tb", "equals": "a=b c=d",
          "backslash": "C:\\path with space", "unicode": "café → déjà", "empty": "",
          "number": 12.5, "none": None, "flag": True}


class Lines(logging.Handler):
    def __init__(self, fmt: str) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter(fmt))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(params=["logfmt", "json"])
def captured(request):
    handler = Lines(request.param)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)
    yield request.param, handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


def parse(fmt: str, line: str) -> dict:
    assert "\n" not in line
    return json.loads(line) if fmt == "json" else dict(
        logfmtkv.parse(line, strict=True, duplicates="error"))


def test_every_value_comes_back_from_a_real_parser(captured):
    fmt, lines = captured
    get_logger("scout.test").warning("tricky", **TRICKY)
    fields = parse(fmt, lines[-1])
    assert fields["event"] == "tricky" and fields["level"] == "warning"
    assert fields["logger"] == "scout.test"
    ts = datetime.datetime.fromisoformat(fields["ts"].replace("Z", "+00:00"))
    assert ts.tzinfo is not None, "RFC 3339 with its offset"
    for key in ("quote", "spaces", "equals", "backslash", "unicode"):
        assert fields[key] == TRICKY[key], key
    assert fields["newline"] in ("line one\nline two", "line one\\nline two")
    assert "\t" not in lines[-1], "a tab would end a logfmt value"


def test_library_records_and_exceptions_are_one_event_per_line(captured):
    fmt, lines = captured
    logging.getLogger("aiohttp.server").error("plain %s with 'quotes' = and\nnewline", "text")
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("scout.test").exception("failed", path="/v1/x")
    library, failure = parse(fmt, lines[-2]), parse(fmt, lines[-1])
    assert library["logger"] == "aiohttp.server" and library["event"].startswith("plain text")
    assert failure["event"] == "failed" and "ValueError: boom" in failure["exception"]


def test_routine_events_are_info():
    from gateway.security.api_keys import ApiKeys
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("scout.auth").addHandler(handler)
    try:
        ApiKeys("vercel:some-key-value-123456")
    finally:
        logging.getLogger("scout.auth").removeHandler(handler)
    loaded = [r for r in records if isinstance(r.msg, dict)
              and r.msg["event"] == "api_keys_loaded"]
    assert loaded and loaded[0].levelno == logging.INFO


def test_an_unknown_format_is_refused_by_name():
    with pytest.raises(ValueError, match="SCOUT_LOG_FORMAT must be one of logfmt, json"):
        setup_logging("INFO", "yaml")
