"""`revopipe loadtest URL ...`: run a load test from the shell with a live progress line,
print a summary, check thresholds, compare with a saved baseline, write a report.

Exit status: 0 all thresholds passed and no regression against the baseline; 1 a threshold
failed or the run regressed (or, with `--fail-on-history-regression`, the run history shows
a recent shift to worse); 2 bad arguments. CI gates on it like on k6.

Every completed run is also recorded in the run history (`history.py`), and
`revopipe loadtest-history NAME` lists the runs with their change points."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import click
import psutil
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from revopipe.config.errors import validation_text
from revopipe_plugins.loadtest.baseline import (
    BaselineError,
    BaselineStore,
    Comparison,
    Run,
    compare,
)
from revopipe_plugins.loadtest.history import (
    DB_FILE,
    DEFAULT_METRICS,
    DEFAULT_PVALUE,
    METRICS,
    Analysis,
    HistoryError,
    RecordedRun,
    RunHistory,
    analyse,
)
from revopipe_plugins.loadtest.plan import LoadTestPlan
from revopipe_plugins.loadtest.report import write_report
from revopipe_plugins.loadtest.run import LoadRun, Snapshot
from revopipe_plugins.loadtest.stages import PRESETS, drift
from revopipe_plugins.loadtest.thresholds import ThresholdResult, all_ok, evaluate


def _plan(options: dict[str, Any]) -> LoadTestPlan:
    try:
        return LoadTestPlan.model_validate({k: v for k, v in options.items() if v is not None})
    except ValidationError as exc:
        problems = validation_text(exc, "options")
        raise click.UsageError(problems) from None


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _live_text(snap: Snapshot) -> str:
    errors = sum(snap["errors"].values())
    lat = snap["latency"]
    rps = snap["requests"] / (snap["interval"] or 1.0)
    return (
        f"{rps:8.0f} req/s  p50 {_ms(lat['p50']):>10}  p99 {_ms(lat['p99']):>10}  "
        f"errors {errors:<6} target {snap['target']:.0f}"
    )


def _run(
    plan: LoadTestPlan, console: Console, quiet: bool, watch: psutil.Process | None
) -> tuple[dict[str, Any], list[Snapshot], bool]:
    """(summary, snapshots, whether Ctrl-C stopped the run early)."""
    duration = plan.schedule().duration
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stats]}"),
    )
    with LoadRun(plan) as run, Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task(f"{plan.test} ({plan.resolved_model})", total=duration, stats="")
        stopped = False
        try:
            for snap in run:
                if watch is not None:
                    # the server's memory, for the endurance test's drift
                    with contextlib.suppress(psutil.Error):
                        snap["memory_rss"] = watch.memory_info().rss
                progress.update(task, completed=min(snap["t"], duration), stats=_live_text(snap))
        except KeyboardInterrupt:
            # Ctrl-C ends the test early; the summary covers what ran.
            run.stop()
            stopped = True
            console.print("[yellow]stopped early (Ctrl-C); summarising what ran")
        return run.summary(), run.snapshots, stopped


def _summary_table(summary: dict[str, Any]) -> Table:
    table = Table("", "value", title="summary", show_header=False)
    elapsed = summary["interval"] or 1e-9
    errors = summary["errors"]
    table.add_row("requests", f"{summary['requests']} ({summary['ok']} ok)")
    table.add_row("throughput", f"{summary['requests'] / elapsed:.1f} req/s over {elapsed:.1f} s")
    table.add_row(
        "errors",
        ", ".join(f"{k} {v}" for k, v in errors.items() if v) or "none",
    )
    if summary.get("dropped"):
        table.add_row("dropped", f"{summary['dropped']} (connection pool exhausted)")
    lat = summary["latency"]
    for key in ("min", "mean", "p50", "p90", "p95", "p99", "p99_9", "max"):
        table.add_row(f"latency {key.replace('_', '.')}", _ms(lat[key]))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(summary["status"].items()))
    table.add_row("statuses", statuses or "none")
    return table


def _thresholds_table(results: list[ThresholdResult]) -> Table:
    table = Table("threshold", "observed", "result", title="thresholds")
    for r in results:
        table.add_row(r.text, r.observed_text, "[green]ok" if r.ok else "[bold red]FAILED")
    return table


def _comparison_table(name: str, c: Comparison) -> Table:
    table = Table("metric", "baseline", "current", "test", "p", "effect", "verdict")
    table.title = f"against baseline {name!r}: {c.verdict}"
    for m in c.metrics:
        unit = _ms if m.metric == "latency" else (lambda v: f"{v:.1f} req/s")
        table.add_row(
            m.metric + (" (p50)" if m.metric == "latency" else ""),
            unit(m.baseline),
            unit(m.current),
            m.test,
            f"{m.p_value:.3g}",
            f"{m.effect_name} {m.effect:+.3f} ({m.magnitude})",
            m.verdict + (f" — {m.note}" if m.note else ""),
        )
    return table


_DIRECTION_STYLE = {"regression": "bold red", "improvement": "green", "shift": "yellow"}


def _record(
    data_dir: Path,
    name: str,
    summary: dict[str, Any],
    started: float,
    plan: LoadTestPlan,
    pvalue: float,
    console: Console,
) -> Analysis | None:
    """Record the run, then look for change points across the test's runs. A history that
    cannot be written is a warning: the run itself happened and its gates still count."""
    try:
        with RunHistory.for_data_dir(data_dir) as store:
            store.record(name, summary, started=started, test=plan.test, model=plan.resolved_model)
            runs = store.runs(name)
    except HistoryError as exc:
        console.print(f"[yellow]{exc}")
        return None
    return analyse(runs, pvalue=pvalue)


def _print_history(console: Console, history: Analysis) -> None:
    if not history.ran:
        console.print(f"[dim]{history.message}")
        return
    if not history.recent:
        console.print(
            f"run history: no recent shift in {', '.join(history.metrics)} across "
            f"{history.runs} runs (E-divisive means, false-positive rate <= {history.pvalue:g})"
        )
    for shift in history.recent:
        console.print(shift.text(), style=_DIRECTION_STYLE[shift.direction], markup=False)


@click.command("loadtest")
@click.argument("urls", nargs=-1, required=True)
@click.option(
    "--type",
    "test",
    type=click.Choice([*PRESETS, "custom"]),
    default="load",
    show_default=True,
    help="the shape of the test (see the loadtest README)",
)
@click.option("--users", type=int, help="virtual users (closed model) / connection pool (open)")
@click.option("--rps", type=float, help="target arrivals per second: the open model")
@click.option("--duration", help="how long, e.g. 5m (default: the type's)")
@click.option("--stage", "stages", multiple=True, help="custom stage 'duration:target' (repeat)")
@click.option("--model", type=click.Choice(["closed", "open"]), help="override the model")
@click.option("--method", default="GET", show_default=True)
@click.option("--header", "-H", "headers", multiple=True, help="'Name: value' (repeat)")
@click.option("--body", help="request body")
@click.option("--body-file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--timeout", default="10s", show_default=True, help="per request")
@click.option("--think-time", default="0s", show_default=True, help="closed model pause")
@click.option("--expect", "expected", multiple=True, type=int, help="success status (repeat)")
@click.option("--threshold", "thresholds", multiple=True, help="e.g. 'p99 < 250ms' (repeat)")
@click.option("--name", help="the test's name, for baselines and the report (default: the URL)")
@click.option("--baseline", "use_baseline", is_flag=True, help="compare with the saved baseline")
@click.option("--save-baseline", is_flag=True, help="save this run as the test's baseline")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=".revopipe",
    show_default=True,
    help="where baselines and reports go",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="report file (.html or .png; default data_dir/loadtest/<name>-<time>.html)",
)
@click.option("--no-report", is_flag=True, help="write no report")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option("--watch-pid", type=int, help="track this process's memory (the server's)")
@click.option("--seed", type=int, default=0, show_default=True, help="request mix seed")
@click.option("--no-history", is_flag=True, help="do not record this run in the run history")
@click.option(
    "--history-pvalue",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=DEFAULT_PVALUE,
    show_default=True,
    help="false-positive rate of the change-point check across runs",
)
@click.option(
    "--fail-on-history-regression",
    is_flag=True,
    help="exit 1 when the run history shows a recent shift to worse",
)
def loadtest(
    urls: tuple[str, ...],
    test: str,
    users: int | None,
    rps: float | None,
    duration: str | None,
    stages: tuple[str, ...],
    model: str | None,
    method: str,
    headers: tuple[str, ...],
    body: str | None,
    body_file: Path | None,
    timeout: str,
    think_time: str,
    expected: tuple[int, ...],
    thresholds: tuple[str, ...],
    name: str | None,
    use_baseline: bool,
    save_baseline: bool,
    data_dir: Path,
    report_path: Path | None,
    no_report: bool,
    as_json: bool,
    watch_pid: int | None,
    seed: int,
    no_history: bool,
    history_pvalue: float,
    fail_on_history_regression: bool,
) -> None:
    """Load-test URLS (several: an equal mix) with the Rust generator."""
    header_map: dict[str, str] = {}
    for h in headers:
        key, sep, value = h.partition(":")
        if not sep or not key.strip():
            raise click.BadParameter(f"{h!r}: write 'Name: value'", param_hint="--header")
        header_map[key.strip()] = value.strip()
    request = {"method": method, "headers": header_map, "body": body, "body_file": body_file}
    options: dict[str, Any] = {
        "test": test,
        "users": users,
        "rps": rps,
        "duration": duration,
        "stages": list(stages),
        "model": model,
        "timeout": timeout,
        "think_time": think_time,
        "expected_status": list(expected) or None,
        "thresholds": list(thresholds),
        "seed": seed,
    }
    if len(urls) == 1:
        options.update(url=urls[0], **request)
    else:
        options["requests"] = [{"url": u, **request} for u in urls]
    plan = _plan(options)
    name = name or urls[0]
    console = Console(stderr=as_json)

    watch: psutil.Process | None = None
    if watch_pid is not None:
        try:
            watch = psutil.Process(watch_pid)
        except psutil.Error as exc:
            raise click.BadParameter(
                f"no process {watch_pid}: {exc}", param_hint="--watch-pid"
            ) from None
    started = time.time()
    summary, snapshots, stopped = _run(plan, console, as_json, watch)
    drifts = [
        d
        for d in (drift(snapshots, "latency.p99"), drift(snapshots, "memory_rss"))
        if d is not None and (plan.test == "endurance" or watch is not None)
    ]
    results = evaluate(plan.thresholds, summary)
    comparison: Comparison | None = None
    baseline_summary: dict[str, Any] | None = None
    run = Run.from_snapshots(summary, snapshots)
    try:
        with BaselineStore.for_data_dir(data_dir) as store:
            if use_baseline:
                saved = store.load(name)
                if saved is None:
                    console.print(
                        f"[yellow]no baseline named {name!r} in {data_dir}; save one with "
                        "--save-baseline"
                    )
                else:
                    comparison = compare(saved, run)
                    baseline_summary = saved.summary
            if save_baseline:
                store.save(
                    name, summary, list(run.per_second_rps), {"plan": plan.model_dump(mode="json")}
                )
    except BaselineError as exc:
        raise click.ClickException(f"loadtest baseline: {exc}") from None

    history: Analysis | None = None
    if not no_history:
        if stopped:
            # a run cut short is not comparable with the full runs of the same test
            console.print("[yellow]not recorded in the run history: the run was stopped early")
        else:
            history = _record(data_dir, name, summary, started, plan, history_pvalue, console)

    written: Path | None = None
    if not no_report:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
        target = report_path or data_dir / "loadtest" / f"{safe}-{stamp}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        written = write_report(
            target, summary, snapshots, results, comparison, baseline_summary, title=name
        )

    if as_json:
        out = {k: v for k, v in summary.items() if k != "latency_hdr"}
        out["thresholds"] = [{"text": r.text, "ok": r.ok, "observed": r.observed} for r in results]
        out["verdict"] = comparison.verdict if comparison else None
        if comparison is not None:
            out["comparison"] = {
                m.metric: {
                    "verdict": m.verdict,
                    "p_value": m.p_value,
                    "effect": m.effect,
                    "magnitude": m.magnitude,
                    "baseline": m.baseline,
                    "current": m.current,
                    **m.details,
                }
                for m in comparison.metrics
            }
        out["report"] = str(written) if written else None
        out["drift"] = {d.metric: {"first": d.first, "last": d.last} for d in drifts}
        out["history"] = history.to_json() if history is not None else None
        click.echo(json.dumps(out, indent=2))
    else:
        console.print(_summary_table(summary))
        if results:
            console.print(_thresholds_table(results))
        if comparison is not None:
            console.print(_comparison_table(name, comparison))
        for d in drifts:
            console.print(
                f"drift of {d.metric}: {d.first:.4g} over the first 10 % of the run, "
                f"{d.last:.4g} over the last ({d.relative:+.1%})"
            )
        if history is not None:
            _print_history(console, history)
        if written:
            console.print(f"report: {written}")
    failed = not all_ok(results) or (comparison is not None and comparison.verdict == "regressed")
    if fail_on_history_regression and history is not None and history.regressions:
        failed = True
    if failed:
        raise SystemExit(1)


def _history_table(name: str, runs: list[RecordedRun], history: Analysis) -> Table:
    """One row per run, numbers without units (in the headers) to fit 80 columns; the
    change points are marked on the run that starts each new regime, and spelled out
    below the table."""
    marks: dict[int, list[str]] = {}
    styles: dict[int, str] = {}
    for shift in history.shifts:
        change = f"{shift.magnitude:+.0%}" if math.isfinite(shift.magnitude) else "from 0"
        marks.setdefault(shift.run.seq, []).append(f"{shift.metric} {change}")
        if shift.direction == "regression" or shift.run.seq not in styles:
            styles[shift.run.seq] = _DIRECTION_STYLE[shift.direction]
    kinds = {(r.test, r.model) for r in runs}
    headers = ["#", "UTC", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors %", "shift"]
    if len(kinds) > 1:
        headers.insert(2, "type")
    table = Table(*headers, title=f"runs of {name!r}")

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1e3:.2f}"

    for r in runs:
        cells = [
            str(r.seq),
            dt.datetime.fromtimestamp(r.started, dt.UTC).strftime("%m-%d %H:%M"),
            f"{r.rps:.1f}",
            ms(r.p50),
            ms(r.p95),
            ms(r.p99),
            "-" if r.error_rate is None else f"{r.error_rate * 100:.2f}",
            ", ".join(marks.get(r.seq, [])),
        ]
        if len(kinds) > 1:
            cells.insert(2, f"{r.test}/{r.model}")
        table.add_row(*cells, style=styles.get(r.seq))
    return table


@click.command("loadtest-history")
@click.argument("name", required=False)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=".revopipe",
    show_default=True,
    help="the data_dir the runs were recorded under",
)
@click.option("--json", "as_json", is_flag=True, help="print the runs and change points as JSON")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    type=click.Choice(list(METRICS)),
    help=f"metric to look for change points in (repeat; default: {', '.join(DEFAULT_METRICS)})",
)
@click.option(
    "--pvalue",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=DEFAULT_PVALUE,
    show_default=True,
    help="false-positive rate of the change-point check (over all metrics)",
)
@click.option(
    "--last", type=click.IntRange(min=1), help="show only the last N runs (detection uses all)"
)
def loadtest_history(
    name: str | None,
    data_dir: Path,
    as_json: bool,
    metrics: tuple[str, ...],
    pvalue: float,
    last: int | None,
) -> None:
    """The recorded runs of load test NAME (its --name, default its URL) with the change
    points across them (E-divisive means); without NAME, the recorded names. Reads the
    SQLite file directly: no pipeline needs to run."""
    db = data_dir / DB_FILE
    if not db.exists():
        raise click.ClickException(
            f"loadtest-history: no run history at {db}; run `revopipe loadtest URL "
            f"--data-dir {data_dir}` first, or pass the --data-dir it used"
        )
    try:
        with RunHistory(db) as store:
            names = store.names()
            runs = store.runs(name) if name is not None else []
    except HistoryError as exc:
        raise click.ClickException(f"loadtest-history: {exc}") from None
    if name is None:
        if as_json:
            click.echo(json.dumps({"database": str(db), "names": names}, indent=2))
            return
        table = Table("name", "runs", title=f"load tests recorded in {db}")
        for n, count in names.items():
            table.add_row(n, str(count))
        Console().print(table)
        return
    if not runs:
        known = ", ".join(repr(n) for n in names) or "none"
        raise click.ClickException(
            f"loadtest-history: no runs named {name!r} in {db} (recorded: {known}); pass the "
            "--name (or URL) the runs used"
        )
    analysis = analyse(runs, metrics or DEFAULT_METRICS, pvalue=pvalue)
    shown = runs[-last:] if last else runs
    if as_json:
        out = {
            "name": name,
            "database": str(db),
            "runs": [r.to_json() for r in shown],
            "analysis": analysis.to_json(),
        }
        click.echo(json.dumps(out, indent=2))
        return
    console = Console()
    console.print(_history_table(name, shown, analysis))
    if not analysis.ran:
        console.print(f"[dim]{analysis.message}")
    elif not analysis.shifts:
        console.print(
            f"no change point in {', '.join(analysis.metrics)} across {analysis.runs} runs "
            f"(E-divisive means, false-positive rate <= {analysis.pvalue:g})"
        )
    for shift in analysis.shifts:
        # earlier change points are history; the one that started the current regime is news
        style = _DIRECTION_STYLE[shift.direction] if shift.recent else "dim"
        console.print(shift.text(), style=style, markup=False)
