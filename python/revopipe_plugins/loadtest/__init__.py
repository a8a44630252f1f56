"""The `loadtest` source and the `revopipe loadtest` command: HTTP load from the Rust
generator, with test presets, thresholds, baselines and reports."""

from __future__ import annotations

from collections.abc import Sequence

import click

from revopipe.components import ComponentClass
from revopipe.plugins import hookimpl
from revopipe_plugins.loadtest.cli import loadtest, loadtest_history
from revopipe_plugins.loadtest.source import LoadTestSource


@hookimpl
def revopipe_component_types() -> Sequence[ComponentClass]:
    return [LoadTestSource]


@hookimpl
def revopipe_register_commands(cli: click.Group) -> None:
    cli.add_command(loadtest)
    cli.add_command(loadtest_history)
