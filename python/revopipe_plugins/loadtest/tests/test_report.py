from __future__ import annotations

import base64
import math
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

from revopipe_plugins.loadtest.baseline import Run, compare
from revopipe_plugins.loadtest.report import PNG_MAGIC, percentile_curve, write_report
from revopipe_plugins.loadtest.thresholds import evaluate

Snapshot = dict[str, Any]


def run_of(latencies: list[float], seconds: int = 20) -> tuple[Snapshot, list[Snapshot]]:
    """A summary and per-second snapshots shaped like the generator's."""
    hist = HdrHistogram(1, 3600 * 10**6, 3)
    for micros, count in Counter(max(1, round(v * 1e6)) for v in latencies).items():
        hist.record_value(micros, count)
    ordered = sorted(latencies)
    n = len(ordered)

    def q(p: float) -> float:
        return ordered[min(n - 1, int(p * n))] if n else 0.0

    latency = {
        "min": q(0),
        "mean": sum(ordered) / n if n else 0.0,
        "p50": q(0.5),
        "p90": q(0.9),
        "p95": q(0.95),
        "p99": q(0.99),
        "p99_9": q(0.999),
        "max": ordered[-1] if n else 0.0,
    }
    errors = {"connect": 0, "timeout": 2, "status": 5, "read": 0}
    summary = {
        "t": float(seconds),
        "interval": float(seconds),
        "requests": n,
        "ok": n - 7,
        "errors": errors,
        "bytes_received": 1000 * n,
        "target": 50.0,
        "active": 0,
        "dropped": 0,
        "latency_hdr": base64.b64decode(hist.encode()),
        "latency": latency,
        "status": {"200": n - 5, "500": 5},
    }
    per = n // seconds
    snapshots = [
        {
            **summary,
            "t": float(i + 1),
            "interval": 1.0,
            "requests": per if i else 0,
            "errors": {"connect": 0, "timeout": 0, "status": i % 2, "read": 0},
            "target": min(50.0, 10.0 * i),
        }
        for i in range(seconds)
    ]
    return summary, snapshots


def lognormal(seed: int, n: int, median: float) -> list[float]:
    rnd = random.Random(seed)
    return [median * math.exp(rnd.gauss(0, 0.6)) for _ in range(n)]


def embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', text)]


def test_html_report_holds_the_charts_and_the_numbers(tmp_path: Path) -> None:
    summary, snapshots = run_of(lognormal(1, 20_000, 0.020))
    base_summary, _ = run_of(lognormal(2, 20_000, 0.010))
    results = evaluate(["p99 < 250ms", "error_rate < 0.01%"], summary)
    comparison = compare(Run(base_summary, [1000.0] * 10), Run(summary, [1000.0, 1001.0] * 5))
    path = write_report(
        tmp_path / "out" / "report.html",
        summary,
        snapshots,
        results,
        comparison,
        baseline=base_summary,
        title="checkout <api>",
    )
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "checkout &lt;api&gt;" in text
    images = embedded_pngs(text)
    assert len(images) == 1 and images[0].startswith(PNG_MAGIC)
    assert "<td>20000</td>" in text  # requests
    assert "<td>1000.0</td>" in text  # req/s
    assert "p99 &lt; 250ms" in text and "pass" in text
    assert "error_rate &lt; 0.01%" in text and "FAIL" in text
    assert f"{summary['latency']['p50'] * 1000:.3g}ms" in text
    assert "Baseline comparison: regressed" in text
    assert "Cliff&#x27;s delta" in text and "Mann-Whitney U" in text
    assert not list(tmp_path.glob("out/.*tmp"))


def test_png_report(tmp_path: Path) -> None:
    summary, snapshots = run_of(lognormal(3, 5000, 0.005))
    path = write_report(tmp_path / "r.PNG", summary, snapshots, evaluate(["rps > 1"], summary))
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_a_run_without_requests_still_gets_a_report(tmp_path: Path) -> None:
    summary, snapshots = run_of([])
    text = write_report(tmp_path / "empty.html", summary, snapshots).read_text()
    assert len(embedded_pngs(text)) == 1
    assert "n/a" in text


def test_percentile_curve_follows_the_histogram() -> None:
    summary, _ = run_of(lognormal(4, 10_000, 0.010))
    points = percentile_curve(summary)
    qs = [q for q, _ in points]
    values = [v for _, v in points]
    assert qs == sorted(qs) and values == sorted(values) and qs[-1] == 1.0
    median = next(v for q, v in points if q >= 0.5)
    assert math.isclose(median, summary["latency"]["p50"], rel_tol=0.01)
    assert math.isclose(values[-1], summary["latency"]["max"], rel_tol=0.01)
