from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.app import create_app
from gateway.config import Settings, settings_from_dict
from gateway.logs import formatter as log_formatter
from onprem.simulator import Knobs, ReplicaSimulator

ROOT = Path(__file__).resolve().parents[1]
ONPREM_KEY = "onprem-test-key-5b0f"
OPENAI_KEY = "openai-test-key-93c1"
FAST = {"headers_s": 0.5, "first_token_s": 0.6, "gap_s": 0.4}


def example_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "config" / "scout.yaml").read_text())
    # No load balancer follows a test's gateway: a SIGTERM stops it once answers end (the
    # drain test sets a grace of its own).
    data["server"]["drain_grace_s"] = 0
    return data


@pytest.fixture(autouse=True)
def _collector_between_tests():
    """Keep Python's cycle collector from pausing a test for half a second.

    One process runs every test, and what the earlier ones left alive (modules, the
    models, the caches of the libraries) grows to some 700,000 objects; a full pass of
    the collector walks all of them, and in a full run such passes came every few
    seconds and took 0.3-0.6 s: long enough for a probe's or Redis' timeout to fire
    mid-test, on no fault of the code. As the gateway does at startup (server.tune_gc),
    what exists before a test is collected and frozen out of the collector's sight, so
    a pass during the test walks only what that test built."""
    gc.collect()
    gc.freeze()
    yield


SIGNING_SECRET = "signing-secret-for-tests-0123456789"
API_KEY = "frontend-test-key-77d2e1"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
OTHER_KEY = "mobile-test-key-5be0c3"   # a second frontend key, labelled "mobile"
STAFF_KEY = "staff-test-token-4c1d9a"
STAFF = {"Authorization": f"Bearer {STAFF_KEY}"}
# A private first turn, as the keyword rules know it and as a paraphrase only the privacy
# model reads as private (no money word in it): both must keep a conversation on-site.
PRIVATE = "My credit score is 640 and I make $85,000 a year, can I finance the Tacoma?"
PARAPHRASE = ("The bank said no to me last spring, would you folks still work with me on "
              "the Tacoma?")
PRIVATE_TURNS = pytest.mark.parametrize("private", [PRIVATE, PARAPHRASE],
                                        ids=["keywords", "paraphrase"])


def make_settings(onprem_urls: list[str], openai_url: str | None, *,
                  deadlines: dict[str, float] | None = None,
                  mutate: Any = None, redis_url: str | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    """The shipped example config pointed at local servers, with short deadlines."""
    data = example_config()
    data["onprem"]["url"] = onprem_urls
    if openai_url is None:  # never the real OpenAI from a test: no URL means no OpenAI tier
        data["openai"]["enabled"] = False
    data["onprem"]["replicas"] = [{"name": f"r{i + 1}", "url": u} for i, u in enumerate(onprem_urls)]
    # Probe timeouts long enough for a loaded 2-core CI machine (production: 2 s / 1 s).
    data["health"] = {"interval_s": 0.5, "timeout_s": 0.4, "backoff_max_s": 1.5, "rise": 2}
    # Likewise Redis (production: 50 ms): one slow reply under a 16-turn burst on 2 busy
    # cores marks the link down for a second, and the tests of sharing would test fallback.
    data["redis"]["timeout_ms"] = 500
    # Tests send bursts from one address; the tests of the limits themselves set tight ones.
    data["rate_limits"] = {"per_key": "100000/minute", "per_ip": "100000/minute",
                           "streams_per_key": 10000, "streams_per_ip": 10000}
    data["openai"]["base_url"] = openai_url
    data["deadlines"] = deadlines or FAST
    for intent in data["intents"].values():
        intent["deadlines"] = deadlines or FAST
    if mutate is not None:
        mutate(data)
    base = {"ONPREM_API_KEY": ONPREM_KEY, "OPENAI_API_KEY": OPENAI_KEY,
           "SCOUT_SIGNING_SECRET": SIGNING_SECRET, "SCOUT_API_KEYS": f"vercel:{API_KEY},mobile:{OTHER_KEY}",
           "SCOUT_STAFF_KEYS": f"ops:{STAFF_KEY}"}
    if redis_url:
        base["REDIS_URL"] = redis_url
    return settings_from_dict(data, {**base, **(env or {})})


@contextlib.asynccontextmanager
async def running(**knobs: Any) -> AsyncIterator[ReplicaSimulator]:
    """A simulator (on-prem's key and a fast answer unless told otherwise), stopped after."""
    sim = await ReplicaSimulator(Knobs(**{"api_key": ONPREM_KEY, "ttft_s": 0.01,
                                          "token_interval_s": 0.002, "tokens": 8,
                                          **knobs})).start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def onprem_sim() -> AsyncIterator[ReplicaSimulator]:
    async with running() as sim:
        yield sim


@pytest.fixture
async def slow_sim() -> AsyncIterator[ReplicaSimulator]:
    """An answer long enough to drop a connection in its middle: 40 tokens, 40 ms apart."""
    async with running(ttft_s=0.05, token_interval_s=0.04, tokens=40) as sim:
        yield sim


@pytest.fixture
async def openai_sim() -> AsyncIterator[ReplicaSimulator]:
    async with running(model="gpt-4o-mini", api_key=OPENAI_KEY) as sim:
        yield sim


@pytest.fixture
def gw_client(aiohttp_client):
    """A test client of the gateway that sends the frontend API key."""
    async def make(app, **kwargs):
        return await aiohttp_client(app, headers={**AUTH, **kwargs.pop("headers", {})}, **kwargs)
    return make


@pytest.fixture
def redis_server(tmp_path: Path):
    from tests.servers import RedisServer
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def make_replicas():
    """Start n replica simulators (fast, with the on-prem key); all stopped after the test."""
    started: list[ReplicaSimulator] = []

    async def make(n: int, **knobs: Any) -> list[ReplicaSimulator]:
        opts = {"api_key": ONPREM_KEY, "ttft_s": 0.01, "token_interval_s": 0.002, "tokens": 8,
                **knobs}
        sims = [await ReplicaSimulator(Knobs(**opts)).start() for _ in range(n)]
        started.extend(sims)
        return sims

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
def settings(onprem_sim: ReplicaSimulator, openai_sim: ReplicaSimulator) -> Settings:
    return make_settings([onprem_sim.url], f"{openai_sim.url}/v1")


@pytest.fixture
async def gateway(aiohttp_server: Any, settings: Settings) -> Any:
    """The app on a real socket, with both simulators behind it."""
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def sdk(gateway: Any) -> AsyncIterator[Any]:
    """openai-python's own async client, pointed at `gateway`."""
    import openai

    c = openai.AsyncOpenAI(api_key=API_KEY, base_url=str(gateway.make_url("/v1")),
                           max_retries=0)
    yield c
    await c.close()


# Every log line of the whole run, at DEBUG, is checked for the test secrets at the end:
# a key that ever reaches a log fails the run (secrets never go in logs).
# Each is also written in both production formats and parsed back at the end with real
# parsers (logfmtkv in its go-logfmt-strict mode, the grammar Loki's parser follows, and
# json): a line a log pipeline would misread fails the run.
class _AllLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.json_lines: list[str] = []
        self.logfmt, self.json = log_formatter("logfmt"), log_formatter("json")

    def emit(self, record: logging.LogRecord) -> None:
        # Formatting is part of what is checked: a record that can't be rendered fails too.
        try:
            line = self.logfmt.format(record)
        except Exception as exc:
            line = f"unrenderable record from {record.name}: {exc!r}"
        self.lines.append(line)
        try:
            self.json_lines.append(self.json.format(record))
        except Exception as exc:
            self.json_lines.append(f"unrenderable record from {record.name}: {exc!r}")


def unparseable_log_lines(lines: list[str], json_lines: list[str]) -> list[str]:
    """Lines that a logfmt or JSON parser does not read back as one event with an RFC 3339
    timestamp, a level, a logger and an event name."""
    import datetime
    import json

    import logfmtkv

    def strict_logfmt(line: str) -> dict[str, Any]:
        return dict(logfmtkv.parse(line, strict=True, duplicates="error"))

    bad = []
    for fmt, parse, batch in (("logfmt", strict_logfmt, lines), ("json", json.loads,
                                                                json_lines)):
        for line in batch:
            try:
                fields = parse(line)
                assert "\n" not in line, "more than one line"
                assert set(fields) >= {"ts", "level", "logger", "event"}, "fields missing"
                assert isinstance(fields["event"], str) and fields["event"], "no event name"
                datetime.datetime.fromisoformat(fields["ts"].replace("Z", "+00:00"))
            except Exception as exc:
                bad.append(f"{fmt}: {exc!r}: {line[:300]}")
    return bad


_ALL_LOGS = _AllLogs()


UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything outside tests/unit starts real processes or sockets: mark it, so
    `pytest -m "not integration"` is the fast loop and CI can still run all of it."""
    for item in items:
        if UNIT not in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_sessionstart(session: pytest.Session) -> None:
    logging.getLogger().addHandler(_ALL_LOGS)
    logging.getLogger("scout").setLevel(logging.DEBUG)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    secrets = {"ONPREM_KEY": ONPREM_KEY, "NEW_ONPREM_KEY": "onprem-rotated-key-8b2c41",
               "OPENAI_KEY": OPENAI_KEY, "API_KEY": API_KEY, "OTHER_KEY": OTHER_KEY,
               "STAFF_KEY": STAFF_KEY, "SIGNING_SECRET": SIGNING_SECRET}
    bad = unparseable_log_lines(_ALL_LOGS.lines, _ALL_LOGS.json_lines)
    print(f"\nlog format check: {len(_ALL_LOGS.lines)} lines each parsed as logfmt and as "
          f"JSON: {len(bad)} unreadable")
    for line in bad[:10]:
        print(f"  {line}")
    if bad:
        session.exitstatus = 1
    leaks = [(name, line[:200]) for line in _ALL_LOGS.lines + _ALL_LOGS.json_lines
             for name, value in secrets.items() if value in line]
    print(f"\nsecrets check: {len(_ALL_LOGS.lines)} log lines searched for "
          f"{len(secrets)} secret values: {len(leaks)} found")
    if leaks:
        for name, line in leaks[:10]:
            print(f"  {name} leaked: {line}")
        session.exitstatus = 1


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured fields (Scout's events), or its text as the event (libraries)."""
    return dict(record.msg) if isinstance(record.msg, dict) else {"event": record.getMessage()}
