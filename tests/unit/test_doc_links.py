"""Every relative link in the README and the docs points at a file that exists, read from
where the page is (GitHub resolves `docs/x.md`'s links from `docs/`)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _links(page: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(page.read_text())
            if not re.match(r"[a-z]+:", m.group(1)) and not m.group(1).startswith("#")]


def test_every_relative_link_resolves_from_its_page() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(ROOT)} -> {link}" for page in pages for link in _links(page)
              if not (page.parent / link.split("#", 1)[0]).exists()]
    assert not broken, broken


def test_the_check_reads_links_the_way_a_page_does(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "a.md"
    page.parent.mkdir()
    page.write_text("[x](b.md) [y](https://example.com) [z](#top) ![i](../img.png)")
    assert _links(page) == ["b.md", "../img.png"]
