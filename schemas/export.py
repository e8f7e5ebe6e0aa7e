"""Write the JSON Schemas of the touchpoint event contract and of a case (the cases API,
docs/cases.md): ``python -m cxpulse.schemas.export``.

Why a generated file is committed: producers in other languages validate against it
without installing cxpulse, and reviewers see a contract change as a diff of this file.
The pydantic models stay the single source of truth; ``tests/unit/test_schema_contract.py``
fails when the committed file drifts from them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cxpulse.schemas.cases import case_schema
from cxpulse.schemas.events import SCHEMA_VERSION, TouchpointEvent

SCHEMA_PATH = Path(__file__).with_name(f"touchpoint_event.v{SCHEMA_VERSION}.json")
SCHEMA_ID = f"urn:cxpulse:schema:touchpoint_event:v{SCHEMA_VERSION}"
CASE_SCHEMA_PATH = Path(__file__).with_name("case.v1.json")


def touchpoint_event_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event, as pydantic derives it, plus ids.

    Cross-field rules pydantic checks in code (details must match the channel; feedback
    needs at least one answer) cannot be derived, so they are stated in the description.
    """
    schema = TouchpointEvent.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "description": (
            f"{schema.get('description', '').strip()}\n\n"
            "Also enforced by cxpulse, beyond this schema: details.kind must equal channel, "
            "and feedback needs at least one of nps, csat, ces or text. A Kafka message "
            "holds one such object or a JSON array of them (docs/wire-format.md)."
        ).strip(),
    }


def render() -> str:
    """The file's exact text: sorted keys and a trailing newline, so it diffs stably."""
    return (
        json.dumps(touchpoint_event_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )


def render_case() -> str:
    """The case schema file's exact text (``cxpulse.schemas.cases.case_schema``)."""
    return json.dumps(case_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxpulse.schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the event schema (default: both committed files)",
    )
    args = parser.parse_args(argv)
    files = (
        [(args.output, render())]
        if args.output is not None
        else [(SCHEMA_PATH, render()), (CASE_SCHEMA_PATH, render_case())]
    )
    status = 0
    for path, text in files:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if args.check:
            if current != text:
                print(f"{path} is stale: run python -m cxpulse.schemas.export", file=sys.stderr)
                status = 1
        elif current == text:
            print(f"{path} is up to date")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
