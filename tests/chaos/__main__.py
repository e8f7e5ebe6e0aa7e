"""``python -m tests.chaos [--short] [--only NAME ...] [--debug]``: run the chaos
scenarios against the bundled broker and chDB, print the table, exit 1 on any loss,
duplicate or score that differs from a clean run."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

from cxpulse.streams.dev.broker import EmbeddedBroker
from tests.chaos.harness import Harness, Result
from tests.chaos.scenarios import SCENARIOS

COLUMNS = (
    "scenario",
    "events in",
    "lost (events/moments)",
    "duplicates after FINAL",
    "duplicate alerts",
    "scores != clean",
    "RSS start/peak MiB",
    "hung stops",
    "seconds",
)


def table(results: list[Result]) -> str:
    rows = [
        (r.scenario, f"not run: {r.not_run}", *[""] * (len(COLUMNS) - 2))
        if r.not_run
        else (
            r.scenario,
            f"{r.events_in:,}",
            f"{r.lost_events}/{r.lost_moments}",
            str(r.duplicates),
            str(r.duplicate_alerts),
            str(r.scores_off),
            f"{r.rss_start_mib:.0f}/{r.rss_peak_mib:.0f}",
            str(r.hung_stops),
            f"{r.seconds:.0f}",
        )
        for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)), line]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def run(short: bool, only: list[str], debug: bool, workdir: Path) -> list[Result]:
    results: list[Result] = []
    with EmbeddedBroker(log_dir=workdir / "broker") as broker:
        for name, scenario in SCENARIOS.items():
            if only and name not in only:
                continue
            print(f"chaos: {name} ({'short' if short else 'long'}) ...", flush=True)
            h = Harness(name, broker.url, workdir, debug=debug)
            started = time.monotonic()
            try:
                result = scenario(h, short)
            except Exception as exc:  # a scenario that breaks is a failed row, not a crash
                result = Result(name, events_in=len(h.published))
                result.notes.append(f"{name}: {exc!r}")
                result.seconds = time.monotonic() - started
            finally:
                h.close()
            results.append(result)
            print(table([result]).splitlines()[-1], flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI form: a few minutes")
    parser.add_argument("--only", action="append", default=[], choices=sorted(SCENARIOS))
    parser.add_argument("--debug", action="store_true", help="workers log at debug level")
    parser.add_argument("--workdir", type=Path, help="keep logs and data here")
    args = parser.parse_args(argv)
    # SIGTERM (make's timeout) unwinds like Ctrl-C: the workers are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cxpulse-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"chaos: logs and data under {workdir}", flush=True)
    results = run(args.short, args.only, args.debug, workdir)
    print()
    print(table(results))
    for r in results:
        for note in r.notes:
            print(f"note: {note}")
        for problem in r.problems:
            print(f"FAILED: {r.scenario}: {problem}")
    ok = all(r.ok for r in results)
    print("chaos: OK" if ok else "chaos: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
