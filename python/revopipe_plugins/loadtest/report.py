"""One report file per load test run: HTML with embedded PNG charts, or a single PNG.

Charts (matplotlib, Agg canvas, no pyplot global state):

- the latency percentile distribution, HdrHistogram style: x = percentile on a 1/(1-q)
  log scale labelled 50 %, 90 %, 99 %, 99.9 % ..., y = latency in ms; read from the run's
  `latency_hdr` (and a baseline's, overlaid, when given);
- req/s over time with the scheduled target, errors per second, and p50/p99 per second.

The HTML also holds tables of the summary, the thresholds and the baseline comparison; a
PNG gets the key numbers as a text panel.
"""

from __future__ import annotations

import html
import io
import math
from base64 import b64encode
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revopipe_plugins.loadtest.baseline import Comparison, latency_bounds, latency_buckets
from revopipe_plugins.loadtest.thresholds import ThresholdResult, format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def percentile_curve(summary: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(q, latency seconds) points of the run's latency distribution: the fraction of
    requests at or below each bucket bound, read from `latency_hdr`."""
    if not summary.get("requests"):
        return []
    lat = summary["latency"]
    bounds = latency_bounds(float(lat["min"]), float(lat["max"]))
    counts = latency_buckets(summary, bounds)
    total = sum(counts)
    if total == 0:
        return []
    points = []
    seen = 0
    for bound, count in zip(bounds, counts, strict=True):
        if count == 0:
            continue
        seen += count
        points.append((seen / total, min(bound, float(lat["max"]))))
    return points


def _x(q: float, cap: float) -> float:
    return cap if q >= 1 else min(cap, 1 / (1 - q))


def _tick_label(x: float) -> str:
    q = 100 * (1 - 1 / x)
    return f"{q:.10g}%"


def _plot_percentiles(
    ax: Axes, summary: Mapping[str, Any], baseline: Mapping[str, Any] | None
) -> None:
    runs = [("this run", summary)]
    if baseline is not None:
        runs.insert(0, ("baseline", baseline))
    cap = 10.0
    curves = []
    for label, run in runs:
        points = percentile_curve(run)
        # The top tick: one decade past the last full "nines" the sample size supports.
        cap = max(cap, 10 ** math.ceil(math.log10(max(2, run.get("requests", 0)))))
        curves.append((label, points))
    for label, points in curves:
        if not points:
            continue
        xs = [1.0] + [_x(q, cap) for q, _ in points]
        ys = [points[0][1] * 1000] + [v * 1000 for _, v in points]
        ax.step(xs, ys, where="pre", label=label)
    ax.set_xscale("log")
    ticks = [10.0**k for k in range(round(math.log10(cap)) + 1)]
    ticks.insert(1, 2.0)
    ax.set_xticks(ticks, [_tick_label(t) if t > 1 else "0%" for t in ticks])
    ax.set_xlim(1, cap)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Latency by percentile")
    ax.grid(True, which="major", alpha=0.3)
    if any(points for _, points in curves):
        ax.legend(loc="upper left")


def _series(snapshots: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in ("t", "rps", "target", "errors", "p50", "p99")}
    for snap in snapshots:
        interval = float(snap.get("interval", 0.0)) or 1.0
        out["t"].append(float(snap.get("t", 0.0)))
        out["rps"].append(float(snap.get("requests", 0)) / interval)
        out["target"].append(float(snap.get("target", 0.0)))
        out["errors"].append(sum((snap.get("errors") or {}).values()) / interval)
        lat = snap.get("latency") or {}
        has = bool(snap.get("requests"))
        out["p50"].append(float(lat.get("p50", 0.0)) * 1000 if has else math.nan)
        out["p99"].append(float(lat.get("p99", 0.0)) * 1000 if has else math.nan)
    return out


def _plot_over_time(ax: Axes, lat_ax: Axes, snapshots: Sequence[Mapping[str, Any]]) -> None:
    s = _series(snapshots)
    ax.plot(s["t"], s["rps"], label="req/s", color="tab:blue")
    ax.plot(s["t"], s["errors"], label="errors/s", color="tab:red")
    ax.plot(s["t"], s["target"], label="target (users or rate)", color="gray", linestyle="--")
    ax.set_ylabel("per second")
    ax.set_title("Throughput and errors over time")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    lat_ax.plot(s["t"], s["p50"], label="p50", color="tab:green")
    lat_ax.plot(s["t"], s["p99"], label="p99", color="tab:orange")
    lat_ax.set_xlabel("seconds since start")
    lat_ax.set_ylabel("latency (ms)")
    lat_ax.set_title("Latency over time")
    lat_ax.grid(True, alpha=0.3)
    lat_ax.legend(loc="upper left")


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run's key numbers, formatted for people."""
    lat = summary.get("latency") or {}
    interval = float(summary.get("interval", 0.0))
    requests = int(summary.get("requests", 0))
    errors = summary.get("errors") or {}
    failed = sum(errors.values())
    rows = [
        ("duration", f"{interval:.1f}s"),
        ("requests", str(requests)),
        ("ok", str(summary.get("ok", requests - failed))),
        ("errors", f"{failed} ({', '.join(f'{k} {v}' for k, v in errors.items()) or 'none'})"),
        ("error rate", format_value("error_rate", failed / requests) if requests else "n/a"),
        ("req/s", f"{requests / interval:.1f}" if interval > 0 else "n/a"),
        ("dropped", str(summary.get("dropped", 0))),
        ("bytes received", str(summary.get("bytes_received", 0))),
    ]
    for key, label in (
        ("min", "min"),
        ("mean", "mean"),
        ("p50", "p50"),
        ("p90", "p90"),
        ("p95", "p95"),
        ("p99", "p99"),
        ("p99_9", "p99.9"),
        ("max", "max"),
    ):
        if key in lat and requests:
            rows.append((f"latency {label}", format_value("max", float(lat[key]))))
    status = summary.get("status") or {}
    if status:
        rows.append(("status", ", ".join(f"{k}: {v}" for k, v in sorted(status.items()))))
    return rows


def threshold_rows(results: Sequence[ThresholdResult]) -> list[tuple[str, str, str]]:
    return [(r.text, r.observed_text, "pass" if r.ok else "FAIL") for r in results]


def comparison_rows(comparison: Comparison) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for m in comparison.metrics:
        unit = "p50" if m.metric == "latency" else "mean req/s"
        if m.metric == "latency":
            base, cur = format_value("max", m.baseline), format_value("max", m.current)
        else:
            base, cur = f"{m.baseline:.1f}", f"{m.current:.1f}"
        change = m.details.get("p50_change" if m.metric == "latency" else "rps_change", 0.0)
        rows.append(
            (
                m.metric,
                m.verdict,
                f"{unit}: {base} -> {cur} ({change:+.1%})",
                f"{m.test} p={m.p_value:.3g}",
                f"{m.effect_name} {m.effect:+.3f} ({m.magnitude})",
                m.note,
            )
        )
    return rows


def _figure(
    summary: Mapping[str, Any],
    snapshots: Sequence[Mapping[str, Any]],
    baseline: Mapping[str, Any] | None,
    text_panel: str | None,
) -> Figure:
    from matplotlib.figure import Figure

    panels = 4 if text_panel is not None else 3
    fig = Figure(figsize=(10, 3.6 * panels), layout="constrained")
    axes = fig.subplots(panels, 1)
    _plot_percentiles(axes[0], summary, baseline)
    _plot_over_time(axes[1], axes[2], snapshots)
    if text_panel is not None:
        axes[3].axis("off")
        axes[3].text(0, 1, text_panel, family="monospace", va="top", fontsize=9)
    return fig


def _text_panel(
    summary: Mapping[str, Any],
    thresholds: Sequence[ThresholdResult] | None,
    comparison: Comparison | None,
) -> str:
    lines = [f"{k:<16} {v}" for k, v in summary_rows(summary)]
    if thresholds:
        lines.append("")
        lines += [
            f"{ok:<4}  {text}  (observed {obs})" for text, obs, ok in threshold_rows(thresholds)
        ]
    if comparison is not None:
        lines.append("")
        lines.append(f"vs baseline: {comparison.verdict}")
        lines += ["  " + "  ".join(filter(None, row)) for row in comparison_rows(comparison)]
    return "\n".join(lines)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }
th { background: #f3f3f3; }
.FAIL, .regressed { color: #b00; font-weight: bold; }
img { max-width: 100%; }
"""


def render_html(
    summary: Mapping[str, Any],
    snapshots: Sequence[Mapping[str, Any]],
    thresholds: Sequence[ThresholdResult] | None = None,
    comparison: Comparison | None = None,
    baseline: Mapping[str, Any] | None = None,
    title: str = "revopipe load test",
) -> str:
    image = b64encode(_png(_figure(summary, snapshots, baseline, None))).decode("ascii")
    parts = [
        "<!DOCTYPE html>",
        f'<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        _table(("", ""), summary_rows(summary)),
    ]
    if thresholds:
        verdict = "all passed" if all(r.ok for r in thresholds) else "FAILED"
        parts += [f"<h2>Thresholds: {verdict}</h2>"]
        parts.append(_table(("threshold", "observed", "result"), threshold_rows(thresholds)))
    if comparison is not None:
        parts.append(f"<h2>Baseline comparison: {html.escape(comparison.verdict)}</h2>")
        parts.append(
            _table(
                ("metric", "verdict", "change", "test", "effect size", "note"),
                comparison_rows(comparison),
            )
        )
        parts.append(
            f"<p>regressed/improved = significant at alpha {comparison.alpha:g} and the "
            "effect size not negligible.</p>"
        )
    parts += [
        "<h2>Charts</h2>",
        f'<img alt="latency percentiles and req/s over time" src="data:image/png;base64,{image}">',
        "</body></html>",
    ]
    return "\n".join(parts)


def render_png(
    summary: Mapping[str, Any],
    snapshots: Sequence[Mapping[str, Any]],
    thresholds: Sequence[ThresholdResult] | None = None,
    comparison: Comparison | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> bytes:
    return _png(_figure(summary, snapshots, baseline, _text_panel(summary, thresholds, comparison)))


def write_report(
    path: str | Path,
    summary: Mapping[str, Any],
    snapshots: Sequence[Mapping[str, Any]],
    thresholds: Sequence[ThresholdResult] | None = None,
    comparison: Comparison | None = None,
    baseline: Mapping[str, Any] | None = None,
    title: str = "revopipe load test",
) -> Path:
    """Write the report to `path`: a PNG when it ends in .png, else HTML. `baseline` (a
    baseline's summary) overlays its latency distribution. Written to a temporary file
    and renamed, so a failed render never leaves half a report."""
    target = Path(path)
    if target.suffix.lower() == ".png":
        data = render_png(summary, snapshots, thresholds, comparison, baseline)
    else:
        data = render_html(summary, snapshots, thresholds, comparison, baseline, title).encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
