"""``cxpulse drivers``: each factor's importance per segment, learnt from the answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cxpulse.streams.cli.common import settings_from
from cxpulse.streams.settings import ConfigError

if TYPE_CHECKING:
    from cxpulse.schemas.model import ExperienceModel
    from cxpulse.streams.analysis.drivers import SegmentDrivers
    from cxpulse.streams.settings import Settings


@click.command()
@click.option(
    "--answer",
    type=click.Choice(["csat", "nps"]),
    default="csat",
    show_default=True,
    help="the satisfaction answer the factors are to explain",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
@click.option(
    "--write-model",
    type=click.Path(dir_okay=False, writable=True),
    help="write the model in use with the learnt importances (and n, CI as comments) here",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    help="the model to compare with [default: CXPULSE_MODEL_PATH, else the shipped one]",
)
@click.option(
    "--min-customers",
    type=click.IntRange(min=10),
    default=200,
    show_default=True,
    help="answering customers a segment needs; fewer says 'not enough data'",
)
@click.option(
    "--min-factor-customers",
    type=click.IntRange(min=5),
    default=30,
    show_default=True,
    help="answering customers who touched a factor before it is estimated",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=20, max=5000),
    default=200,
    show_default=True,
    help="bootstrap resamples for the 95% intervals",
)
@click.option(
    "--max-interval",
    type=click.FloatRange(min=0.5, max=20),
    default=4.0,
    show_default=True,
    help="suggest a learnt importance only if its 95% interval is at most this wide",
)
@click.option("--seed", type=int, default=0, show_default=True, help="the bootstrap's seed")
@click.option("--matrix/--no-matrix", default=True, help="draw the importance × performance matrix")
@click.option(
    "--svg",
    type=click.Path(dir_okay=False, writable=True),
    help="also draw the matrices as an SVG picture here",
)
def drivers(
    answer: str,
    as_json: bool,
    write_model: str | None,
    model_path: str | None,
    min_customers: int,
    min_factor_customers: int,
    resamples: int,
    max_interval: float,
    seed: int,
    matrix: bool,
    svg: str | None,
) -> None:
    """Learn each factor's importance per segment from the customers' answers.

    For every customer who answered (CSAT, or NPS), their mean answer is regressed on
    their mean gap per factor over their other moments (those without an answer: a
    surveyed moment's readings contain the answer). The coefficients, rescaled to the
    model's 1..10, are printed beside the configured importances with the number of
    customers and a bootstrap 95% interval; a segment with too few answers says "not
    enough data". The matrix places each factor by importance (up) and mean gap
    (across): important factors below expectation are the ones to fix first.

    Reads ClickHouse read-only, as `cxpulse query` does (a running worker answers for its
    chDB directory). Method, assumptions and limits: docs/drivers.md.

    \b
      cxpulse drivers
      cxpulse drivers --answer nps --json
      cxpulse drivers --write-model suggested.yaml && cxpulse model check suggested.yaml
      cxpulse drivers --svg matrix.svg
    """
    from cxpulse.schemas.model import ModelError
    from cxpulse.streams.analysis.drivers import learn
    from cxpulse.streams.model_check import load_model

    settings = settings_from()
    path = model_path or settings.model_path
    try:
        model = load_model(path)
    except ModelError as exc:
        raise ConfigError(str(exc)) from None
    factor_rows, answer_rows = read_rows(settings, answer)
    results = learn(
        factor_rows,
        answer_rows,
        model,
        answer=answer,
        min_customers=min_customers,
        min_factor_customers=min_factor_customers,
        resamples=resamples,
        max_interval=max_interval,
        seed=seed,
    )
    if as_json:
        doc = {"answer": answer, "segments": [s.as_dict() for s in results]}
        click.echo(json.dumps(doc, ensure_ascii=False))
    else:
        print_drivers(results, answer, matrix=matrix)
    if svg:
        from cxpulse.streams.analysis.drivers import matrix_svg

        write_file(Path(svg), matrix_svg(results))
    if write_model:
        write_suggested(Path(write_model), path, results, model, answer)
        if not as_json:
            click.echo(
                f"wrote {write_model}: review it, check it with `cxpulse model check "
                f"{write_model}`, and apply it with CXPULSE_MODEL_PATH={write_model}"
            )


def read_rows(settings: Settings, answer: str) -> tuple[list[Any], list[Any]]:
    """The rows the analysis needs, read-only, as ``cxpulse query`` reads them."""
    from cxpulse.streams.analysis.drivers import answer_sql, factor_sql
    from cxpulse.streams.query import run_query

    _, answer_rows = run_query(settings, answer_sql(answer))
    _, factor_rows = run_query(settings, factor_sql(answer))
    return list(factor_rows), list(answer_rows)


def print_drivers(
    results: list[SegmentDrivers], answer: str, *, matrix: bool = True, notes: bool = True
) -> None:
    """A table per segment, the notes on its factors, and its importance × performance
    matrix."""
    from rich.console import Console
    from rich.table import Table

    from cxpulse.streams.analysis.drivers import priority_grid, quadrant

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # a pipe or a file: the tables as wide as they need
    if not results:
        console.print(
            f"not enough data: no customer has both a {answer.upper()} answer and a scored "
            "moment without one yet"
        )
        return
    for seg in results:
        r2 = f", R² {seg.r2:.2f}" if seg.r2 is not None else ""
        title = f"{seg.segment}: {seg.customers} customers answered {answer.upper()}{r2}" + (
            f" (compared with the model's {seg.compared_with})"
            if seg.segment != seg.compared_with
            else ""
        )
        if not seg.estimated:
            console.print(f"{title}: {seg.note or 'nothing learnt'}")
            continue
        table = Table(
            "factor",
            "configured",
            "learnt",
            "95% CI",
            "suggested",
            "n",
            "mean gap",
            "quadrant",
            title=title,
            title_justify="left",
            caption="n: answering customers whose other moments touched the factor; "
            "95% CI: bootstrap; mean gap: reading − expectation over their moments",
            caption_justify="left",
        )
        for f in seg.factors:
            ci = f"{f.low:.1f}–{f.high:.1f}" if f.low is not None and f.high is not None else ""
            table.add_row(
                f.factor,
                f"{f.configured:g}",
                f"{f.learnt:.1f}" if f.learnt is not None else "–",
                ci,
                str(f.suggested),
                str(f.customers),
                f"{f.mean_gap:+.2f}" if f.mean_gap is not None else "",
                quadrant(seg, f) or "",
            )
        console.print(table)
        for f in seg.factors if notes else ():
            if f.note:
                console.print(f"  {f.factor}: {f.note}", markup=False, highlight=False)
        if matrix:
            console.print(f"importance × performance, {seg.segment}:", markup=False)
            for line in priority_grid(seg):
                console.print(line, markup=False, highlight=False)


def write_suggested(
    target: Path,
    model_path: str | Path | None,
    results: list[SegmentDrivers],
    model: ExperienceModel,
    answer: str,
) -> None:
    """The model in use with the learnt importances, checked before it is written."""
    import yaml

    from cxpulse.schemas.model import ModelError, parse_model
    from cxpulse.streams.analysis.drivers import suggested_model
    from cxpulse.streams.model_check import DEFAULT_MODEL_PATH

    source = Path(model_path) if model_path else DEFAULT_MODEL_PATH
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"Importances learnt by `cxpulse drivers --answer {answer}` on {when} from the "
        f"answers in ClickHouse, where there was enough data (docs/drivers.md); the rest as "
        f"configured in {source.name}. Review before use: the comments give n and each "
        "factor's 95% interval.",
    ]
    text = suggested_model(source.read_text(encoding="utf-8"), results, model, header)
    try:
        parse_model(yaml.safe_load(text))
    except (ModelError, yaml.YAMLError) as exc:  # a bug here, never the user's input
        raise ConfigError(f"the suggested model does not check: {exc}") from None
    write_file(target, text)


def write_file(target: Path, text: str) -> None:
    """Write ``text``, or one line saying why not."""
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {target}: {exc.strerror or exc}: choose a writable path"
        ) from None


#: The demo's population answers few surveys in its 8 hours: its step lowers the minimum.
DEMO_MIN_CUSTOMERS = 100


def demo_drivers(settings: Settings) -> None:
    """The demo's last step: the drivers table for the demo's data (``make demo``)."""
    from rich.console import Console

    from cxpulse.streams.analysis.drivers import learn
    from cxpulse.streams.model_check import load_model

    Console().rule("key drivers: importance learnt from the CSAT answers (cxpulse drivers)")
    model = load_model(settings.model_path)
    results = learn(*read_rows(settings, "csat"), model, min_customers=DEMO_MIN_CUSTOMERS)
    print_drivers(results, "csat", matrix=False, notes=False)
    changes = sum(
        1
        for seg in results
        for f in seg.factors
        if f.learnt is not None and not f.uncertain and f.suggested != f.configured
    )
    said = (
        f"{changes} learnt importance{'s' if changes != 1 else ''} pinned down well enough to "
        "suggest (cxpulse drivers --write-model FILE)"
        if changes
        else "no learnt importance is pinned down to within 4 points yet, so none is suggested"
    )
    click.echo(
        f"(the demo lowers the minimum to {DEMO_MIN_CUSTOMERS} answering customers, 200 by "
        f"default; {said}; how to read it: docs/drivers.md)"
    )
