"""`revopipe alerts list | ack | silence | silences | expire | history | outbox`: talk to
the `alerts` processor of a running pipeline through its control API (the pipeline must
run with `--api` or `[pipeline] api`)."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from revopipe.config.units import parse_duration
from revopipe.control import (
    api_options,
    call_control,
    component_of_type,
    resolve_api_url,
)

_STATE_STYLE = {"firing": "bold red", "pending": "yellow", "resolved": "green"}


def _target(config: Path | None, api: str | None, component: str | None) -> tuple[str, str]:
    url = resolve_api_url(config, api)
    return url, component or component_of_type(url, "alerts")


def _call(ctx: click.Context, action: str, params: dict[str, Any], post: bool = False) -> Any:
    url, component = _target(ctx.obj["config"], ctx.obj["api"], ctx.obj["component"])
    return call_control(url, component, action, params, post=post)


def _emit(ctx: click.Context, result: Any, table: Table | str) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        Console().print(table)


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


@click.group("alerts")
@api_options
@click.option("--component", metavar="NAME", help="the alerts processor (if several)")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
@click.pass_context
def alerts(
    ctx: click.Context,
    config: Path | None,
    api: str | None,
    component: str | None,
    as_json: bool,
) -> None:
    """Alerts of a running pipeline: list, acknowledge, silence, history."""
    ctx.obj = {"config": config, "api": api, "component": component, "json": as_json}


@alerts.command("list")
@click.option(
    "--state", type=click.Choice(["pending", "firing", "resolved"]), help="only this state"
)
@click.pass_context
def list_(ctx: click.Context, state: str | None) -> None:
    """Pending, firing and recently resolved alerts."""
    result = _call(ctx, "list", {"state": state} if state else {})
    table = Table("state", "rule", "severity", "labels", "value", "since", "ack", "muted", "id")
    for a in result["alerts"]:
        since = a["firing_since"] or a["active_since"]
        ack = f"{a['acked_by']} {a['acked_at']}" if a["acked_by"] else ""
        table.add_row(
            f"[{_STATE_STYLE.get(a['state'], '')}]{a['state']}",
            a["rule"],
            a["severity"],
            _labels(a["labels"]),
            f"{a['value']:.4g}",
            since,
            ack,
            ", ".join(a["muted_by"]),
            a["fingerprint"],
        )
    if not result["alerts"]:
        table = f"no alerts ({result['rules']} rules evaluated)"  # type: ignore[assignment]
    _emit(ctx, result, table)
    for rule, error in sorted(result.get("errors", {}).items()):
        click.echo(f"rule {rule!r} fails to evaluate: {error}", err=True)


@alerts.command()
@click.argument("alert_id")
@click.option("--by", default=getpass.getuser, show_default="your user name", help="who")
@click.pass_context
def ack(ctx: click.Context, alert_id: str, by: str) -> None:
    """Acknowledge an alert: ALERT_ID is a fingerprint (or a unique prefix, as `list`
    shows it) or a rule name (all its alerts). Stops repeats and escalation."""
    result = _call(ctx, "ack", {"id": alert_id, "by": by}, post=True)
    _emit(ctx, result, f"acknowledged by {result['by']}: {', '.join(result['acknowledged'])}")


@alerts.command()
@click.argument("matchers", nargs=-1, required=True)
@click.option("--duration", "-d", default="1h", show_default=True, help="how long, e.g. 2h")
@click.option("--comment", "-m", default="", help="why (shown in `silences`)")
@click.option("--by", default=getpass.getuser, show_default="your user name", help="who")
@click.pass_context
def silence(
    ctx: click.Context, matchers: tuple[str, ...], duration: str, comment: str, by: str
) -> None:
    """Mute notifications of alerts matching every MATCHER (`alertname=high_cpu_usage`,
    `host=~"web.*"`, `severity!=critical`) for --duration."""
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    params = {"matchers": list(matchers), "duration": seconds, "comment": comment, "by": by}
    result = _call(ctx, "silence", params, post=True)
    s = result["silence"]
    _emit(ctx, result, f"silence {s['id']} until {s['ends_at']}: {', '.join(s['matchers'])}")


@alerts.command()
@click.option("--all", "every", is_flag=True, help="include expired silences")
@click.pass_context
def silences(ctx: click.Context, every: bool) -> None:
    """Silences, active and pending (with --all, expired too)."""
    result = _call(ctx, "silences", {"all": every})
    table = Table("id", "matchers", "starts", "ends", "active", "by", "comment")
    for s in result["silences"]:
        table.add_row(
            s["id"],
            ", ".join(s["matchers"]),
            s["starts_at"],
            s["ends_at"],
            "yes" if s["active"] else "no",
            s["created_by"],
            s["comment"],
        )
    _emit(ctx, result, table)


@alerts.command()
@click.argument("silence_id")
@click.pass_context
def expire(ctx: click.Context, silence_id: str) -> None:
    """End a silence now."""
    result = _call(ctx, "expire", {"id": silence_id}, post=True)
    _emit(ctx, result, f"expired {result['expired']}")


@alerts.command()
@click.option("--rule", help="only this rule")
@click.option("--fingerprint", help="only this alert")
@click.option("--since", help="only the last DURATION, e.g. 24h")
@click.option("--limit", default=100, show_default=True, help="at most this many (newest)")
@click.pass_context
def history(
    ctx: click.Context, rule: str | None, fingerprint: str | None, since: str | None, limit: int
) -> None:
    """The audit trail: every transition and acknowledgement, oldest first."""
    params: dict[str, Any] = {"limit": limit}
    if rule:
        params["rule"] = rule
    if fingerprint:
        params["fingerprint"] = fingerprint
    if since:
        try:
            params["since"] = time.time_ns() - round(parse_duration(since) * 1e9)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    result = _call(ctx, "history", params)
    table = Table("at", "rule", "change", "value", "by", "labels", "id")
    for e in result["history"]:
        change = "ack" if e["kind"] == "ack" else f"{e['from']} → {e['to']}"
        value = "" if e["value"] is None else f"{e['value']:.4g}"
        table.add_row(
            e["at"], e["rule"], change, value, e["by"] or "", _labels(e["labels"]), e["fingerprint"]
        )
    _emit(ctx, result, table)


@alerts.command()
@click.pass_context
def outbox(ctx: click.Context) -> None:
    """Notification delivery: pending, delivered and dead (never deliverable) rows."""
    result = _call(ctx, "outbox", {})
    lines = [f"pending {result['pending']}, delivered {result['delivered']}, dead {result['dead']}"]
    for row in result["dead_rows"]:
        lines.append(f"dead: {row['channel']} {row['dedup_key']} ({row['last_error']})")
    _emit(ctx, result, "\n".join(lines))
