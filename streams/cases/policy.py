"""Who owns a case and by when it must be acknowledged: pure functions of the model
file's ``cases`` section (``cxpulse.schemas.model.CasesSection``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from cxpulse.schemas.model import NO_TIER, SERVICE_LEVEL_PATTERN, CasesSection
from cxpulse.schemas.vocabulary import SEVERITIES, TIERS

_LEVEL = re.compile(SERVICE_LEVEL_PATTERN)


def owner(
    section: CasesSection, *, kind: str, rule: str, tier: str | None, channel: str | None
) -> str:
    """The team of the first routing rule whose conditions all match, else the default."""
    for route in section.routing:
        if route.kind is not None and route.kind != kind:
            continue
        if route.rule is not None and route.rule != rule:
            continue
        if route.tier is not None and route.tier != tier:
            continue
        if route.channel is not None and route.channel != channel:
            continue
        return route.team
    return section.default_team


def add_working_days(start: datetime, days: float) -> datetime:
    """``start`` plus ``days`` working days (Monday to Friday): each whole day steps to the
    same time of the next weekday; a fraction adds that share of 24 h after them."""
    whole = int(days)
    at = start
    while whole > 0:
        at += timedelta(days=1)
        if at.weekday() < 5:
            whole -= 1
    return at + timedelta(days=days - int(days))


def after(start: datetime, level: str) -> datetime:
    """``start`` plus a service level ("1h", "30m", "2d", "5wd")."""
    m = _LEVEL.match(level)
    if m is None:  # the model file's pattern already refused it
        raise ValueError(f"not a service level: {level!r} (give e.g. 1h, 30m, 2d or 5wd)")
    amount, unit = float(m.group(1)), m.group(2)
    if unit == "wd":
        return add_working_days(start, amount)
    seconds = {"m": 60, "h": 3600, "d": 86400}[unit]
    return start + timedelta(seconds=amount * seconds)


def service_level(section: CasesSection, tier: str | None, severity: str) -> str:
    levels = getattr(section.service_levels, tier if tier in TIERS else NO_TIER)
    level: str = getattr(levels, severity)
    return level


def due_at(section: CasesSection, opened_at: datetime, tier: str | None, severity: str) -> datetime:
    """When a case opened at ``opened_at`` must be acknowledged by."""
    return after(opened_at, service_level(section, tier, severity))


def raised(severity: str) -> str:
    """One severity level up (critical stays critical)."""
    i = SEVERITIES.index(severity)
    return SEVERITIES[min(i + 1, len(SEVERITIES) - 1)]


def higher(a: str, b: str) -> str:
    return a if SEVERITIES.index(a) >= SEVERITIES.index(b) else b
