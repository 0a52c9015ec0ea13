"""The image installs the gateway with its declared dependencies and nothing else
(Dockerfile: `pip install .`): every package the gateway imports must be one of them, or
the container dies at import while every test here passes on a machine that has it anyway."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported(package: Path) -> dict[str, str]:
    """Top-level modules imported anywhere in the package, with one place that does."""
    found: dict[str, str] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0],
                                 f"{path.relative_to(package.parent)}:{node.lineno}")
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    provides = md.packages_distributions()
    missing = []
    for module, where in _imported(ROOT / "gateway").items():
        if module in sys.stdlib_module_names or module == "gateway":
            continue
        dists = {_name(d) for d in provides.get(module, [])}
        if not dists & declared:
            missing.append(f"{module} ({where}; from {sorted(dists) or 'nothing installed'})")
    assert not missing, "imported but not in [project] dependencies: " + ", ".join(missing)


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    """The scan finds imports inside functions and `from x.y import z` forms too."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n    from pydantic.fields import Field\n    import yaml\n")
    assert set(_imported(pkg)) == {"pydantic", "yaml"}
