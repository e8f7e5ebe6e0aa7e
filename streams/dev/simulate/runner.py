"""Run a simulation into Kafka (or to JSON Lines), with pacing, progress and a summary.

Why publish through ``cxpulse.streams.publisher.Publisher``: simulated traffic should take the
path real producers take (validation, batching, keys), so that a simulation also tests
that path, and its throughput is the throughput a real producer gets.

Why the default start ends near now: the worker treats an event stamped more than a few
minutes in the future as happening now (a producer with a wrong clock must not run
ahead), so simulated events must lie in the past. Without ``start``, a run starts that
long before now which it is expected to cover, and the summary prints the start used,
so the run can be repeated exactly with ``--start``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TextIO

from cxpulse.streams.dev.simulate.engine import DEFAULT_INTENSITY, Simulation
from cxpulse.streams.dev.simulate.incidents import (
    Incident,
    IncidentError,
    describe_kinds,
    format_duration,
    parse_duration,
    parse_incident,
)
from cxpulse.streams.settings import ConfigError, Settings, get_settings

DEFAULT_CUSTOMERS = 100_000  # ATM-0001..ATM-0060 and store-001..store-050
PROGRESS_EVERY = 1_000  # events between progress-bar updates


@dataclass
class SimSummary:
    """What a run produced: counts by channel and outcome, incidents, timing, delivery."""

    customers: int
    seed: int
    start: datetime  # the simulated clock at the start of the run
    clock: datetime  # the simulated clock at the last event
    events: int = 0
    journeys: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_channel_outcome: Counter[tuple[str, str]] = field(default_factory=Counter)
    feedback_languages: Counter[str] = field(default_factory=Counter)
    incidents: dict[str, int] = field(default_factory=dict)  # spec → events it touched
    seconds: float = 0.0  # wall time
    rate_limit: float | None = None
    destination: str = ""  # "topic T at URL" or "stdout"
    sent: int = 0  # events Kafka acknowledged (or lines written)
    messages: int = 0
    rejected: int = 0  # events the publisher found invalid (a simulator bug if ever > 0)
    interrupted: bool = False  # stopped by Ctrl-C; what was made until then was delivered

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def parse_start(text: str, now: datetime | None = None) -> datetime:
    """``--start``: an ISO date-time (no zone = UTC), ``now``, or ``-OFFSET`` before now
    (``-1d``, ``-6h``); a one-line ``ConfigError`` otherwise."""
    now = now or datetime.now(UTC)
    s = text.strip()
    if s == "now":
        return now
    if s.startswith("-"):
        try:
            return now - parse_duration(s[1:])
        except ValueError:
            pass
    else:
        try:
            value = datetime.fromisoformat(s)
        except ValueError:
            pass
        else:
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    raise ConfigError(
        f"bad start {text!r}: use an ISO date-time (2026-11-16T08:00, 2026-11-16T08:00+08:00), "
        "now, or an offset before now such as -1d or -6h"
    )


def parse_incidents(specs: Iterable[str | Incident]) -> list[Incident]:
    """Every spec parsed (the first bad one raises its one-line ``IncidentError``)."""
    return [s if isinstance(s, Incident) else parse_incident(s) for s in specs]


def default_start(sim: Simulation, events: int | None, duration: timedelta | None) -> datetime:
    """A start that makes the run end about now: ``now − duration``, or ``now −`` the time
    ``events`` are expected to take at the simulation's traffic (whole minutes)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    if duration is None:
        per_day = max(sim.expected_events_per_day(), 1.0)
        duration = timedelta(days=(events or 0) / per_day)
    return now - timedelta(minutes=int(duration.total_seconds() // 60) + 1)


def working_day_start(
    duration: timedelta, *, whole_hour: bool = False, now: datetime | None = None
) -> datetime:
    """A start ``duration`` before now, in the fixed UTC offset where that is about 08:00.

    The simulated daily rhythm follows the start's offset, so such a run covers a working
    day's traffic (branches open, call center staffed, incidents in busy hours) at any
    time of day it is run, and still ends at about now: what a demo or a test that must
    see the daytime patterns needs. Offsets stay within ±12 h.

    ``whole_hour``: the start is on a whole UTC hour (up to an hour earlier), so 08:00
    exactly in its offset. Then every run with the same seed and population makes the
    same events, ids included, only shifted by whole hours, which the scoring cannot
    tell apart (its hourly highs are UTC hours): what a test whose expectations come from
    the data needs to get the same data at any time of day.
    """
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    start = now.replace(second=0, microsecond=0) - duration - timedelta(minutes=1)
    if whole_hour:
        start = start.replace(minute=0)
    shift = (8 - start.hour) % 24
    shift = shift - 24 if shift > 12 else shift
    return start.astimezone(timezone(timedelta(hours=shift)))


def simulate(
    settings: Settings | None = None,
    *,
    customers: int = DEFAULT_CUSTOMERS,
    events: int | None = None,
    duration: timedelta | None = None,
    seed: int = 0,
    rate: float | None = None,
    start: datetime | None = None,
    incidents: Iterable[str | Incident] = (),
    batch_size: int = 500,
    progress: bool | None = None,
    intensity: float = DEFAULT_INTENSITY,
    atms: int | None = None,
    stores: int | None = None,
    topic: str | None = None,
    output: TextIO | None = None,
) -> SimSummary:
    """Simulate ``events`` events, or ``duration`` of simulated time (whichever ends first;
    neither: one simulated day), and publish them to Kafka, or write JSON Lines to
    ``output`` (a dry run, no Kafka).

    ``rate`` caps the pace in events per second of wall time (None: as fast as possible);
    it never changes the events, only when they are sent. ``progress`` shows a rich bar on
    stderr (default: when stderr is a terminal). ``start`` None: see ``default_start``.
    """
    if events is None and duration is None:
        duration = timedelta(days=1)
    if rate is not None and rate <= 0:
        raise ConfigError(f"rate must be positive (events per second), got {rate}")
    parsed = parse_incidents(incidents)
    if start is None:
        # Size the start from a throwaway simulation of the same population and traffic.
        probe = Simulation(customers, seed, intensity=intensity, atms=atms, stores=stores)
        start = default_start(probe, events, duration)
        sim = Simulation(
            probe.population,
            seed,
            events=events,
            duration=duration,
            start=start,
            incidents=parsed,
            intensity=intensity,
        )
    else:
        sim = Simulation(
            customers,
            seed,
            events=events,
            duration=duration,
            start=start,
            incidents=parsed,
            intensity=intensity,
            atms=atms,
            stores=stores,
        )
    show = progress if progress is not None else sys.stderr.isatty()
    summary = SimSummary(customers, seed, sim.start, sim.start, rate_limit=rate)
    began = time.monotonic()
    stream: Iterator[dict[str, Any]] = iter(sim)
    if rate is not None:
        stream = _paced(stream, rate, began)
    if show:
        stream = _with_progress(stream, sim, events, duration)
    if output is not None:
        summary.destination = (
            "stdout" if output is sys.stdout else getattr(output, "name", "output")
        )
        write = output.write
        written = 0
        try:
            for event in stream:
                write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
                written += 1
        except KeyboardInterrupt:
            summary.interrupted = True
        output.flush()
        summary.sent = written
    else:
        from cxpulse.streams.publisher import Publisher

        settings = settings or get_settings()
        with Publisher(settings, topic=topic, batch_size=batch_size) as publisher:
            publish = publisher.publish
            try:
                for event in stream:
                    publish(event)
            except KeyboardInterrupt:
                # A paced run is usually ended with Ctrl-C: send what was made, and report.
                summary.interrupted = True
            publisher.flush()
        summary.destination = f"topic {publisher.topic} at {settings.kafka_url}"
        summary.sent = publisher.summary.sent
        summary.messages = publisher.summary.messages
        summary.rejected = publisher.summary.rejected
    summary.seconds = time.monotonic() - began
    summary.events = sim.count
    summary.journeys = sim.journeys
    summary.clock = sim.sim_time
    summary.by_channel = sim.by_channel
    summary.by_outcome = sim.by_outcome
    summary.by_channel_outcome = sim.by_channel_outcome
    summary.feedback_languages = sim.languages
    summary.incidents = dict(sim.incident_hits)
    return summary


def _paced(stream: Iterator[dict[str, Any]], rate: float, began: float) -> Iterator[dict[str, Any]]:
    """Hold events back so that no more than ``rate`` per second leave (on average, in
    bursts of at most ~10 ms, since sleeping per event would cost more than sending)."""
    for n, event in enumerate(stream, 1):
        ahead = began + n / rate - time.monotonic()
        if ahead > 0.01:
            time.sleep(ahead)
        yield event


def _with_progress(
    stream: Iterator[dict[str, Any]],
    sim: Simulation,
    events: int | None,
    duration: timedelta | None,
) -> Iterator[dict[str, Any]]:
    """A rich progress bar on stderr: by events if bounded by events, else by simulated
    time; it shows the simulated clock either way."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    by_events = events is not None
    total = float(events) if events is not None else duration.total_seconds() if duration else None
    columns = [
        TextColumn("[bold]simulating"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[n]:,} events"),
        TextColumn("clock {task.fields[clock]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("simulate", total=total, n=0, clock=_clock(sim))
        for i, event in enumerate(stream, 1):
            yield event
            if i % PROGRESS_EVERY == 0:
                done = i if by_events else sim.clock
                bar.update(task, completed=done, n=i, clock=_clock(sim))
        bar.update(task, completed=total, n=sim.count, clock=_clock(sim))


def _clock(sim: Simulation) -> str:
    return sim.sim_time.strftime("%Y-%m-%d %H:%M")


def print_summary(summary: SimSummary, file: TextIO | None = None) -> None:
    """Counts by channel and outcome, feedback languages, incidents, pace and delivery."""
    out = file or sys.stdout

    def p(line: str = "") -> None:
        print(line, file=out)

    span = summary.clock - summary.start
    p(
        f"simulated {summary.events:,} events in {summary.journeys:,} journeys of "
        f"{summary.customers:,} customers (seed {summary.seed})"
        + (", interrupted" if summary.interrupted else "")
    )
    p(
        f"  clock     {summary.start.isoformat(timespec='minutes')} → "
        f"{summary.clock.isoformat(timespec='minutes')} ({format_duration(span)})"
    )
    if summary.destination == "stdout" or summary.messages == 0:
        p(f"  wrote     {summary.sent:,} events to {summary.destination}")
    else:
        p(
            f"  sent      {summary.sent:,} events in {summary.messages:,} messages to "
            f"{summary.destination}"
        )
    if summary.rejected:
        p(f"  REJECTED  {summary.rejected:,} invalid events (a simulator bug: please report)")
    limit = f", limit {summary.rate_limit:,.0f}/s" if summary.rate_limit else ""
    p(f"  pace      {summary.events_per_second:,.0f} events/s over {summary.seconds:.1f}s{limit}")
    p()
    outcomes = ("success", "abandoned", "failure")
    p(f"  {'channel':<12}{'events':>10}" + "".join(f"{o:>11}" for o in outcomes))
    for channel, n in summary.by_channel.most_common():
        cells = "".join(f" {summary.by_channel_outcome[(channel, o)] / n:>10.1%}" for o in outcomes)
        p(f"  {channel:<12}{n:>10,}{cells}")
    total = summary.events or 1
    cells = "".join(f" {summary.by_outcome[o] / total:>10.1%}" for o in outcomes)
    p(f"  {'all':<12}{summary.events:>10,}{cells}")
    if summary.feedback_languages:
        langs = ", ".join(f"{k} {v:,}" for k, v in summary.feedback_languages.most_common())
        p(f"  feedback texts: {langs}")
    if summary.incidents:
        p()
        p("  incidents (events they touched):")
        width = max(len(s) for s in summary.incidents)
        for spec, hits in summary.incidents.items():
            note = "" if hits else "  (none: outside the run, or no traffic there)"
            p(f"    {spec:<{width}}  {hits:>8,}{note}")
    p()
    p(f"  repeat with --seed {summary.seed} --start {summary.start.isoformat()}")


# -- the command line ---------------------------------------------------------------------


def add_simulate_command(cli: Any) -> None:
    """Register ``cxpulse simulate`` on a click group (``streams/cli/__init__.py`` calls this)."""
    import click

    def _incidents(_ctx: Any, _param: Any, value: tuple[str, ...]) -> list[Incident]:
        try:
            return parse_incidents(value)
        except IncidentError as exc:
            raise click.BadParameter(str(exc)) from None

    def _duration(_ctx: Any, _param: Any, value: str | None) -> timedelta | None:
        if value is None:
            return None
        try:
            d = parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if d <= timedelta(0):
            raise click.BadParameter("must be more than zero")
        return d

    def _start(_ctx: Any, _param: Any, value: str | None) -> datetime | None:
        if value is None:
            return None
        try:
            return parse_start(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    epilog = (
        "\b\nIncidents (--incident KIND[:TARGET][@START][/DURATION], repeatable):\n"
        + "\n".join(f"  {line}" for line in describe_kinds().splitlines())
        + "\n\b\nExamples:\n"
        "  cxpulse simulate --events 100000 --incident atm_outage:ATM-0042@+2h/45m\n"
        "  cxpulse simulate --duration 6h --rate 500 --incident call_center_backlog@12:00/1h\n"
        "  cxpulse simulate --customers 200 --events 20 --dry-run | jq .\n"
        "\nSame --seed, --start, --customers and incidents give the same events, ids included."
    )

    @cli.command("simulate", epilog=epilog)
    @click.option(
        "--customers",
        default=DEFAULT_CUSTOMERS,
        show_default=True,
        type=click.IntRange(1),
        help="simulated customers C-000001..; ATMs and stores grow with them",
    )
    @click.option("--events", type=click.IntRange(0), help="stop after this many events")
    @click.option(
        "--duration",
        callback=_duration,
        help="stop after this much simulated time: 30m, 6h, 1d [default: 1d]",
    )
    @click.option(
        "--seed",
        default=0,
        show_default=True,
        type=int,
        help="random seed: the same seed gives the same events",
    )
    @click.option(
        "--rate",
        type=click.FloatRange(min=0, min_open=True),
        help="at most this many events per second of wall time [default: no limit]",
    )
    @click.option(
        "--start",
        callback=_start,
        help="simulated clock start: ISO time (UTC if no zone), now, or -1d "
        "[default: so that the run ends now]",
    )
    @click.option(
        "--incident",
        "incidents",
        multiple=True,
        callback=_incidents,
        help="inject an incident, e.g. atm_outage:ATM-0042@+10m/30m (repeatable)",
    )
    @click.option(
        "--intensity",
        default=DEFAULT_INTENSITY,
        show_default=True,
        type=click.FloatRange(min=0, min_open=True),
        help="journeys per customer per day (tier A and B customers do more)",
    )
    @click.option(
        "--atms",
        type=click.IntRange(1),
        help="number of ATMs [default: 1 per 1,000 banking customers]",
    )
    @click.option(
        "--stores", type=click.IntRange(1), help="number of stores [default: 1 per 2,000 customers]"
    )
    @click.option(
        "--batch-size",
        default=500,
        show_default=True,
        type=click.IntRange(1, 10_000),
        help="events per Kafka message",
    )
    @click.option("--topic", help="override the topic (default: <prefix>.touchpoints)")
    @click.option("--dry-run", is_flag=True, help="write JSON Lines to stdout instead of Kafka")
    @click.option(
        "--progress/--no-progress",
        default=None,
        help="progress bar on stderr [default: when stderr is a terminal]",
    )
    def simulate_command(
        customers: int,
        events: int | None,
        duration: timedelta | None,
        seed: int,
        rate: float | None,
        start: datetime | None,
        incidents: list[Incident],
        intensity: float,
        atms: int | None,
        stores: int | None,
        batch_size: int,
        topic: str | None,
        dry_run: bool,
        progress: bool | None,
    ) -> None:
        """Publish realistic, reproducible customer journeys across all five channels."""
        summary = simulate(
            None if dry_run else get_settings(),
            customers=customers,
            events=events,
            duration=duration,
            seed=seed,
            rate=rate,
            start=start,
            incidents=incidents,
            batch_size=batch_size,
            progress=progress,
            intensity=intensity,
            atms=atms,
            stores=stores,
            topic=topic,
            output=sys.stdout if dry_run else None,
        )
        print_summary(summary, file=sys.stderr if dry_run else sys.stdout)


__all__ = [
    "DEFAULT_CUSTOMERS",
    "SimSummary",
    "add_simulate_command",
    "default_start",
    "parse_incidents",
    "parse_start",
    "print_summary",
    "simulate",
]
