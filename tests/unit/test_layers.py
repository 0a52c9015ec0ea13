"""The layers' contracts (pyproject's [tool.importlinter]) hold on the tree, and import-linter
really reads them: the same tree with one upward import planted fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
        "lint_imports_command()"]


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    # No cache: a planted import must be read, not an earlier run's graph.
    return subprocess.run([*LINT, "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "gateway", root / "gateway",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "data"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_every_contract(copy: Path) -> None:
    run = lint(copy)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 kept, 0 broken" in run.stdout


@pytest.mark.parametrize(("module", "planted", "broken"), [
    # the error tree reaching up to the API: the layers contract
    ("errors.py", "from gateway.api import errors as _up\n", "Layers run one way"),
    # personal-data rules reaching into the inventory, as they once did for VIN checks
    ("security/pii.py", "from gateway.inventory import store as _up\n",
     "Security and state never reach"),
])
def test_a_planted_upward_import_breaks_its_contract(copy: Path, module: str, planted: str,
                                                    broken: str) -> None:
    target = copy / "gateway" / module
    before = target.read_text()
    target.write_text(before + "\n" + planted)
    try:
        run = lint(copy)
    finally:
        target.write_text(before)
    assert run.returncode != 0, run.stdout
    assert f"{broken}" in run.stdout and "BROKEN" in run.stdout, run.stdout
