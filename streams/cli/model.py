"""``cxpulse model``: check an experience model file, or print the shipped one."""

from __future__ import annotations

import click

from cxpulse.streams.settings import ConfigError


@click.group()
def model() -> None:
    """The experience model: factors, importance, expectations, touchpoints (YAML)."""


@model.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def model_check(file: str) -> None:
    """Validate a model FILE; print a summary, or one line saying what to fix."""
    from cxpulse.schemas.model import ModelError
    from cxpulse.streams.model_check import check_model_file

    try:
        click.echo(check_model_file(file))
    except ModelError as exc:
        raise ConfigError(str(exc)) from None


@model.command("show-default")
def model_show_default() -> None:
    """Print the shipped default model (a starting point for your own)."""
    from cxpulse.streams.model_check import DEFAULT_MODEL_PATH

    click.echo(DEFAULT_MODEL_PATH.read_text(), nl=False)
