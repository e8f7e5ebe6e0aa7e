"""Loading and checking experience model files (``cxpulse model check FILE`` calls this).

The model is validated once, at load: a bad file stops a worker at start-up with one line
that names the key and the fix, instead of producing wrong scores for hours.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from cxpulse.schemas.model import ExperienceModel, ModelError, parse_model

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_model.yaml")


def _read(path: Path) -> ExperienceModel:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"model error: {path}: file not found: check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"model error: {path}: cannot read ({exc}): check the file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "somewhere"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ModelError(
            f"model error: {path}: YAML syntax error at {where}: {problem}: fix the syntax"
        ) from None
    if data is None:
        raise ModelError(f"model error: {path}: the file is empty: start from the default model")
    return parse_model(data)


@lru_cache(maxsize=1)
def _default() -> ExperienceModel:
    return _read(DEFAULT_MODEL_PATH)


def load_model(path: str | Path | None = None) -> ExperienceModel:
    """The model in ``path``, or the shipped default when None. Raises ModelError."""
    return _default() if path is None else _read(Path(path))


def check_model_file(path: str | Path) -> str:
    """Validate a model file; return a one-line summary, or raise ModelError (one line)."""
    m = load_model(path)
    segments = sorted(m.factors.importance)
    return (
        f"model ok: {len(segments)} segments ({', '.join(segments)}), "
        f"{len(m.touchpoints)} touchpoint types, episode gap {m.episodes.gap_minutes:g} min, "
        f"half-life {m.score.half_life_days:g} days, "
        f"allowed lateness {m.episodes.allowed_lateness_hours:g} h, "
        f"{len(m.feedback.topics)} feedback topics"
    )
