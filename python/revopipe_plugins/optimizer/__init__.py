"""The `optimizer` processor (change points, trends, leaks, bottlenecks, recommendations),
its built-in actions, which tune revopipe itself, and `revopipe recommendations`."""

from __future__ import annotations

from typing import Any

import click

from revopipe.actions import Action
from revopipe.plugins import hookimpl
from revopipe_plugins.optimizer.actions.collection_interval import CollectionInterval
from revopipe_plugins.optimizer.actions.sink_batch import SinkBatch
from revopipe_plugins.optimizer.processor import OptimizerProcessor


@hookimpl
def revopipe_component_types() -> list[type]:
    return [OptimizerProcessor]


@hookimpl
def revopipe_optimizer_actions() -> list[type[Action[Any]]]:
    return [CollectionInterval, SinkBatch]


@hookimpl
def revopipe_register_commands(cli: click.Group) -> None:
    from revopipe_plugins.optimizer.cli import recommendations

    cli.add_command(recommendations)
