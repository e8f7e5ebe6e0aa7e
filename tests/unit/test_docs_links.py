"""Every relative link in the README and docs/ points at a file of the repository (the
scoring docs once cited a specification that lived outside it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_relative_links_resolve() -> None:
    broken = []
    checked = 0
    for doc in _documents():
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path = (doc.parent / target.split("#", 1)[0]).resolve()
            checked += 1
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{doc.relative_to(ROOT)} → {target}")
    assert checked > 10
    assert not broken, broken


def test_the_cx_model_specification_is_in_the_repository() -> None:
    spec = ROOT / "docs" / "cx-model.md"
    assert "The six experience factors" in spec.read_text(encoding="utf-8")
    assert "[cx-model.md](cx-model.md)" in (ROOT / "docs" / "scoring.md").read_text()


def test_the_default_model_cites_the_specification_where_it_is() -> None:
    model = (ROOT / "streams" / "default_model.yaml").read_text(encoding="utf-8")
    assert "docs/cx-model.md" in model.splitlines()[0]
    for path in [*_documents(), ROOT / "streams" / "default_model.yaml"]:
        assert "shared/cx-model" not in path.read_text(encoding="utf-8"), path
