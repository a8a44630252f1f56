"""Batches: the unit components exchange.

A hook call costs about a microsecond, so components pass whole batches, never single
events. Metrics are held as columns (names, kinds, values, units, timestamps, tags) so the
Rust core can ingest a batch without touching one Python object per value; other events
travel as a tuple beside them.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from revopipe.acks import Ack
from revopipe.events import Event, Metric, MetricKind, Tags, make_tags, now_ns

_batch_ids = itertools.count(1)


class MetricBatch:
    """Metrics as parallel columns. Treat as immutable once built: build with
    `MetricBatchBuilder` or `MetricBatch.from_metrics`, transform with `select`/`with_tags`."""

    __slots__ = ("kinds", "names", "tags", "timestamps", "units", "values")

    def __init__(
        self,
        names: Sequence[str] = (),
        kinds: bytes = b"",
        values: array[float] | None = None,
        units: Sequence[str] = (),
        timestamps: array[int] | None = None,
        tags: Sequence[Tags] = (),
    ) -> None:
        self.names: tuple[str, ...] = tuple(names)
        self.kinds: bytes = bytes(kinds)
        self.values: array[float] = values if values is not None else array("d")
        self.units: tuple[str, ...] = tuple(units)
        self.timestamps: array[int] = timestamps if timestamps is not None else array("q")
        self.tags: tuple[Tags, ...] = tuple(tags)
        n = len(self.names)
        lengths = {
            len(self.kinds),
            len(self.values),
            len(self.units),
            len(self.timestamps),
            len(self.tags),
        }
        if lengths != {n}:
            raise ValueError(f"MetricBatch columns differ in length: {sorted(lengths | {n})}")

    @classmethod
    def from_metrics(cls, metrics: Iterable[Metric]) -> MetricBatch:
        b = MetricBatchBuilder()
        for m in metrics:
            b.add(m.name, m.value, m.kind, m.unit, m.tags, m.timestamp)
        return b.build()

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[Metric]:
        kinds = [MetricKind(k) for k in self.kinds]
        for i, name in enumerate(self.names):
            yield Metric(
                name=name,
                value=self.values[i],
                kind=kinds[i],
                unit=self.units[i],
                timestamp=self.timestamps[i],
                tags=self.tags[i],
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricBatch):
            return NotImplemented
        return (
            self.names == other.names
            and self.kinds == other.kinds
            and self.values == other.values
            and self.units == other.units
            and self.timestamps == other.timestamps
            and self.tags == other.tags
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MetricBatch(<{len(self)} metrics>)"

    def select(self, keep: Sequence[bool]) -> MetricBatch:
        """A new batch with the rows where `keep` is true."""
        if all(keep):
            return self
        idx = [i for i, k in enumerate(keep) if k]
        return MetricBatch(
            [self.names[i] for i in idx],
            bytes(self.kinds[i] for i in idx),
            array("d", (self.values[i] for i in idx)),
            [self.units[i] for i in idx],
            array("q", (self.timestamps[i] for i in idx)),
            [self.tags[i] for i in idx],
        )

    def with_tags(self, tags: Sequence[Tags]) -> MetricBatch:
        """A new batch sharing every column but the tags."""
        return MetricBatch(self.names, self.kinds, self.values, self.units, self.timestamps, tags)

    @staticmethod
    def concat(batches: Iterable[MetricBatch]) -> MetricBatch:
        b = MetricBatchBuilder()
        for mb in batches:
            b.extend(mb)
        return b.build()


class MetricBatchBuilder:
    """Appends rows column by column; `build()` hands the columns to a MetricBatch."""

    __slots__ = ("_kinds", "_names", "_tags", "_timestamps", "_units", "_values", "default_ts")

    def __init__(self, default_ts: int | None = None) -> None:
        self._names: list[str] = []
        self._kinds = bytearray()
        self._values: array[float] = array("d")
        self._units: list[str] = []
        self._timestamps: array[int] = array("q")
        self._tags: list[Tags] = []
        # One timestamp per collection pass: rows collected together share it.
        self.default_ts = now_ns() if default_ts is None else default_ts

    def add(
        self,
        name: str,
        value: float,
        kind: MetricKind = MetricKind.GAUGE,
        unit: str = "1",
        tags: Tags | Mapping[str, object] = (),
        timestamp: int | None = None,
    ) -> None:
        self._names.append(name)
        self._kinds.append(kind)
        self._values.append(value)
        self._units.append(unit)
        self._timestamps.append(self.default_ts if timestamp is None else timestamp)
        self._tags.append(tags if isinstance(tags, tuple) else make_tags(tags))

    def extend(self, batch: MetricBatch) -> None:
        self._names.extend(batch.names)
        self._kinds.extend(batch.kinds)
        self._values.extend(batch.values)
        self._units.extend(batch.units)
        self._timestamps.extend(batch.timestamps)
        self._tags.extend(batch.tags)

    def __len__(self) -> int:
        return len(self._names)

    def build(self) -> MetricBatch:
        return MetricBatch(
            self._names, bytes(self._kinds), self._values, self._units, self._timestamps, self._tags
        )


EMPTY_METRICS = MetricBatch()


@dataclass(frozen=True, slots=True)
class Batch:
    """What crosses an edge: columnar metrics plus any other events, with an id that
    stays the same as the batch is transformed so duplicates can be recognised.

    `origin` is a globally unique id given by whoever first took the batch in from
    outside (a message bus's message id), kept through transforms so a transport can
    deduplicate across processes. `acks` are the upstream deliveries waiting for this
    batch to be accepted (`revopipe.acks`); the runtime moves and releases them."""

    metrics: MetricBatch = field(default_factory=lambda: EMPTY_METRICS)
    events: tuple[Event, ...] = ()
    id: int = field(default_factory=lambda: next(_batch_ids))
    origin: str | None = None
    acks: tuple[Ack, ...] = field(default=(), compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.events)

    def replace(
        self, metrics: MetricBatch | None = None, events: tuple[Event, ...] | None = None
    ) -> Batch:
        return Batch(
            self.metrics if metrics is None else metrics,
            self.events if events is None else events,
            self.id,
            self.origin,
            self.acks,
        )

    def with_acks(self, acks: tuple[Ack, ...]) -> Batch:
        """The same batch carrying `acks` instead of its own."""
        return Batch(self.metrics, self.events, self.id, self.origin, acks)

    def iter_dicts(self) -> Iterator[dict[str, Any]]:
        """Every event as a plain dict, metrics first (slow path: for text sinks)."""
        for m in self.metrics:
            yield m.to_dict()
        for e in self.events:
            yield e.to_dict()

    @classmethod
    def of(cls, items: Iterable[Event]) -> Batch:
        """A batch from loose events; metrics are moved into the columns."""
        metrics: list[Metric] = []
        others: list[Event] = []
        for item in items:
            if isinstance(item, Metric):
                metrics.append(item)
            else:
                others.append(item)
        return cls(MetricBatch.from_metrics(metrics), tuple(others))
