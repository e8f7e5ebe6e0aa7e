"""What the commands share: settings from the environment with a run's overrides, and the
settings' help text."""

from __future__ import annotations

from typing import Any

from cxpulse.streams.settings import Settings, load_settings


def settings_from(**overrides: Any) -> Settings:
    """The environment's settings, with the options given on this command line."""
    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def env_help(only: tuple[str, ...] | None = None) -> str:
    """Every ``CXPULSE_*`` setting on a line of its own (click keeps the lines as they are
    after a ``\b`` paragraph marker); with ``only``, those whose names start so."""
    lines = ["\b"]
    for name, field in Settings.model_fields.items():
        if only is not None and not name.startswith(only):
            continue
        lines.append(f"  CXPULSE_{name.upper():<28} {field.description} [default: {field.default}]")
    return "\n".join(lines)
