"""What customers come to do (intents), how they go about it, and what each moment looks like.

Why journeys and not single events: a customer with a need keeps at it until it is met
or they give up, and the way they keep at it is what CX management is about. A failed
card replacement in the app sends a customer to the website, then to the phone, then to
a branch: that is channel hopping and repeat contact, and it only appears in the data if
the simulator follows one customer through one need. So an intent has an *escalation
ladder* of touchpoints; a journey starts on the rung its customer's persona prefers, and
after a failure the customer retries the same touchpoint, switches to the other digital
channel or climbs to the next rung (``cxpulse.streams.dev.simulate.engine`` decides which), or gives
up. A success may lead on to the next stage (research → purchase → order
tracking), under the same ``journey_id``, so episodes span the journey stages.

Why some failures follow the customer from channel to channel: most failures are
glitches (a timeout, a jammed dispenser) that a retry or another channel gets past, but
some are the customer's own *unresolved problem* (a blocked card, a transfer held for
review, a refund that never arrived, a parcel lost). No app screen or web page fixes
those, and an agent often cannot on the first call: the customer meets the same refusal
on every channel until someone resolves it. ``Intent.case`` is the share of an intent's
failures that are such a case; ``CASE_EFFECT`` is how each channel then fares (self-service
mostly refuses again, a call resolves 60 %, a branch most). These are the journeys
that show channel hopping and repeat contacts in real CX data.

Base failure and abandonment rates are per touchpoint and deliberately modest (1–8 %
failures; browsing and checkouts are abandoned more): a healthy system's background,
against which incidents stand out.

Effort is drawn from log-normal distributions (waits and latencies have long right
tails) with medians well under the default model's expectations, so a routine moment
reads as routine, and a slow one (an incident, a busy hour) reads as effort.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from cxpulse.streams.dev.simulate.incidents import Effect
from cxpulse.streams.dev.simulate.population import Customer
from cxpulse.streams.dev.simulate.texts import Mood, feedback_text, topic_for


@dataclass(frozen=True, slots=True)
class Step:
    """One rung of an escalation ladder: a touchpoint type and its base outcome rates."""

    channel: str
    touchpoint: str
    fail: float
    abandon: float


@dataclass(frozen=True)
class Intent:
    """A need, in one segment and journey stage, and the touchpoints that can meet it.

    ``entries`` are the rungs a journey may start on (weighted by the customer's channel
    mix); ``then`` are follow-on intents after a success: (intent, probability, min and
    max delay in seconds); ``case`` the chance that a failure (one no incident caused) is
    the customer's own unresolved problem rather than a glitch (see the module docstring).
    """

    name: str
    segment: str
    stage: str
    weight: float
    ladder: tuple[Step, ...]
    entries: tuple[int, ...]
    then: tuple[tuple[str, float, float, float], ...] = ()
    case: float = 0.0


def _s(touchpoint: str, fail: float, abandon: float) -> Step:
    return Step(touchpoint.split(".", 1)[0], touchpoint, fail, abandon)


MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

# Touchpoint types are those of streams/default_model.yaml, so every moment is scored by
# its own configuration rather than a channel fallback.
INTENTS: tuple[Intent, ...] = (
    # -- retail banking ----------------------------------------------------------------
    Intent(
        "account_access",
        "retail_banking",
        "post_purchase",
        26,
        (
            _s("app.login", 0.02, 0.02),
            _s("web.login", 0.03, 0.03),
            _s("call_center.banking_support", 0.05, 0.04),
        ),
        (0, 1),
        case=0.25,  # locked credentials, a device no longer registered
    ),
    Intent(
        "balance_check",
        "retail_banking",
        "post_purchase",
        10,
        (_s("atm.balance", 0.01, 0.01), _s("app.login", 0.02, 0.02), _s("web.login", 0.03, 0.03)),
        (0, 1, 2),
    ),
    Intent(
        "bill_payment",
        "retail_banking",
        "purchase",
        12,
        (
            _s("app.payment", 0.03, 0.04),
            _s("web.transfer", 0.03, 0.04),
            _s("call_center.banking_support", 0.05, 0.04),
            _s("store.branch_visit", 0.02, 0.03),
        ),
        (0, 1, 3),
        case=0.3,  # a payee rejected, a payment held
    ),
    Intent(
        "money_transfer",
        "retail_banking",
        "purchase",
        9,
        (
            _s("web.transfer", 0.03, 0.04),
            _s("app.payment", 0.03, 0.04),
            _s("call_center.banking_support", 0.05, 0.04),
            _s("store.branch_visit", 0.02, 0.03),
        ),
        (0, 1, 3),
        case=0.35,  # a transfer held for a fraud review
    ),
    Intent(
        "cash_withdrawal",
        "retail_banking",
        "post_purchase",
        16,
        (_s("atm.withdrawal", 0.02, 0.01), _s("store.branch_visit", 0.01, 0.03)),
        (0,),
    ),
    Intent(
        "cash_deposit",
        "retail_banking",
        "post_purchase",
        4,
        (_s("atm.deposit", 0.03, 0.02), _s("store.branch_visit", 0.01, 0.03)),
        (0, 1),
    ),
    Intent(
        "card_replacement",
        "retail_banking",
        "post_purchase",
        3,
        (
            _s("app.card_control", 0.08, 0.04),
            _s("web.login", 0.06, 0.05),
            _s("call_center.card_hotline", 0.04, 0.05),
            _s("store.branch_visit", 0.01, 0.02),
        ),
        (0, 1, 2, 3),
        case=0.5,  # a blocked card, an address to verify
    ),
    Intent(
        "account_question",
        "retail_banking",
        "post_purchase",
        6,
        (_s("call_center.banking_support", 0.06, 0.05), _s("store.branch_visit", 0.02, 0.03)),
        (0, 1),
        case=0.35,  # a charge the customer disputes
    ),
    Intent(
        "loan_research",
        "retail_banking",
        "pre_purchase",
        4,
        (_s("web.product_page", 0.01, 0.05), _s("call_center.banking_support", 0.04, 0.04)),
        (0,),
        (("loan_application", 0.25, 1 * HOUR, 3 * DAY),),
    ),
    Intent(
        "loan_application",
        "retail_banking",
        "purchase",
        1,
        (_s("store.advice_appointment", 0.05, 0.03), _s("call_center.banking_support", 0.05, 0.04)),
        (0, 1),
    ),
    # -- retail ------------------------------------------------------------------------
    Intent(
        "product_search",
        "retail",
        "pre_purchase",
        22,
        (_s("web.search", 0.01, 0.08),),
        (0,),
        (("product_research", 0.7, 10, 3 * MINUTE),),
    ),
    Intent(
        "product_research",
        "retail",
        "pre_purchase",
        8,
        (_s("web.product_page", 0.01, 0.10),),
        (0,),
        (("online_purchase", 0.35, 1 * MINUTE, 30 * MINUTE),),
    ),
    Intent(
        "online_purchase",
        "retail",
        "purchase",
        10,
        (
            _s("web.checkout", 0.03, 0.08),
            _s("app.checkout", 0.03, 0.07),
            _s("call_center.order_support", 0.05, 0.05),
        ),
        (0, 1),
        (("order_status", 0.3, 6 * HOUR, 2 * DAY),),
        case=0.2,  # a card the payment provider declines, an address it rejects
    ),
    Intent(
        "in_store_purchase",
        "retail",
        "purchase",
        18,
        (_s("store.checkout", 0.01, 0.03),),
        (0,),
    ),
    Intent(
        "order_status",
        "retail",
        "post_purchase",
        10,
        (_s("app.order_tracking", 0.02, 0.02), _s("call_center.order_support", 0.05, 0.05)),
        (0, 1),
        case=0.4,  # a parcel lost in delivery
    ),
    Intent(
        "product_return",
        "retail",
        "post_purchase",
        5,
        (_s("store.returns_desk", 0.02, 0.03), _s("call_center.returns", 0.05, 0.05)),
        (0, 1),
        case=0.4,  # a refund that never arrived
    ),
)
INTENTS_BY_NAME: dict[str, Intent] = {i.name: i for i in INTENTS}
# Intents a journey may start with, by segment (follow-on intents also start journeys).
STARTING: dict[str, tuple[Intent, ...]] = {
    seg: tuple(i for i in INTENTS if i.segment == seg) for seg in ("retail_banking", "retail")
}
STARTING_CUM: dict[str, list[float]] = {}
for _seg, _intents in STARTING.items():
    _total, STARTING_CUM[_seg] = 0.0, []
    for _i in _intents:
        _total += _i.weight
        STARTING_CUM[_seg].append(_total)

# -- channel details ----------------------------------------------------------------------

# Medians of effort, well under the model's expectations (a routine moment is easy).
WEB = {  # touchpoint: (page, median latency ms, steps range)
    "web.login": ("/login", 450.0, (1, 2)),
    "web.transfer": ("/transfer", 700.0, (3, 5)),
    "web.search": ("/search", 350.0, (1, 2)),
    "web.product_page": ("/products", 600.0, (1, 3)),
    "web.checkout": ("/checkout", 900.0, (3, 5)),
}
APP = {  # touchpoint: (screen, median latency ms, steps range)
    "app.login": ("login", 300.0, (1, 1)),
    "app.payment": ("payment", 500.0, (2, 4)),
    "app.card_control": ("card-control", 450.0, (2, 3)),
    "app.checkout": ("checkout", 600.0, (2, 4)),
    "app.order_tracking": ("orders", 350.0, (1, 2)),
}
CALL = {  # touchpoint: (queue, mean wait s, median handle s)
    "call_center.card_hotline": ("cards", 30.0, 300.0),
    "call_center.banking_support": ("banking", 55.0, 360.0),
    "call_center.order_support": ("orders", 80.0, 240.0),
    "call_center.returns": ("returns", 80.0, 300.0),
}
STORE = {  # touchpoint: (mean queue s, median service s, desk)
    "store.branch_visit": (240.0, 420.0, "COUNTER"),
    "store.advice_appointment": (90.0, 1800.0, "DESK"),
    "store.checkout": (90.0, 110.0, "POS"),
    "store.returns_desk": (180.0, 240.0, "RETURNS"),
}
ATM_MEDIAN_MS = {"atm.withdrawal": 1800.0, "atm.deposit": 3500.0, "atm.balance": 1100.0}
QUEUES: frozenset[str] = frozenset(
    f"{q}-{lang}" for q, _, _ in CALL.values() for lang in ("en", "zh")
)

WEB_ERRORS = ("500", "502", "503", "504")
ATM_ERRORS = ("E-CASH-JAM", "E-HOST-TIMEOUT", "E-CARD-READ", "E-OUT-OF-CASH", "E-CARD-RETAINED")
CARD_RETAINED = "E-CARD-RETAINED"
AGENTS = 240  # call-center agents AG-001..
STAFF = 12  # staff per store

# Opening hours (local time on the simulated clock); web, app, ATMs and the card hotline
# never close. Escalations to a closed channel wait for the next opening.
OPENING: dict[str, tuple[float, float]] = {"store": (9 * HOUR, 18 * HOUR)}
CALL_HOURS = (8 * HOUR, 20 * HOUR)
ALWAYS_OPEN_CALLS = frozenset({"call_center.card_hotline"})

SURVEY_CHANCE = {"web": 0.06, "app": 0.06, "call_center": 0.30, "store": 0.25, "atm": 0.04}

# An unresolved problem (a case, see the module docstring), channel by channel: the app
# and the website refuse again (a 4xx refusal, or the option is not there and the customer
# gives up), an ATM declines the card, a call resolves 60 % at the first contact (industry
# first-contact resolution is 50-75 %), a branch most of them.
CASE_EFFECT: dict[str, Effect] = {
    "web": Effect(fail=0.55, abandon=0.25, errors=("403", "409", "422")),
    "app": Effect(fail=0.55, abandon=0.25, errors=("403", "409", "422")),
    "atm": Effect(fail=0.7, errors=("E-DECLINED",)),  # no intent with cases uses one yet
    "call_center": Effect(fail=0.4),
    "store": Effect(fail=0.15),
}


def _lognormal(rng: random.Random, median: float, sigma: float = 0.45) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _cap(x: float, hi: float) -> float:
    return round(min(x, hi), 1)


def opening_hours(step: Step) -> tuple[float, float] | None:
    """(open, close) seconds of the local day, or None if always open."""
    if step.channel == "call_center":
        return None if step.touchpoint in ALWAYS_OPEN_CALLS else CALL_HOURS
    return OPENING.get(step.channel)


@dataclass
class Journey:
    """One customer pursuing one need (and the needs it leads on to)."""

    id: str
    customer: Customer
    intent: Intent
    rung: int
    attempt: int = 1  # attempts on the current rung
    moments: int = 0
    tried: int = 0  # bit i: rung i of the current intent was tried (or passed over)
    case: bool = False  # an unresolved problem follows the customer (Intent.case)
    last_atm: int | None = None  # the ATM of the last attempt
    same_atm: bool = False  # the next attempt is at that same machine (card re-inserted)
    here: int = 0  # attempts in a row at the current ATM
    moved: bool = False  # on this rung because another did not work (not where it began)


def choose_outcome(rng: random.Random, step: Step, effect: Effect | None) -> str:
    fail, abandon = step.fail, step.abandon
    if effect is not None:
        fail = 1.0 - (1.0 - fail) * (1.0 - effect.fail)
        abandon = 1.0 - (1.0 - abandon) * (1.0 - effect.abandon)
    u = rng.random()
    if u < fail:
        return "failure"
    if u < fail + abandon:
        return "abandoned"
    return "success"


def channel_details(
    rng: random.Random,
    step: Step,
    outcome: str,
    customer: Customer,
    instance: str,
    slow: float,
    load: float,
    errors: tuple[str, ...],
) -> tuple[dict[str, Any], float]:
    """The ``details`` of a moment and how hard it was (effort / its usual median).

    ``slow`` is an incident's effort multiplier; ``load`` the hour's traffic relative
    to the day's mean (queues and waits grow with it, latencies barely do).
    """
    ch, tp = step.channel, step.touchpoint
    if ch == "web" or ch == "app":
        name, median, (lo, hi) = WEB[tp] if ch == "web" else APP[tp]
        latency = _lognormal(rng, median) * slow
        steps = rng.randint(lo, hi)
        status = 200
        if outcome == "failure":
            status = int(rng.choice(errors or WEB_ERRORS))
            if status == 504:
                latency = max(latency, rng.uniform(10_000, 30_000))
        elif outcome == "abandoned":
            latency *= rng.uniform(1.5, 4.0)
            steps += rng.randint(1, 4)
        d: dict[str, Any] = {"kind": ch, "latency_ms": _cap(latency, 3_600_000.0)}
        d["http_status"] = status
        if ch == "web":
            d["page"] = name
        else:
            d.update(screen=name, app_version=customer.app_version, os=customer.os)
        d["steps"] = steps
        return d, latency / median
    if ch == "call_center":
        queue, mean_wait, median_handle = CALL[tp]
        wait = rng.expovariate(1.0 / (mean_wait * load)) * slow
        d = {"kind": "call_center", "queue": f"{queue}-{customer.language}"}
        d["ivr_steps"] = rng.randint(2, 4)
        if outcome == "abandoned":  # hung up while holding
            wait = max(wait, mean_wait * load * slow) * rng.uniform(1.5, 4.0)
            d.update(wait_seconds=_cap(wait, 86_400.0), transfers=0)
            return d, wait / mean_wait
        transfers = rng.choices((0, 1, 2), (0.85, 0.12, 0.03))[0]
        handle = _lognormal(rng, median_handle, 0.5)
        if outcome == "failure":  # served but not helped: passed around, and longer
            transfers = rng.randint(1, 3)
            handle *= rng.uniform(1.3, 2.5)
        d.update(
            wait_seconds=_cap(wait, 86_400.0),
            handle_seconds=_cap(handle, 86_400.0),
            transfers=transfers,
            agent_id=f"AG-{rng.randint(1, AGENTS):03d}",
        )
        return d, max(wait / mean_wait, 1.0 + transfers)
    if ch == "store":
        mean_queue, median_service, desk = STORE[tp]
        queue_s = rng.expovariate(1.0 / (mean_queue * load)) * slow
        d = {"kind": "store"}
        if outcome == "abandoned":  # walked out of the queue
            queue_s = max(queue_s, mean_queue * load * slow) * rng.uniform(1.5, 3.0)
            d["queue_seconds"] = _cap(queue_s, 86_400.0)
            return d, queue_s / mean_queue
        service = _lognormal(rng, median_service, 0.4)
        if outcome == "failure":
            service *= rng.uniform(1.5, 3.0)
        d.update(
            queue_seconds=_cap(queue_s, 86_400.0),
            service_seconds=_cap(service, 86_400.0),
            terminal_id=f"{desk}-{rng.randint(1, 6):02d}",
            staff_id=f"S-{instance.removeprefix('store-')}-{rng.randint(1, STAFF):02d}",
        )
        return d, queue_s / mean_queue
    # atm
    median = ATM_MEDIAN_MS[tp]
    response = _lognormal(rng, median, 0.3) * slow
    d = {"kind": "atm"}
    if outcome == "failure":
        code = rng.choice(errors or ATM_ERRORS)
        response = max(response, rng.uniform(6_000, 15_000))
        d["error_code"] = code
    elif outcome == "abandoned":  # cancelled, or the card timed out at the prompt
        response *= rng.uniform(1.5, 3.0)
    d["response_ms"] = _cap(response, 3_600_000.0)
    if tp == "atm.withdrawal":
        d["cash_dispensed"] = outcome == "success"
    return d, response / median


def feedback(
    rng: random.Random, step: Step, outcome: str, effort: float, customer: Customer
) -> dict[str, Any] | None:
    """A survey answer (and perhaps free text) after some moments, matching how it went.

    Unhappy customers answer more often (1.5×), as survey teams observe. Answers follow a
    latent 0..1 experience: success that took normal effort is high, a slow success is
    middling, abandoned low, failure lowest; tier A judges a little harder. Text praise
    or complaint follows the same experience, about the moment's topic.
    """
    chance = SURVEY_CHANCE[step.channel] * (1.5 if outcome != "success" else 1.0)
    if rng.random() >= chance:
        return None
    slow = effort > 2.5
    if outcome == "success":
        e = rng.uniform(0.35, 0.75) if slow else rng.uniform(0.62, 1.0)
    elif outcome == "abandoned":
        e = rng.uniform(0.1, 0.45)
    else:
        e = rng.uniform(0.0, 0.3)
    if customer.tier == "A":
        e = max(0.0, e - 0.05)
    fb: dict[str, Any] = {}
    ch = step.channel
    if ch == "call_center":
        fb["csat"] = 1 + round(4 * e)
        if rng.random() < 0.5:
            fb["ces"] = 7 - round(6 * e)
    elif ch == "store" or ch == "atm":
        fb["csat"] = 1 + round(4 * e)
    else:
        fb["ces"] = 7 - round(6 * e)
        if rng.random() < 0.3:
            fb["csat"] = 1 + round(4 * e)
    if rng.random() < 0.15:  # the relationship question, asked now and then
        fb["nps"] = min(10, round(10.4 * e))
    mood: Mood | None = "praise" if e >= 0.6 else "complaint" if e < 0.45 else None
    if mood is not None and rng.random() < (0.5 if mood == "complaint" else 0.3):
        fb["text"] = feedback_text(rng, customer.language, mood, topic_for(ch, slow))
        fb["language"] = customer.language
    return fb


__all__ = [
    "CASE_EFFECT",
    "INTENTS",
    "INTENTS_BY_NAME",
    "QUEUES",
    "Intent",
    "Journey",
    "Step",
    "channel_details",
    "choose_outcome",
    "feedback",
    "opening_hours",
]
