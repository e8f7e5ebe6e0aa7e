"""The traffic engine: journeys arriving on a simulated clock, stepped in time order.

Why a simulated clock (event time) and not the wall clock: cxpulse scores in event time
(episodes, lateness, decay, alert windows), so a day of traffic can be produced in
seconds and still look like a day to the worker; and a run is then a pure function of
its arguments. Same seed, start, population and incidents → the same events, ids
included, because every random draw (ids too) comes from one ``random.Random`` consumed
in a fixed order.

Arrivals are a Poisson process whose rate follows the daily rhythm (``HOURLY``: quiet
at night, a morning ramp, peaks at lunch and after work), drawn by thinning so the rate
can change within a gap. Each arrival is a journey; its moments are kept in a heap by
time so that the events of overlapping journeys come out interleaved in time order, as a
real feed would deliver them.

How customers react to a touchpoint that did not work (``_advance``) is where the
customer rules find their patterns, so it follows what CX teams observe rather than any
rule's thresholds: a retry within minutes (at an ATM, the same machine first: "it was a
glitch"), then the other digital channel if the customer uses it, then the phone and a
branch; an unresolved problem (``Intent.case``) that refuses them on channel after
channel until an agent or a branch resolves it; callers who hung up calling back.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from cxpulse.streams.dev.simulate.incidents import (
    Effect,
    Incident,
    IncidentError,
    Moment,
    combine,
    parse_incident,
)
from cxpulse.streams.dev.simulate.journeys import (
    APP,
    CALL,
    CARD_RETAINED,
    CASE_EFFECT,
    DAY,
    HOUR,
    INTENTS_BY_NAME,
    MINUTE,
    QUEUES,
    STARTING,
    STARTING_CUM,
    WEB,
    Intent,
    Journey,
    Step,
    channel_details,
    choose_outcome,
    feedback,
    opening_hours,
)
from cxpulse.streams.dev.simulate.population import (
    CUSTOMERS_PER_ATM,
    CUSTOMERS_PER_STORE,
    SEGMENT_MIX,
    Customer,
    Population,
    atm_id,
    make_population,
    store_id,
)

BANKING_SHARE = SEGMENT_MIX["retail_banking"]
# A fixed default start keeps ``generate()`` reproducible when no start is given.
DEFAULT_START = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # a Monday
# Journeys a tier-C customer starts per day; tiers B and A are more active.
DEFAULT_INTENSITY = 1.0

# Relative traffic per local hour, mean 1 (normalised below): digital banking and retail
# traffic as operators describe it, quiet from midnight, rising from 07:00, a lunch peak
# and a higher after-work peak, tailing off towards midnight.
_RAW_HOURLY = (
    0.18, 0.10, 0.07, 0.06, 0.07, 0.14, 0.35, 0.70, 1.05, 1.30, 1.40, 1.50,
    1.60, 1.50, 1.35, 1.30, 1.35, 1.50, 1.65, 1.60, 1.40, 1.10, 0.70, 0.40,
)  # fmt: skip
HOURLY: tuple[float, ...] = tuple(w * 24 / sum(_RAW_HOURLY) for w in _RAW_HOURLY)
_MAX_HOURLY = max(HOURLY)

MAX_MOMENTS = 10  # per journey: past this, a real customer has given up or been helped
# After a failure or an abandonment the customer gives up, tries the same touchpoint again,
# or moves on to another channel. RETRY is the chance of another try at the same touchpoint
# (at most 3 attempts on a rung), RETRY_DELAY (seconds) how long they take to come back,
# ESCALATE_DELAY how long before they reach the channel they move to.
RETRY = {"web": 0.45, "app": 0.45, "call_center": 0.25, "store": 0.1}
RETRY_DELAY = {
    "web": (20.0, 5 * MINUTE),
    "app": (20.0, 5 * MINUTE),
    "call_center": (10 * MINUTE, 3 * HOUR),
    "store": (1 * HOUR, 1 * DAY),
}
ESCALATE_DELAY = {
    "web": (1 * MINUTE, 30 * MINUTE),
    "app": (1 * MINUTE, 30 * MINUTE),
    "atm": (10 * MINUTE, 1 * HOUR),
    "call_center": (5 * MINUTE, 2 * HOUR),
    "store": (2 * HOUR, 2 * DAY),
}
# A failed login is the most retried thing online (a typo? a glitch?): again at once.
LOGINS = frozenset({"web.login", "app.login"})
LOGIN_RETRY = 0.7
LOGIN_RETRY_DELAY = (10.0, 2 * MINUTE)
GIVE_UP = {"failure": 0.2, "abandoned": 0.4}  # abandoning often means "not now"
GIVE_UP_PRE_PURCHASE = 0.6  # a browser who hits a problem mostly just leaves
# A customer with an unresolved problem (Intent.case) needs it solved: they persist, and
# since a refusal says "we cannot do this here", they retry the same touchpoint less often.
GIVE_UP_CASE = {"failure": 0.1, "abandoned": 0.2}
RETRY_CASE = {"web": 0.2, "app": 0.2, "call_center": 0.35, "store": 0.1}
# A caller who hung up while holding has not been helped at all: of those who do not give
# up for now, this share calls back later (call centers see many abandoned callers again).
CALL_BACK = 0.45
# At an ATM, a customer whose withdrawal fails takes the card and tries the same machine
# again within a few minutes ("it was a glitch"): ATM_SAME[k] is the chance after the
# k+1-th attempt there. Unless the screen said why it cannot work there (no cash). Then
# they walk to another machine nearby (ATM_ELSEWHERE), up to ATM_MAX_ATTEMPTS in all,
# then the branch.
ATM_SAME = (0.6, 0.3)
ATM_SAME_DELAY = (20.0, 3 * MINUTE)
ATM_ELSEWHERE = 0.6
ATM_ELSEWHERE_DELAY = (4 * MINUTE, 20 * MINUTE)
ATM_MAX_ATTEMPTS = 4
NOT_HERE = frozenset({"E-OUT-OF-CASH"})  # the machine itself says a retry there is useless
# Moving on from a digital channel, a customer first switches to the other digital one
# (web <-> app) if they use it, then climbs the ladder (phone, then branch). A channel
# they rarely use comes to mind with probability weight / HABIT, and pushed onto it they
# often cannot finish (the app not activated on this phone, the web password long
# forgotten): up to UNFAMILIAR_ABANDON more abandonment, falling to none at HABIT. (Where
# they start a journey of their own accord, they know their way.)
SWITCH = frozenset({"web", "app"})
HABIT = 0.15
UNFAMILIAR_ABANDON = 0.5


class Simulation:
    """An iterable of event dicts (JSON-ready, valid ``TouchpointEvent``s) plus counters.

    Iterate it once. ``events`` and ``duration`` bound the run (whichever comes first;
    neither: endless, for a caller that stops itself). The counters (``count``,
    ``by_channel``, ``by_outcome``, ``by_channel_outcome``, ``incident_hits``,
    ``journeys``, ``clock``) are up to date after each event, for progress and summaries.
    """

    def __init__(
        self,
        customers: int | Population = 1_000,
        seed: int = 0,
        *,
        events: int | None = None,
        duration: timedelta | None = None,
        start: datetime | None = None,
        incidents: Iterable[Incident | str] = (),
        intensity: float = DEFAULT_INTENSITY,
        atms: int | None = None,
        stores: int | None = None,
    ) -> None:
        start = start or DEFAULT_START
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware, e.g. 2026-11-16T00:00+00:00")
        if events is not None and events < 0:
            raise ValueError(f"events must be >= 0, got {events}")
        if duration is not None and duration <= timedelta(0):
            raise ValueError(f"duration must be positive, got {duration}")
        if not intensity > 0:
            raise ValueError(f"intensity must be positive, got {intensity}")
        self.seed = seed
        self.population = (
            customers
            if isinstance(customers, Population)
            else make_population(customers, seed, atms=atms, stores=stores)
        )
        # Fixed UTC offset: the rhythm follows the start's local time of day.
        offset = start.utcoffset() or timedelta(0)
        self.start = start.astimezone(timezone(offset))
        self.limit = events
        self.end = duration.total_seconds() if duration is not None else None
        self.intensity = intensity
        self.incidents = [parse_incident(i) if isinstance(i, str) else i for i in incidents]
        self._check_targets()
        self._windows = []
        for inc in self.incidents:
            begin, end = inc.window(self.start)
            self._windows.append(
                (
                    inc,
                    (begin - self.start).total_seconds(),
                    (end - self.start).total_seconds() if end is not None else float("inf"),
                )
            )
        midnight = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        self._tod0 = (self.start - midnight).total_seconds()
        self.rng = random.Random(seed)
        # counters
        self.count = 0
        self.journeys = 0
        self.clock = 0.0  # seconds of simulated time since start, at the last event
        self.sim_time = self.start  # the simulated clock at the last event (ms precision)
        self.by_channel: Counter[str] = Counter()
        self.by_outcome: Counter[str] = Counter()
        self.by_channel_outcome: Counter[tuple[str, str]] = Counter()
        self.incident_hits: Counter[str] = Counter({i.spec: 0 for i in self.incidents})
        self.languages: Counter[str] = Counter()
        self._iterated = False

    # -- checks -------------------------------------------------------------------------

    def _check_targets(self) -> None:
        """An incident on an instance the simulation does not have would silently do
        nothing: say so at once, with what exists."""
        pop = self.population
        for inc in self.incidents:
            t = inc.target
            if t is None:
                continue
            if inc.kind == "atm_outage" and not 1 <= int(t.split("-")[1]) <= pop.atms:
                need = math.ceil(int(t.split("-")[1]) * CUSTOMERS_PER_ATM / BANKING_SHARE)
                raise IncidentError(
                    f"incident {inc.spec}: this run has ATMs {atm_id(1)}..{atm_id(pop.atms)} "
                    f"(one per {CUSTOMERS_PER_ATM:,} banking customers): pick one of them, "
                    f"simulate {need:,} customers or more, or set the number of ATMs"
                )
            if inc.kind == "store_queues" and not 1 <= int(t.split("-")[1]) <= pop.stores:
                need = int(t.split("-")[1]) * CUSTOMERS_PER_STORE
                raise IncidentError(
                    f"incident {inc.spec}: this run has stores {store_id(1)}.."
                    f"{store_id(pop.stores)} (one per {CUSTOMERS_PER_STORE:,} customers): pick "
                    f"one of them, simulate {need:,} customers or more, or set the number of "
                    "stores"
                )
            if inc.kind == "call_center_backlog" and t not in QUEUES:
                raise IncidentError(
                    f"incident {inc.spec}: no call queue {t!r}; queues are "
                    f"{', '.join(sorted(QUEUES))}"
                )

    # -- the clock ----------------------------------------------------------------------

    def hour_weight(self, t: float) -> float:
        """The daily rhythm at ``t`` seconds after start (mean 1 over a day)."""
        return HOURLY[int(((self._tod0 + t) % DAY) // HOUR)]

    def _next_arrival(self, t: float) -> float:
        """The next journey start after ``t``: Poisson thinning under the rhythm."""
        rng = self.rng
        peak = self.population.total_activity * self.intensity / DAY * _MAX_HOURLY
        while True:
            t += rng.expovariate(peak)
            if rng.random() * _MAX_HOURLY < self.hour_weight(t):
                return t

    def _is_open(self, step: Step, t: float) -> bool:
        hours = opening_hours(step)
        if hours is None:
            return True
        tod = (self._tod0 + t) % DAY
        return hours[0] <= tod < hours[1]

    def _when_open(self, step: Step, t: float) -> float:
        """``t``, or a moment in the first two hours after the next opening."""
        hours = opening_hours(step)
        if hours is None:
            return t
        tod = (self._tod0 + t) % DAY
        if hours[0] <= tod < hours[1]:
            return t
        wait = (hours[0] - tod) % DAY
        return t + wait + self.rng.uniform(0, min(2 * HOUR, hours[1] - hours[0]))

    # -- journeys -----------------------------------------------------------------------

    def _entry(self, customer: Customer, intent: Intent, t: float) -> int | None:
        """The rung a customer starts on: their channel mix over the open entries."""
        open_ = [i for i in intent.entries if self._is_open(intent.ladder[i], t)]
        if not open_:
            return None
        weights = [customer.weight(intent.ladder[i].channel) for i in open_]
        return self.rng.choices(open_, weights)[0]

    def _new_journey(self, t: float) -> Journey | None:
        rng = self.rng
        customer = self.population.pick(rng)
        intents = STARTING[customer.segment]
        for _ in range(3):  # at night, what needs a branch waits for another day
            intent = rng.choices(intents, cum_weights=STARTING_CUM[customer.segment])[0]
            rung = self._entry(customer, intent, t)
            if rung is not None:
                return Journey(f"J-{rng.getrandbits(64):016x}", customer, intent, rung)
        return None

    def _advance(self, j: Journey, t: float, outcome: str, error: str | None) -> float | None:
        """When the journey's next moment happens (after moving it on), or None if done."""
        rng = self.rng
        if j.moments >= MAX_MOMENTS:
            return None
        if outcome == "success":
            for name, p, lo, hi in j.intent.then:
                if rng.random() < p:
                    at = t + rng.uniform(lo, hi)
                    nxt = INTENTS_BY_NAME[name]
                    rung = self._entry(j.customer, nxt, at)
                    if rung is None:
                        rung = nxt.entries[0]
                    j.intent, j.rung, j.attempt, j.tried, j.moved = nxt, rung, 1, 0, False
                    return self._when_open(nxt.ladder[rung], at)
            return None
        if error == CARD_RETAINED:  # the machine kept the card: straight to the hotline
            j.intent, j.rung, j.attempt, j.tried = INTENTS_BY_NAME["card_replacement"], 2, 1, 0
            j.case = False
            return t + rng.uniform(1 * MINUTE, 10 * MINUTE)
        if j.case:
            give_up = GIVE_UP_CASE[outcome]
        elif j.intent.stage == "pre_purchase":
            give_up = GIVE_UP_PRE_PURCHASE
        else:
            give_up = GIVE_UP[outcome]
        if rng.random() < give_up:
            return None
        ladder = j.intent.ladder
        channel = ladder[j.rung].channel
        if channel == "atm":
            again = ATM_SAME[j.here - 1] if j.here <= len(ATM_SAME) else 0.0
            if error not in NOT_HERE and rng.random() < again:
                j.same_atm = True
                j.attempt += 1
                return t + rng.uniform(*ATM_SAME_DELAY)
            if j.attempt < ATM_MAX_ATTEMPTS and rng.random() < ATM_ELSEWHERE:
                j.attempt += 1
                return t + rng.uniform(*ATM_ELSEWHERE_DELAY)
        elif j.attempt < 3 and rng.random() < self._retry(j, channel, outcome):
            j.attempt += 1
            login = ladder[j.rung].touchpoint in LOGINS and not j.case
            lo, hi = LOGIN_RETRY_DELAY if login else RETRY_DELAY[channel]
            return self._when_open(ladder[j.rung], t + rng.uniform(lo, hi))
        rung = self._next_rung(j)
        if rung is None:
            return None
        j.rung, j.attempt, j.moved = rung, 1, True
        lo, hi = ESCALATE_DELAY[ladder[rung].channel]
        return self._when_open(ladder[rung], t + rng.uniform(lo, hi))

    @staticmethod
    def _retry(j: Journey, channel: str, outcome: str) -> float:
        """The chance of another try at the same touchpoint after a non-success."""
        if channel == "call_center" and outcome == "abandoned":
            return CALL_BACK
        if j.case:
            return RETRY_CASE[channel]
        if j.intent.ladder[j.rung].touchpoint in LOGINS:
            return LOGIN_RETRY
        return RETRY[channel]

    def _next_rung(self, j: Journey) -> int | None:
        """Where a customer goes when the current touchpoint did not work: from the web or
        the app to the other one first (if they use it: ``HABIT``), else up the ladder to
        the next rung not tried yet (phone, then branch); None when nothing is left."""
        ladder = j.intent.ladder
        here = ladder[j.rung].channel
        if here in SWITCH or here == "atm":
            for i, step in enumerate(ladder):
                if step.channel in SWITCH and step.channel != here and not j.tried >> i & 1:
                    j.tried |= 1 << i  # considered: tried now, or passed over for good
                    w = j.customer.weight(step.channel)
                    if w >= HABIT or self.rng.random() * HABIT < w:
                        return i
        for i in range(j.rung + 1, len(ladder)):
            if not j.tried >> i & 1:
                return i
        return None

    def _instance(self, j: Journey, step: Step) -> str:
        tp = step.touchpoint
        ch = step.channel
        if ch == "web":
            return WEB[tp][0]
        if ch == "app":
            return "app:" + APP[tp][0]
        if ch == "call_center":
            return f"{CALL[tp][0]}-{j.customer.language}"
        if ch == "store":
            return store_id(self.population.store(self.rng, j.customer))
        if j.same_atm and j.last_atm is not None:
            j.same_atm = False
            j.here += 1
            return atm_id(j.last_atm)
        n = self.population.atm(self.rng, j.customer, avoid=j.last_atm)
        j.last_atm, j.here = n, 1
        return atm_id(n)

    def _effect(self, step: Step, instance: str, t: float) -> tuple[Effect | None, list[str]]:
        if not self._windows:
            return None, []
        moment = Moment(step.channel, step.touchpoint, instance)
        effects: list[Effect] = []
        names: list[str] = []
        for inc, begin, end in self._windows:
            if begin <= t < end:
                e = inc.effect(moment)
                if e is not None:
                    effects.append(e)
                    names.append(inc.spec)
        if not effects:
            return None, []
        return (effects[0] if len(effects) == 1 else combine(effects)), names

    def _moment(self, j: Journey, t: float) -> tuple[dict[str, Any], str, str | None]:
        """The event of the journey's current rung at ``t``: (event, outcome, error)."""
        rng = self.rng
        c = j.customer
        step = j.intent.ladder[j.rung]
        j.tried |= 1 << j.rung
        instance = self._instance(j, step)
        effect, touched = self._effect(step, instance, t)
        incident = effect
        if j.case:
            case = CASE_EFFECT[step.channel]
            effect = case if effect is None else combine([effect, case])
        if j.moved and step.channel in SWITCH:  # pushed onto it by a failure elsewhere
            w = c.weight(step.channel)
            if w < HABIT:
                friction = Effect(abandon=UNFAMILIAR_ABANDON * (1.0 - w / HABIT))
                effect = friction if effect is None else combine([effect, friction])
        outcome = choose_outcome(rng, step, effect)
        errors = effect.errors if effect is not None and outcome == "failure" else ()
        if outcome == "success":
            j.case = False  # resolved
        elif outcome == "failure" and incident is None and not j.case and j.intent.case:
            # Not a glitch but the customer's own problem: it follows them (Intent.case),
            # and this first failure already says so (a refusal, not a server error).
            j.case = rng.random() < j.intent.case
            if j.case:
                errors = CASE_EFFECT[step.channel].errors
        load = min(1.8, max(0.5, self.hour_weight(t)))
        details, effort = channel_details(
            rng,
            step,
            outcome,
            c,
            instance,
            effect.slow if effect else 1.0,
            load,
            errors,
        )
        if outcome == "success" and step.channel == "atm":
            j.last_atm = None  # the next withdrawal starts at home again
        fb = feedback(rng, step, outcome, effort, c)
        when = self.start + timedelta(milliseconds=round(t * 1000))
        self.sim_time = when
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "schema_version": 1,
            "occurred_at": when.isoformat(timespec="milliseconds"),
            "customer_id": c.id,
            "channel": step.channel,
            "touchpoint": step.touchpoint,
            "touchpoint_instance": instance,
            "journey_stage": j.intent.stage,
            "journey_id": j.id,
            "intent": j.intent.name,
            "outcome": outcome,
            "details": details,
            "tier": c.tier,
            "segment": c.segment,
            "attributes": {"simulated": True},
        }
        if fb is not None:
            event["feedback"] = fb
            if "language" in fb:
                self.languages[fb["language"]] += 1
        if touched:
            # Ground truth for checking what the alerting found; scoring ignores it.
            event["attributes"]["incident"] = ",".join(touched)
            for name in touched:
                self.incident_hits[name] += 1
        j.moments += 1
        error = details.get("error_code") if step.channel == "atm" else None
        return event, outcome, error

    # -- the run ------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._iterated:
            raise RuntimeError("a Simulation can be iterated once; make a new one")
        self._iterated = True
        return self._run()

    def _run(self) -> Iterator[dict[str, Any]]:
        heap: list[tuple[float, int, Journey]] = []
        seq = 0
        limit = self.limit if self.limit is not None else -1
        end = self.end if self.end is not None else float("inf")
        next_arrival = self._next_arrival(0.0)
        while self.count != limit:
            due = heap[0][0] if heap else float("inf")
            if next_arrival < due:
                if next_arrival >= end:
                    return
                t = next_arrival
                next_arrival = self._next_arrival(t)
                journey = self._new_journey(t)
                if journey is not None:
                    self.journeys += 1
                    seq += 1
                    heapq.heappush(heap, (t, seq, journey))
                continue
            if due >= end:
                return
            t, _, journey = heapq.heappop(heap)
            event, outcome, error = self._moment(journey, t)
            self.count += 1
            self.clock = t
            channel = event["channel"]
            self.by_channel[channel] += 1
            self.by_outcome[outcome] += 1
            self.by_channel_outcome[(channel, outcome)] += 1
            yield event
            nxt = self._advance(journey, t, outcome, error)
            if nxt is not None:
                seq += 1
                heapq.heappush(heap, (nxt, seq, journey))

    def expected_events_per_day(self) -> float:
        """Roughly how many events a simulated day holds (for choosing a start that ends
        near now): journeys per day × about 1.2 moments per journey."""
        return self.population.total_activity * self.intensity * EVENTS_PER_JOURNEY


EVENTS_PER_JOURNEY = 1.2  # measured on the default mix: most journeys are one moment


def generate(
    customers: int | Population = 1_000,
    seed: int = 0,
    *,
    events: int | None = None,
    duration: timedelta | None = None,
    start: datetime | None = None,
    incidents: Sequence[Incident | str] = (),
    intensity: float = DEFAULT_INTENSITY,
    atms: int | None = None,
    stores: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Simulated touchpoint events as JSON-ready dicts, in event-time order, no Kafka.

    For tests, benchmarks and ``--dry-run``. Endless unless ``events`` or ``duration``
    bounds it. Deterministic: see ``Simulation``.
    """
    return iter(
        Simulation(
            customers,
            seed,
            events=events,
            duration=duration,
            start=start,
            incidents=incidents,
            intensity=intensity,
            atms=atms,
            stores=stores,
        )
    )


__all__ = [
    "DEFAULT_INTENSITY",
    "DEFAULT_START",
    "HOURLY",
    "Simulation",
    "generate",
]
