"""`revopipe recommendations`: the optimizer's current recommendations with their evidence,
and (`--actions`) the audit trail of what its actions changed.

Asks the running pipeline's control API; when no pipeline answers and the config is given
(or `--db` names the file), reads the optimizer's SQLite file directly, so the last
findings can be read after the pipeline stopped.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from revopipe.config import ConfigInvalid
from revopipe.config.load import load_file
from revopipe.control import (
    ControlClientError,
    api_options,
    call_control,
    component_of_type,
    resolve_api_url,
)
from revopipe_plugins.optimizer.config import OptimizerConfig
from revopipe_plugins.optimizer.journal import Journal

_PRIORITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan"}
_STEP_STYLE = {"reverted": "bold red", "failed": "red", "kept": "green", "applied": "yellow"}


def _database(config: Path, component: str | None) -> Path:
    try:
        spec = load_file(config)
    except ConfigInvalid as exc:
        raise click.ClickException(f"{config}: {exc}") from None
    found = [
        c
        for c in spec.components.values()
        if c.config.type == "optimizer" and (component is None or c.name == component)
    ]
    if len(found) != 1:
        what = f"named {component!r}" if component else "of type 'optimizer'"
        raise click.ClickException(
            f"{config}: expected one processor {what}, found {len(found)}; pass --component"
        )
    cfg = found[0].config
    assert isinstance(cfg, OptimizerConfig)
    return spec.settings.data_dir / cfg.database


def _read(
    config: Path | None, api: str | None, component: str | None, db: Path | None, audit: bool
) -> tuple[list[dict[str, Any]], str]:
    """(rows, where they came from)."""
    if db is None:
        try:
            url = resolve_api_url(config, api)
            name = component or component_of_type(url, "optimizer")
            action = "audit" if audit else "recommendations"
            return call_control(url, name, action, {"all": True}), url
        except ControlClientError as exc:
            if exc.status is not None or config is None:
                raise
            db = _database(config, component)
    if not db.exists():
        raise click.ClickException(
            f"no optimizer database at {db}: the optimizer has not run with this data_dir yet"
        )
    journal = Journal(db)
    try:
        rows = journal.audit() if audit else journal.recommendations(include_inactive=True)
    finally:
        journal.close()
    return rows, f"{db} (pipeline not running)"


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _show_recommendations(rows: list[dict[str, Any]], source: str, include_all: bool) -> None:
    console = Console()
    shown = [r for r in rows if include_all or r["active"]]
    if not shown:
        console.print(f"no current recommendations ({source})")
        return
    console.print(f"{len(shown)} recommendation(s) from {source}\n")
    for i, r in enumerate(shown, 1):
        title = Text(f"{i}. ")
        title.append(f"[{r['priority']}] ", style=_PRIORITY_STYLE.get(r["priority"], ""))
        title.append(r["title"], style="bold")
        if not r["active"]:
            title.append("  (no longer found)", style="dim")
        console.print(title)
        console.print(f"   do: {r['action']}")
        conf = "" if r["confidence"] is None else f"   confidence {r['confidence']:.4f}"
        console.print(
            f"   risk {r['risk']}{conf}   first seen {_when(r['first_seen'])}   "
            f"last seen {_when(r['last_seen'])}",
            style="dim",
        )
        table = Table(show_header=False, box=None, padding=(0, 1, 0, 5))
        for k, v in r["evidence"].items():
            table.add_row(Text(k, style="dim"), Text(str(v)))
        console.print(table)
        console.print()


def _show_audit(rows: list[dict[str, Any]], source: str) -> None:
    table = Table(title=f"optimizer actions ({source})")
    for col in ("#", "at", "step", "action", "component", "change", "measure", "before", "after"):
        table.add_column(col)
    for r in rows:
        change = ", ".join(
            f"{k}: {r['previous'].get(k, '?')} -> {v}" for k, v in r["changes"].items()
        )
        table.add_row(
            str(r["id"]),
            _when(r["at"]),
            Text(r["step"], style=_STEP_STYLE.get(r["step"], "")),
            r["action"],
            r["component"],
            change,
            r["measure"],
            "" if r["before"] is None else f"{r['before']:.4g}",
            "" if r["after"] is None else f"{r['after']:.4g}",
        )
    Console().print(table)


@click.command()
@api_options
@click.option("--component", help="the optimizer's name (default: the only one)")
@click.option("--all", "include_all", is_flag=True, help="also those no longer found")
@click.option("--actions", "audit", is_flag=True, help="show the actions' audit trail instead")
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="read this optimizer database directly (no running pipeline needed)",
)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def recommendations(
    config: Path | None,
    api: str | None,
    component: str | None,
    include_all: bool,
    audit: bool,
    db: Path | None,
    as_json: bool,
) -> None:
    """List the optimizer's current recommendations, highest priority first, each with
    its evidence (series, values, change point, confidence) and suggested action."""
    rows, source = _read(config, api, component, db, audit)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
    elif audit:
        _show_audit(rows, source)
    else:
        _show_recommendations(rows, source, include_all)
