"""The `revopipe demo` command: the monitoring preset watching a sample web service under a
light load test, so every dashboard widget has live data."""

from __future__ import annotations

from collections.abc import Sequence

import click

from revopipe.components import ComponentClass
from revopipe.plugins import hookimpl


@hookimpl
def revopipe_component_types() -> Sequence[ComponentClass]:
    return []


@hookimpl
def revopipe_register_commands(cli: click.Group) -> None:
    # Imported here: the command pulls in uvicorn and Starlette, which `revopipe run`
    # and `validate` do not need.
    from revopipe_plugins.demo.cli import demo

    cli.add_command(demo)
