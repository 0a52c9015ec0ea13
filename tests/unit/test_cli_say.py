"""Workers share one stdout pipe: each line must leave in one write, or two workers'
lines merge (a supervisor or test reading lines then misses one)."""

from __future__ import annotations

from gateway.cli import say


class Writes:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_line_leaves_in_one_write(monkeypatch):
    out = Writes()
    monkeypatch.setattr("sys.stdout", out)
    say("scout-gateway serving on http://127.0.0.1:8080 (pid 7)")
    assert out.calls == ["scout-gateway serving on http://127.0.0.1:8080 (pid 7)\n"]


def test_workers_auto_is_one_per_usable_core_and_the_image_defaults_to_it():
    import argparse
    import os

    import pytest

    from gateway.cli import workers_count
    from tests.conftest import ROOT
    assert workers_count("auto") == len(os.sched_getaffinity(0))
    assert workers_count("3") == 3
    for bad in ("0", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            workers_count(bad)
    assert "ENV SCOUT_WORKERS=auto" in (ROOT / "Dockerfile").read_text()
    assert "SCOUT_WORKERS: ${SCOUT_WORKERS:-auto}" in (ROOT / "docker-compose.yml").read_text()
