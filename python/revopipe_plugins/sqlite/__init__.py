"""The `sqlite` sink: embedded metric and event history in the pipeline's data_dir, with
rollups, retention, a query helper (`revopipe_plugins.sqlite.query`) and the
`revopipe history` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from revopipe.plugins import hookimpl
from revopipe_plugins.sqlite.sink import SqliteSink

if TYPE_CHECKING:
    import click


@hookimpl
def revopipe_component_types() -> list[type]:
    return [SqliteSink]


@hookimpl
def revopipe_register_commands(cli: click.Group) -> None:
    from revopipe_plugins.sqlite.cli import history

    cli.add_command(history)
