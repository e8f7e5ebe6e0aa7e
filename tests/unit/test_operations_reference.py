"""docs/operations.md embeds the settings, topics and metrics references generated from
the code; regenerate with `python -m cxpulse.streams.reference` when this fails."""

from __future__ import annotations

from pathlib import Path

from cxpulse.streams.reference import render
from cxpulse.streams.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_operations_guide_embeds_the_current_reference() -> None:
    text = DOC.read_text()
    assert render() in text, "docs/operations.md is stale: run python -m cxpulse.streams.reference"


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not f.description]
    assert missing == []
