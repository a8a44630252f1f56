"""Every hook revopipe calls, in one place.

Plugins implement these with ``@revopipe.hookimpl`` in a module named by an entry point
in the ``revopipe`` group::

    [project.entry-points.revopipe]
    myplugin = "myplugin"

Hook names carry the ``revopipe_`` prefix so a module can hold hooks for other hosts too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from revopipe.actions import Action
    from revopipe.components import ComponentClass
    from revopipe.notify import Channel
    from revopipe.widgets import WidgetClass

hookspec = pluggy.HookspecMarker("revopipe")


@hookspec
def revopipe_component_types() -> Sequence[ComponentClass]:
    """Called once when the plugin manager loads, to build the component registry.

    Return the component classes (subclasses of ``revopipe.Source``, ``Processor`` or
    ``Sink``) this plugin provides. Each class names itself with ``type_name`` and its
    config model with ``Config``; the pair (kind, type_name) must be unique across all
    installed plugins, or loading fails naming both plugins.
    """
    raise NotImplementedError


@hookspec
def revopipe_notification_channels() -> Sequence[type[Channel]]:
    """Called once when the plugin manager loads, to build the notification channel registry.

    Return the channel classes (subclasses of ``revopipe.notify.Channel``) this plugin
    provides. Each class names itself with ``type_name`` (the ``type`` key of a channel's
    config) and its config model with ``Config`` (a ``ChannelConfig`` subclass); the
    type_name must be unique across all installed plugins, or loading fails naming both
    plugins.
    """
    raise NotImplementedError


@hookspec
def revopipe_optimizer_actions() -> Sequence[type[Action[Any]]]:
    """Called once when the plugin manager loads, to build the optimizer action registry.

    Return the action classes (subclasses of ``revopipe.actions.Action``) this plugin
    provides. Each names itself with ``type_name`` (its table under the optimizer's
    ``actions``) and its config model with ``Config`` (an ``ActionConfig`` subclass); the
    type_name must be unique across all installed plugins, or loading fails naming both
    plugins. Actions change only tunable config keys of the running pipeline, and only
    when the optimizer's ``actions.mode`` is ``"apply"``.
    """
    raise NotImplementedError


@hookspec
def revopipe_dashboard_widgets() -> Sequence[WidgetClass]:
    """Called once when the plugin manager loads, to build the dashboard widget registry.

    Return the widget classes (subclasses of ``revopipe.widgets.Widget``) this plugin
    provides. Each names itself with ``type_name`` (the ``type`` of a
    ``[[sinks.<dashboard>.widgets]]`` entry) and its config model with ``Config`` (a
    ``WidgetConfig`` subclass); the type_name must be unique across all installed
    plugins, or loading fails naming both plugins. A widget returns a JSON-serialisable
    dict the page draws from generic keys (cards, figure, table), so it needs no
    JavaScript of its own.
    """
    raise NotImplementedError


@hookspec
def revopipe_register_commands(cli: click.Group) -> None:
    """Called once while the ``revopipe`` command line is built.

    Add subcommands with ``cli.add_command(...)``. Return nothing.
    """


@hookspec
def revopipe_startup(pipeline: Any) -> None:
    """Called after a pipeline's components are built, before any of them starts.

    ``pipeline`` is the ``revopipe.Pipeline`` being started. Return nothing; raising
    aborts the start with the plugin named in the error.
    """


@hookspec
def revopipe_shutdown(pipeline: Any) -> None:
    """Called after a pipeline has drained and every component has stopped.

    Return nothing. Exceptions are logged and do not prevent other plugins' hooks.
    """
