"""scripts/test says what it needs, and refuses cleanly where it can't install it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASICS = ("bash", "dirname", "id", "printf", "grep", "sleep", "cat", "true", "ls")


def bin_dir(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    """A PATH with only the basics (no apt-get, no servers), plus fake commands."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in BASICS:
        if (found := shutil.which(name)) is not None:
            (d / name).symlink_to(found)
    for name, script in (extra or {}).items():
        (d / name).write_text("#!/bin/bash\n" + script)
        (d / name).chmod(0o755)
    return d


def run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts" / "test")], cwd=ROOT,
                          env={**os.environ, "PATH": str(path)}, capture_output=True,
                          text=True, timeout=60)


def test_without_apt_it_names_what_is_missing_and_stops(tmp_path):
    out = run(bin_dir(tmp_path))
    assert out.returncode == 1
    assert "missing: redis-server" in out.stderr and "no apt-get" in out.stderr
    assert "installing" not in out.stderr, "stops before doing anything"


def test_pip_refusing_the_system_python_says_to_make_a_venv(tmp_path):
    # Every tool present (as a no-op stand-in), and a python3 whose pip refuses like
    # Debian's does outside a venv.
    tools = {name: "exit 0\n" for name in ("redis-server", "redis-sentinel", "chromium",
                                           "nginx", "ip", "tc", "cloud-init", "openssl", "curl",
                                           "promtool", "cmake", "g++", "runuser")}
    tools["python3"] = (f'if [ "$1 $2" = "-m pip" ]; then echo "error: '
                        f'externally-managed-environment" >&2; exit 1; fi\n'
                        f'exec {sys.executable} "$@"\n')
    out = run(bin_dir(tmp_path, tools))
    assert out.returncode == 1
    assert "python3 -m venv .venv && . .venv/bin/activate && ./scripts/test" in out.stderr
