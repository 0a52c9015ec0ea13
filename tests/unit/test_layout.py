"""The design doc's Layout and paths match the tree: a module added or moved without
telling the reader fails here."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def layout() -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    section = text[text.index("## Layout"):]
    return section[section.index("```") + 3:section.index("```", section.index("```") + 3)]


def words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))


def test_every_top_level_directory_is_in_the_layout():
    said = layout()
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    dirs = packages | {"config", "deploy", "docs", "nginx", "infra", "scripts", "clients",
                       "examples"}
    missing = [d for d in sorted(dirs) if f"{d}/" not in said]
    assert not missing, f"not in the design doc's Layout: {missing}"


def test_every_gateway_module_and_package_is_in_the_layout():
    said = words(layout())
    gateway = ROOT / "gateway"
    names = {p.stem for p in gateway.rglob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.name for p in gateway.iterdir() if p.is_dir() and not p.name.startswith("__")}
    missing = sorted(n for n in names if n not in said and n.removesuffix("_tier") not in said)
    assert not missing, f"gateway modules missing from the design doc's Layout: {missing}"


def test_the_design_doc_names_only_paths_that_exist():
    design = (ROOT / "docs" / "design.md").read_text()
    paths = set(re.findall(r"`((?:gateway|tests|onprem|config)/[\w/.<>-]+)`", design))
    assert paths, "the design doc names no paths"
    missing = [p for p in sorted(paths) if "<" not in p and not (ROOT / p).exists()]
    assert not missing, f"docs/design.md names paths that do not exist: {missing}"
    assert "TIER_MODULES" in (ROOT / "gateway" / "tiers.py").read_text()
