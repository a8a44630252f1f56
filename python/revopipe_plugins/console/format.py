"""The human-readable line format: `time name{tags} value unit`."""

from __future__ import annotations

import time
from collections.abc import Iterator

from revopipe.batch import Batch
from revopipe.events import MetricKind


def _stamp(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(secs)) + f".{frac // 1_000_000:03d}"


def text_lines(batch: Batch) -> Iterator[str]:
    m = batch.metrics
    stamp_cache: dict[int, str] = {}
    for i, name in enumerate(m.names):
        ts = m.timestamps[i]
        stamp = stamp_cache.get(ts)
        if stamp is None:
            stamp = stamp_cache[ts] = _stamp(ts)
        tags = m.tags[i]
        label = "{" + ",".join(f'{k}="{v}"' for k, v in tags) + "}" if tags else ""
        unit = m.units[i]
        kind = MetricKind(m.kinds[i]).label
        yield f"{stamp} {name}{label} {m.values[i]:.6g}{'' if unit == '1' else ' ' + unit} {kind}"
    for e in batch.events:
        d = e.to_dict()
        kind = d.pop("type")
        yield f"{kind}: " + " ".join(f"{k}={v}" for k, v in d.items())
