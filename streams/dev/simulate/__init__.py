"""``cxpulse simulate``: realistic, reproducible touchpoint traffic (docs/simulator.md).

A population of customers (``population``) pursues needs across channels
(``journeys``) on a simulated clock (``engine``), with incidents injected on demand
(``incidents``) and feedback in English and Chinese (``texts``); ``runner`` publishes the
result through the Publisher SDK or writes JSON Lines.
"""

from cxpulse.streams.dev.simulate.engine import DEFAULT_START, Simulation, generate
from cxpulse.streams.dev.simulate.incidents import (
    Incident,
    IncidentError,
    parse_duration,
    parse_incident,
)
from cxpulse.streams.dev.simulate.population import Customer, Population, make_population
from cxpulse.streams.dev.simulate.runner import (
    SimSummary,
    add_simulate_command,
    parse_start,
    print_summary,
    simulate,
)

__all__ = [
    "DEFAULT_START",
    "Customer",
    "Incident",
    "IncidentError",
    "Population",
    "SimSummary",
    "Simulation",
    "add_simulate_command",
    "generate",
    "make_population",
    "parse_duration",
    "parse_incident",
    "parse_start",
    "print_summary",
    "simulate",
]
