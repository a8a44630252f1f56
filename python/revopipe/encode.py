"""Batch → JSON lines. Metrics are encoded by the Rust core in one call per batch (the
GIL is released while it works); the rarer non-metric events go through `json`."""

from __future__ import annotations

import json

from revopipe import _core
from revopipe.batch import Batch, MetricBatch


def metrics_jsonl(metrics: MetricBatch) -> bytes:
    if not len(metrics):
        return b""
    return _core.encode_jsonl(
        metrics.names,
        metrics.kinds,
        metrics.values,
        metrics.units,
        metrics.timestamps,
        metrics.tags,
    )


def batch_jsonl(batch: Batch) -> bytes:
    """Every event of the batch as one JSON object per line (metrics first)."""
    out = metrics_jsonl(batch.metrics)
    if batch.events:
        out += "".join(json.dumps(e.to_dict()) + "\n" for e in batch.events).encode()
    return out
