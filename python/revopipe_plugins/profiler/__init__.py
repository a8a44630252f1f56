"""The `profiler` source and the `revopipe profile -- COMMAND` command: statistical CPU
sampling with collapsed stacks, hot-function metrics and speedscope / collapsed exports."""

from __future__ import annotations

from collections.abc import Sequence

import click

from revopipe.components import ComponentClass
from revopipe.plugins import hookimpl
from revopipe_plugins.profiler.cli import profile
from revopipe_plugins.profiler.source import ProfilerSource


@hookimpl
def revopipe_component_types() -> Sequence[ComponentClass]:
    return [ProfilerSource]


@hookimpl
def revopipe_register_commands(cli: click.Group) -> None:
    cli.add_command(profile)
