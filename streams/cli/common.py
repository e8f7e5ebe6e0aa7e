"""What the commands share: settings from the environment with a run's overrides, and the
settings' help text."""

from __future__ import annotations

import textwrap
from typing import Any

from cxpulse.streams.settings import Settings, load_settings


def settings_from(**overrides: Any) -> Settings:
    """The environment's settings, with the options given on this command line."""
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


#: The settings table fits an 80-column terminal: click indents an epilog by 2.
HELP_WIDTH = 78


def env_help(only: tuple[str, ...] | None = None) -> str:
    """Every ``CXPULSE_*`` setting as a row of a two-column table: the name, then what it
    does and its default, wrapped under the description column so that each row stays
    a row in an 80-column terminal (click keeps the lines as they are after a ``\b``
    paragraph marker, instead of reflowing them into one paragraph); with ``only``,
    those whose names start so."""
    rows = [
        # the default is one word to the wrapping: never "[default:" at a line's end
        (f"CXPULSE_{name.upper()}", f"{field.description} [default:\0{field.default}]")
        for name, field in Settings.model_fields.items()
        if only is None or name.startswith(only)
    ]
    column = 2 + max(len(name) for name, _ in rows) + 2
    lines = ["\b"]
    for name, text in rows:
        wrapped = textwrap.wrap(
            text, HELP_WIDTH - column, break_long_words=False, break_on_hyphens=False
        )
        wrapped = [line.replace("\0", " ") for line in wrapped]
        lines.append(f"  {name:<{column - 2}}{wrapped[0]}")
        lines.extend(" " * column + more for more in wrapped[1:])
    return "\n".join(lines)
