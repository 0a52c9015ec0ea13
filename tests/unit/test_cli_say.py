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
