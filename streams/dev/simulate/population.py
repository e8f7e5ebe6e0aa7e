"""The simulated customers and the physical touchpoints they use.

Why a population rather than events drawn independently: the rules cxpulse runs are
about *customers* (repeat contacts, channel hopping, a tier-A customer's score falling)
and about *instances* (one ATM failing for many people). Independent random events would
spread every customer so thin that none of those rules could ever fire. So each
customer is a stable identity with a value tier, a segment, a language, a way of using
channels (persona) and a home ATM and store, and the traffic is their journeys.

Why the fleet grows with the population: a real ATM serves a neighbourhood, not a
number of machines fixed in advance. With one ATM per ``CUSTOMERS_PER_ATM`` banking
customers each machine sees about the traffic a real one does (~270 sessions a day at
the default intensity, a dozen in a midday half hour), whatever the population size, so
an outage of one machine is visible at any scale. ``atms``/``stores`` override the sizes.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from cxpulse.schemas.events import CHANNELS

# Value tiers, as a bank or retailer would split its book: few very valuable customers.
TIER_MIX: dict[str, float] = {"A": 0.10, "B": 0.30, "C": 0.60}
# More valuable customers hold more products and so have more to do: journeys per day
# relative to a tier-C customer.
TIER_ACTIVITY: dict[str, float] = {"A": 1.6, "B": 1.2, "C": 1.0}
# The default model's segments (streams/default_model.yaml, factors.importance).
SEGMENT_MIX: dict[str, float] = {"retail_banking": 0.6, "retail": 0.4}
LANGUAGE_MIX: dict[str, float] = {"en": 0.65, "zh": 0.35}

# How a persona spreads its contacts over channels (web, app, call_center, store, atm).
# An intent's possible channels are weighted by these, so a digital customer starts a
# card replacement in the app and a traditional one walks into a branch.
PERSONAS: dict[str, tuple[float, float, float, float, float]] = {
    "digital": (0.30, 0.55, 0.05, 0.05, 0.05),
    "mixed": (0.25, 0.30, 0.15, 0.15, 0.15),
    "traditional": (0.10, 0.05, 0.30, 0.35, 0.20),
}
# Retail shoppers lean digital; banking customers still use branches and phones.
PERSONA_MIX: dict[str, dict[str, float]] = {
    "retail_banking": {"digital": 0.45, "mixed": 0.35, "traditional": 0.20},
    "retail": {"digital": 0.55, "mixed": 0.35, "traditional": 0.10},
}
APP_VERSIONS: dict[str, float] = {"6.4.1": 0.55, "6.3.0": 0.30, "5.9.2": 0.15}
OS_MIX: dict[str, float] = {"ios": 0.45, "android": 0.53, "other": 0.02}

CUSTOMERS_PER_ATM = 1_000  # banking customers per ATM
CUSTOMERS_PER_STORE = 2_000  # customers (both segments) per store or branch
HOME_ATM_SHARE = 0.75  # withdrawals at one's own neighbourhood machine
HOME_STORE_SHARE = 0.85


class Customer(NamedTuple):
    """One simulated customer; every attribute is fixed for the whole run.

    A NamedTuple rather than a frozen dataclass: far cheaper to build by the 100,000.
    """

    id: str  # C-000001: zero-padded so ids sort in creation order
    tier: str
    segment: str
    language: str  # of their free-text feedback
    persona: str
    channel_weights: tuple[float, float, float, float, float]  # in CHANNELS order
    home_atm: int  # 1-based ATM number
    home_store: int  # 1-based store number
    os: str
    app_version: str

    def weight(self, channel: str) -> float:
        return self.channel_weights[CHANNELS.index(channel)]


def atm_id(n: int) -> str:
    return f"ATM-{n:04d}"


def store_id(n: int) -> str:
    return f"store-{n:03d}"


def customer_id(n: int) -> str:
    return f"C-{n:06d}"


def _picker(mix: dict[str, float]) -> tuple[list[str], list[float]]:
    return list(mix), list(accumulate(mix.values()))


def _pick(rng: random.Random, picker: tuple[list[str], list[float]]) -> str:
    """``rng.choices(keys, cum_weights=cum)[0]`` (the same draw), without its overhead."""
    keys, cum = picker
    return keys[bisect(cum, rng.random() * cum[-1])]


@dataclass(frozen=True)
class Population:
    """The customers, the fleet of ATMs and stores, and who is how active."""

    customers: tuple[Customer, ...]
    atms: int
    stores: int
    cum_activity: tuple[float, ...]  # cumulative activity weights, for bisect choice

    @property
    def total_activity(self) -> float:
        """Sum of the customers' relative activity: journeys per day at intensity 1."""
        return self.cum_activity[-1] if self.cum_activity else 0.0

    def pick(self, rng: random.Random) -> Customer:
        """A customer at random, weighted by activity (tier-A customers come more often)."""
        return rng.choices(self.customers, cum_weights=self.cum_activity)[0]

    def atm(self, rng: random.Random, customer: Customer, *, avoid: int | None = None) -> int:
        """The ATM a customer uses: usually the home one; ``avoid`` one that just failed
        (a customer whose withdrawal failed walks to another machine)."""
        if avoid is None and rng.random() < HOME_ATM_SHARE:
            return customer.home_atm
        if self.atms == 1:
            return 1
        while True:
            n = rng.randint(1, self.atms)
            if n != avoid:
                return n

    def store(self, rng: random.Random, customer: Customer) -> int:
        if rng.random() < HOME_STORE_SHARE:
            return customer.home_store
        return rng.randint(1, self.stores)


def make_population(
    n: int, seed: int, *, atms: int | None = None, stores: int | None = None
) -> Population:
    """``n`` customers ``C-000001``.. drawn from ``seed``, and a fleet sized to them.

    The population has its own random stream (derived from the seed), so the same seed
    gives the same customers whatever the traffic settings (events, incidents).
    """
    if n < 1:
        raise ValueError(f"customers must be at least 1, got {n}")
    rng = random.Random(f"cxpulse-population:{seed}")
    banking = max(1, round(n * SEGMENT_MIX["retail_banking"]))
    n_atms = atms if atms is not None else max(1, math.ceil(banking / CUSTOMERS_PER_ATM))
    n_stores = stores if stores is not None else max(1, math.ceil(n / CUSTOMERS_PER_STORE))
    if n_atms < 1 or n_stores < 1:
        raise ValueError("atms and stores must be at least 1")
    segments, tiers, languages = _picker(SEGMENT_MIX), _picker(TIER_MIX), _picker(LANGUAGE_MIX)
    personas = {seg: _picker(mix) for seg, mix in PERSONA_MIX.items()}
    systems, versions = _picker(OS_MIX), _picker(APP_VERSIONS)
    customers = []
    for i in range(1, n + 1):
        segment = _pick(rng, segments)
        persona = _pick(rng, personas[segment])
        # Each customer's own mix: the persona's, jittered, so no two are identical.
        weights = tuple(w * rng.uniform(0.6, 1.4) for w in PERSONAS[persona])
        total = sum(weights)
        customers.append(
            Customer(
                id=customer_id(i),
                tier=_pick(rng, tiers),
                segment=segment,
                language=_pick(rng, languages),
                persona=persona,
                channel_weights=(
                    weights[0] / total,
                    weights[1] / total,
                    weights[2] / total,
                    weights[3] / total,
                    weights[4] / total,
                ),
                home_atm=1 + int(rng.random() * n_atms),
                home_store=1 + int(rng.random() * n_stores),
                os=_pick(rng, systems),
                app_version=_pick(rng, versions),
            )
        )
    cum = tuple(accumulate(TIER_ACTIVITY[c.tier] for c in customers))
    return Population(tuple(customers), n_atms, n_stores, cum)


__all__ = [
    "CUSTOMERS_PER_ATM",
    "CUSTOMERS_PER_STORE",
    "PERSONAS",
    "SEGMENT_MIX",
    "TIER_MIX",
    "Customer",
    "Population",
    "atm_id",
    "customer_id",
    "make_population",
    "store_id",
]
