//! Windowed per-series aggregation with HDR percentiles, snapshot merging and a
//! cardinality guard.
//!
//! # Series and windows
//!
//! A series is a metric name with its tag set (tag order does not matter; it is identified
//! by its [`series_key`](crate::series_key), checked against the stored name and tags so a
//! hash collision cannot merge two series) *and* its kind: a counter and a gauge of the same
//! name and tags are two series. Its unit is the one of its first event (later events'
//! units are not compared); histogram values are recorded with the
//! [`resolution`](crate::resolution) of that unit.
//!
//! Windows are tumbling and aligned to the Unix epoch: the window of an event at `ts`
//! starts at `ts - ts.rem_euclid(window_ns)` and ends (exclusive) `window_ns` later, so an
//! event exactly on a boundary belongs to the window starting there.
//!
//! Non-finite values (NaN, ±inf) are ignored by every kind: not counted, not late, nothing.
//!
//! # What a window reports, by kind
//!
//! Every kind reports `count` (events), `sum`, `min` and `max` of the raw values of the
//! window (`sum` in arrival order, so exact up to f64 rounding).
//!
//! - **Histogram**: percentiles read from an HDR histogram ([`Hdr`]) of the recorded integers
//!   `round(value / resolution)` (negative values record as 0), converted back with
//!   [`from_recorded`](crate::resolution::from_recorded): within a relative error of
//!   `10^-significant_digits`, plus the resolution. The [`Hdr`] itself is part of the result
//!   (to ship as a snapshot). `last`, `increase`, `rate`, `distinct` are `None`.
//! - **Counter**: values are cumulative, monotonic totals (Prometheus semantics). The series
//!   remembers its last value across windows; each event adds `value - last` to the
//!   window's `increase` when `value >= last`, and `value` itself when it is lower (a
//!   counter reset, assumed to restart from 0). The very first event of a series is a
//!   baseline: increase 0. `rate` = increase / window length in seconds; `last` the last
//!   value. Dropped late events do not move the remembered value, so the increase they
//!   carried shows up in the next window. In the overflow series (below) the last value is
//!   remembered per original tag set (up to 100 000 of them; beyond that new tag sets only
//!   set a baseline).
//! - **Gauge**: `last` (the last event to arrive, whatever its timestamp), `min`, `max`,
//!   `count`, `sum` (so the mean is `sum / count`).
//! - **Set**: `distinct`, the exact number of distinct values (by f64 bit pattern, with
//!   `-0.0` taken as `0.0`). A window keeps at most 100 000 distinct values per series; past
//!   that, new values still count as events but `distinct` stops growing. `last` is the last
//!   value.
//!
//! A window in which a series had no event reports nothing for it.
//!
//! # Closing windows, late events
//!
//! [`Aggregator::flush`]`(now_ns, false)` closes every window whose end plus `grace_ns` is
//! at or before `now_ns` and returns their results (sorted by window start, then by series
//! creation order). The *watermark* is the end of the newest window closed so far (empty
//! windows included: after `flush(now)` every window ending at or before
//! `now - grace` is closed, whether it had events or not). `flush(now, true)` closes every
//! open window (a drain) and moves the watermark to the end of the newest one.
//!
//! An event whose window starts below the watermark is late: it is counted in
//! [`late_events`](Aggregator::late_events) and handled by the [`LatePolicy`]: dropped
//! (the default) or folded into the newest open window (any series'), or, if no window is
//! open, into the window of the last `flush`'s `now` (or the window starting at the
//! watermark if that is later). Events in the future are accepted like any other.
//!
//! # Cardinality guard
//!
//! A metric name has at most `max_series_per_metric` tag sets (per kind). The events of any
//! further tag set go into one overflow series of that name, with the single tag
//! `("revopipe.overflow", "true")`, and are counted in
//! [`overflow_events`](Aggregator::overflow_events). The overflow series does not count
//! against the cap. Series are kept for the aggregator's lifetime (counters need their last
//! value), so a name whose tag sets churn ends up all in its overflow series.
//!
//! # Snapshots
//!
//! [`Aggregator::merge_snapshot`] folds a histogram window of another instance (its count,
//! sum, min, max and encoded [`Hdr`]) into the window starting at `start_ns` (aligned down
//! to this aggregator's windows). The same lateness rules apply. With equal
//! `significant_digits`, merging the snapshots of N aggregators gives the same count, min,
//! max and histogram (bucket for bucket) as aggregating the union of their raw values, and
//! the same sum up to f64 rounding. Snapshots of another precision are merged into this
//! aggregator's precision (values keep the coarser of the two precisions).

mod acc;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::batch::MetricBatch;
use crate::hist::{Hdr, HdrError, HdrStaging};
use crate::kind::MetricKind;
use crate::resolution::{from_recorded, resolution_for_unit};
use crate::series::SeriesHasher;

use acc::{Acc, IdBuild};

/// The tag of the overflow series.
pub const OVERFLOW_TAG: (&str, &str) = ("revopipe.overflow", "true");

/// Original tag sets whose counter value an overflow series remembers at most.
const OVERFLOW_COUNTER_KEYS: usize = 100_000;

/// What to do with a late event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Count it and drop it.
    #[default]
    Drop,
    /// Count it and fold it into the newest open window.
    Current,
}

impl std::str::FromStr for LatePolicy {
    type Err = AggregateError;

    /// `"drop"` or `"current"`.
    fn from_str(s: &str) -> Result<LatePolicy, AggregateError> {
        match s {
            "drop" => Ok(LatePolicy::Drop),
            "current" => Ok(LatePolicy::Current),
            other => Err(AggregateError::Config(format!(
                "late_policy must be \"drop\" or \"current\", got {other:?}"
            ))),
        }
    }
}

/// How an [`Aggregator`] aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregatorConfig {
    /// The window length, in nanoseconds (> 0).
    pub window_ns: i64,
    /// How long after its end a window stays open, in nanoseconds (>= 0).
    pub grace_ns: i64,
    /// The histograms' significant decimal digits, `1..=5`.
    pub significant_digits: u8,
    /// The percentiles reported for histograms, each in `0.0..=100.0`.
    pub percentiles: Vec<f64>,
    /// Tag sets per metric name (and kind) before the overflow series takes the rest.
    pub max_series_per_metric: usize,
    /// What to do with late events.
    pub late_policy: LatePolicy,
}

impl Default for AggregatorConfig {
    /// 10 s windows, no grace, 3 digits, p50/90/95/99/99.9, 2000 series per metric, drop.
    fn default() -> Self {
        AggregatorConfig {
            window_ns: 10_000_000_000,
            grace_ns: 0,
            significant_digits: 3,
            percentiles: vec![50.0, 90.0, 95.0, 99.0, 99.9],
            max_series_per_metric: 2000,
            late_policy: LatePolicy::Drop,
        }
    }
}

/// Why an aggregator could not be made or a snapshot not be merged.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateError {
    /// An invalid [`AggregatorConfig`] field; the message names it.
    Config(String),
    /// An undecodable histogram snapshot.
    Snapshot(HdrError),
}

impl fmt::Display for AggregateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggregateError::Config(msg) => f.write_str(msg),
            AggregateError::Snapshot(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AggregateError {}

/// One series' aggregate over one closed window. See the [module docs](self) for which
/// fields each kind fills.
#[derive(Debug, Clone)]
pub struct WindowResult {
    pub name: String,
    pub unit: String,
    /// Sorted by key, then value.
    pub tags: Vec<(String, String)>,
    pub kind: MetricKind,
    pub start_ns: i64,
    /// Exclusive.
    pub end_ns: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Counter, gauge, set: the last value to arrive.
    pub last: Option<f64>,
    /// Counter: the sum of positive deltas (resets add the new value).
    pub increase: Option<f64>,
    /// Counter: `increase` per second of window.
    pub rate: Option<f64>,
    /// Set: distinct values.
    pub distinct: Option<u64>,
    /// Histogram: `(percentile, value)` for each configured percentile.
    pub percentiles: Vec<(f64, f64)>,
    /// Histogram: the recorded integers.
    pub hdr: Option<Hdr>,
}

struct Series {
    name: Box<str>,
    unit: Box<str>,
    /// Sorted.
    tags: Box<[(Box<str>, Box<str>)]>,
    kind: MetricKind,
    resolution: f64,
    /// Counter: the last value seen.
    counter_last: Option<f64>,
    /// Overflow counter: the last value per original series key.
    overflow_last: Option<HashMap<u64, f64, IdBuild>>,
    /// Open windows, by start.
    windows: Vec<(i64, Acc)>,
    /// Whether it is in `Aggregator::active`.
    active: bool,
}

impl Series {
    fn matches<S: AsRef<str>>(&self, name: &str, tags: &[(S, S)], kind: MetricKind) -> bool {
        if self.kind != kind || &*self.name != name || self.tags.len() != tags.len() {
            return false;
        }
        let own = |i: usize| (&*self.tags[i].0, &*self.tags[i].1);
        let theirs = |i: usize| (tags[i].0.as_ref(), tags[i].1.as_ref());
        if (0..tags.len()).all(|i| own(i) == theirs(i)) {
            return true;
        }
        // Another order: equal as multisets (tag sets are small).
        (0..tags.len()).all(|i| {
            let pair = theirs(i);
            let mine = self
                .tags
                .iter()
                .filter(|(k, v)| (&**k, &**v) == pair)
                .count();
            let given = (0..tags.len()).filter(|&j| theirs(j) == pair).count();
            mine == given
        })
    }
}

/// Windowed per-series aggregation; see the [module docs](self).
pub struct Aggregator {
    config: AggregatorConfig,
    hasher: SeriesHasher,
    series: Vec<Series>,
    /// Series key (mixed with the kind, probed on collision) → index in `series`.
    index: HashMap<u64, u32, IdBuild>,
    /// Tag sets per (name, kind) so far, the overflow series excluded.
    per_metric: HashMap<(Box<str>, MetricKind), usize>,
    /// Series with open windows.
    active: Vec<u32>,
    /// Open (series, window) pairs per window start.
    open_starts: BTreeMap<i64, usize>,
    watermark: i64,
    last_now: Option<i64>,
    late_events: u64,
    overflow_events: u64,
    staging: HdrStaging,
}

#[inline]
fn window_start(ts: i64, window_ns: i64) -> i64 {
    ts - ts.rem_euclid(window_ns)
}

#[inline]
fn kind_salt(kind: MetricKind) -> u64 {
    u64::from(kind.code()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Aggregator {
    /// An empty aggregator.
    ///
    /// # Errors
    /// [`AggregateError::Config`] if `window_ns <= 0`, `grace_ns < 0`,
    /// `significant_digits` is not in `1..=5` or a percentile is not in `0..=100`.
    pub fn new(config: AggregatorConfig) -> Result<Aggregator, AggregateError> {
        if config.window_ns <= 0 {
            return Err(AggregateError::Config(format!(
                "window_ns must be > 0, got {}",
                config.window_ns
            )));
        }
        if config.grace_ns < 0 {
            return Err(AggregateError::Config(format!(
                "grace_ns must be >= 0, got {}",
                config.grace_ns
            )));
        }
        if !(1..=5).contains(&config.significant_digits) {
            return Err(AggregateError::Config(format!(
                "significant_digits must be in 1..=5, got {}",
                config.significant_digits
            )));
        }
        if let Some(p) = config
            .percentiles
            .iter()
            .find(|p| !(0.0..=100.0).contains(*p))
        {
            return Err(AggregateError::Config(format!(
                "percentiles must be in 0..=100, got {p}"
            )));
        }
        Ok(Aggregator {
            config,
            hasher: SeriesHasher::new(),
            series: Vec::new(),
            index: HashMap::default(),
            per_metric: HashMap::new(),
            active: Vec::new(),
            open_starts: BTreeMap::new(),
            watermark: i64::MIN,
            last_now: None,
            late_events: 0,
            overflow_events: 0,
            staging: HdrStaging::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    /// Late events so far (dropped or folded, per the [`LatePolicy`]).
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// Events sent to an overflow series so far.
    pub fn overflow_events(&self) -> u64 {
        self.overflow_events
    }

    /// Series known (overflow series included).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The end of the newest closed window (`i64::MIN` before any flush).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Windows (distinct starts) holding events not yet flushed.
    pub fn open_windows(&self) -> usize {
        self.open_starts.len()
    }

    /// The window start for an event at `ts` (`n` events), or `None` to drop it.
    fn target_window(&mut self, ts: i64, n: u64) -> Option<i64> {
        let start = window_start(ts, self.config.window_ns);
        if start >= self.watermark {
            return Some(start);
        }
        self.late_events += n;
        match self.config.late_policy {
            LatePolicy::Drop => None,
            LatePolicy::Current => Some(match self.open_starts.last_key_value() {
                Some((&newest, _)) => newest,
                None => {
                    let now = self.last_now.unwrap_or(self.watermark);
                    window_start(now, self.config.window_ns).max(self.watermark)
                }
            }),
        }
    }

    /// The series for (name, tags, kind), made if new, or its overflow series; and the
    /// original key (for overflow counters).
    fn series_index<S: AsRef<str>>(
        &mut self,
        name: &str,
        unit: &str,
        tags: &[(S, S)],
        kind: MetricKind,
    ) -> (usize, u64) {
        let key = self.hasher.key(name, tags);
        let mut probe = key ^ kind_salt(kind);
        loop {
            match self.index.get(&probe) {
                Some(&i) if self.series[i as usize].matches(name, tags, kind) => {
                    return (i as usize, key);
                }
                Some(_) => probe = probe.wrapping_add(0x9E37_79B9_7F4A_7C15),
                None => break,
            }
        }
        // New tag set.
        let cap = self.config.max_series_per_metric;
        let seen = self.per_metric.entry((name.into(), kind)).or_insert(0);
        if *seen >= cap {
            self.overflow_events += 1;
            let overflow = [OVERFLOW_TAG];
            return (self.overflow_index(name, unit, &overflow, kind), key);
        }
        *seen += 1;
        (
            self.insert_series(probe, name, unit, tags, kind, false),
            key,
        )
    }

    fn overflow_index(
        &mut self,
        name: &str,
        unit: &str,
        overflow: &[(&str, &str)],
        kind: MetricKind,
    ) -> usize {
        let mut probe = self.hasher.key(name, overflow) ^ kind_salt(kind);
        loop {
            match self.index.get(&probe) {
                Some(&i) if self.series[i as usize].matches(name, overflow, kind) => {
                    return i as usize;
                }
                Some(_) => probe = probe.wrapping_add(0x9E37_79B9_7F4A_7C15),
                None => return self.insert_series(probe, name, unit, overflow, kind, true),
            }
        }
    }

    fn insert_series<S: AsRef<str>>(
        &mut self,
        probe: u64,
        name: &str,
        unit: &str,
        tags: &[(S, S)],
        kind: MetricKind,
        overflow: bool,
    ) -> usize {
        let mut sorted: Vec<(Box<str>, Box<str>)> = tags
            .iter()
            .map(|(k, v)| (k.as_ref().into(), v.as_ref().into()))
            .collect();
        sorted.sort_unstable();
        let i = self.series.len();
        self.series.push(Series {
            name: name.into(),
            unit: unit.into(),
            tags: sorted.into_boxed_slice(),
            kind,
            resolution: resolution_for_unit(unit),
            counter_last: None,
            overflow_last: (overflow && kind == MetricKind::Counter).then(HashMap::default),
            windows: Vec::new(),
            active: false,
        });
        self.index.insert(probe, i as u32);
        i
    }

    /// The accumulator of series `i` for the window starting at `start`, opened if new.
    fn acc(&mut self, i: usize, start: i64) -> &mut Acc {
        let series = &mut self.series[i];
        let pos = match series.windows.iter().position(|(s, _)| *s == start) {
            Some(pos) => pos,
            None => {
                *self.open_starts.entry(start).or_insert(0) += 1;
                if !series.active {
                    series.active = true;
                    self.active.push(i as u32);
                }
                let pos = series.windows.partition_point(|(s, _)| *s < start);
                series.windows.insert(pos, (start, Acc::new()));
                pos
            }
        };
        &mut series.windows[pos].1
    }

    /// Folds one event (finite `value`) into series `i`'s window at `start`.
    fn add_one(&mut self, i: usize, key: u64, start: i64, value: f64) {
        let sigfig = self.config.significant_digits;
        let series = &mut self.series[i];
        let kind = series.kind;
        let resolution = series.resolution;
        let delta = if kind == MetricKind::Counter {
            let last = match &mut series.overflow_last {
                Some(map) => {
                    let known = map.len() < OVERFLOW_COUNTER_KEYS || map.contains_key(&key);
                    let previous = map.get(&key).copied();
                    if known {
                        map.insert(key, value);
                    }
                    previous
                }
                None => series.counter_last.replace(value),
            };
            match last {
                None => 0.0,
                Some(last) if value >= last => value - last,
                Some(_) => value,
            }
        } else {
            0.0
        };
        let acc = self.acc(i, start);
        match kind {
            MetricKind::Histogram => acc.add_histogram(value, resolution, sigfig),
            MetricKind::Set => acc.add_set(value),
            MetricKind::Counter => {
                acc.add_raw(value);
                acc.increase += delta;
            }
            MetricKind::Gauge => acc.add_raw(value),
        }
    }

    /// Aggregates every row of a batch. Non-finite values are ignored.
    pub fn ingest<S, T>(&mut self, batch: &MetricBatch<'_, S, T>)
    where
        S: AsRef<str>,
        T: AsRef<[(S, S)]>,
    {
        let (names, units, tags) = (batch.names(), batch.units(), batch.tags());
        let (values, timestamps) = (batch.values(), batch.timestamps());
        // Consecutive rows of one series skip the lookup.
        let mut previous: Option<(usize, usize, u64)> = None;
        for row in 0..batch.len() {
            let value = values[row];
            if !value.is_finite() {
                continue;
            }
            let Some(start) = self.target_window(timestamps[row], 1) else {
                continue;
            };
            let kind = batch.kind(row);
            let (name, row_tags) = (names[row].as_ref(), tags[row].as_ref());
            let (i, key) = match previous {
                Some((prow, i, key))
                    if batch.kinds()[prow] == kind.code()
                        && names[prow].as_ref() == name
                        && tags_equal(tags[prow].as_ref(), row_tags) =>
                {
                    (i, key)
                }
                _ => {
                    let overflow_before = self.overflow_events;
                    let (i, key) = self.series_index(name, units[row].as_ref(), row_tags, kind);
                    // An overflowing row must be counted each time: no shortcut for it.
                    if self.overflow_events == overflow_before {
                        previous = Some((row, i, key));
                    } else {
                        previous = None;
                    }
                    (i, key)
                }
            };
            self.add_one(i, key, start, value);
        }
    }

    /// Aggregates many values of one histogram series at one timestamp: the fast path
    /// (one series lookup, then a tight loop). Non-finite values are ignored; each value
    /// is one event (for `late_events` and `overflow_events`).
    pub fn ingest_values<S: AsRef<str>>(
        &mut self,
        name: &str,
        unit: &str,
        tags: &[(S, S)],
        values: &[f64],
        timestamp_ns: i64,
    ) {
        let kind = MetricKind::Histogram;
        let finite = values.iter().filter(|v| v.is_finite()).count();
        if finite == 0 {
            return;
        }
        let Some(start) = self.target_window(timestamp_ns, finite as u64) else {
            return;
        };
        let overflow_before = self.overflow_events;
        let (i, _) = self.series_index(name, unit, tags, kind);
        if self.overflow_events != overflow_before {
            // One lookup for the whole call, yet every value is an overflowing event.
            self.overflow_events += finite as u64 - 1;
        }
        let sigfig = self.config.significant_digits;
        let resolution = self.series[i].resolution;
        let mut staging = std::mem::take(&mut self.staging);
        let acc = self.acc(i, start);
        if finite == values.len() {
            acc.add_histogram_values(values, resolution, sigfig, &mut staging);
        } else {
            let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
            acc.add_histogram_values(&finite, resolution, sigfig, &mut staging);
        }
        self.staging = staging;
    }

    /// Merges another instance's histogram window (see the [module docs](self)). A
    /// snapshot with `count == 0` is ignored.
    ///
    /// # Errors
    /// [`AggregateError::Snapshot`] if `hdr_base64` is not base64 of a (compressed) V2
    /// histogram; nothing is merged then.
    #[allow(clippy::too_many_arguments)]
    pub fn merge_snapshot<S: AsRef<str>>(
        &mut self,
        name: &str,
        unit: &str,
        tags: &[(S, S)],
        start_ns: i64,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        hdr_base64: &str,
    ) -> Result<(), AggregateError> {
        let hdr = Hdr::decode_base64(hdr_base64).map_err(AggregateError::Snapshot)?;
        self.merge_hdr(name, unit, tags, start_ns, count, sum, min, max, &hdr);
        Ok(())
    }

    /// [`merge_snapshot`](Self::merge_snapshot) with a decoded histogram.
    #[allow(clippy::too_many_arguments)]
    pub fn merge_hdr<S: AsRef<str>>(
        &mut self,
        name: &str,
        unit: &str,
        tags: &[(S, S)],
        start_ns: i64,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        hdr: &Hdr,
    ) {
        if count == 0 {
            return;
        }
        let Some(start) = self.target_window(start_ns, 1) else {
            return;
        };
        let sigfig = self.config.significant_digits;
        let (i, _) = self.series_index(name, unit, tags, MetricKind::Histogram);
        self.acc(i, start)
            .merge_histogram(count, sum, min, max, hdr, sigfig);
    }

    /// Closes the windows that end at or before `now_ns - grace_ns` (every open window
    /// when `force`) and returns their results, sorted by window start then series
    /// creation order. Windows without events report nothing.
    pub fn flush(&mut self, now_ns: i64, force: bool) -> Vec<WindowResult> {
        let w = self.config.window_ns;
        self.last_now = Some(self.last_now.map_or(now_ns, |last| last.max(now_ns)));
        let limit = if force {
            self.open_starts
                .last_key_value()
                .map_or(i64::MIN, |(&newest, _)| newest.saturating_add(w))
        } else {
            window_start(now_ns.saturating_sub(self.config.grace_ns), w)
        };
        self.watermark = self.watermark.max(limit);
        let watermark = self.watermark;
        let due = self
            .open_starts
            .first_key_value()
            .is_some_and(|(&oldest, _)| oldest < watermark);
        if !due {
            return Vec::new();
        }
        let mut out: Vec<(usize, WindowResult)> = Vec::new();
        let mut active = std::mem::take(&mut self.active);
        active.retain(|&i| {
            let series = &mut self.series[i as usize];
            let closing = series.windows.partition_point(|(s, _)| *s < watermark);
            let closed: Vec<(i64, Acc)> = series.windows.drain(..closing).collect();
            for (start, acc) in closed {
                if let Some(n) = self.open_starts.get_mut(&start) {
                    *n -= 1;
                    if *n == 0 {
                        self.open_starts.remove(&start);
                    }
                }
                out.push((
                    i as usize,
                    result(series, start, w, acc, &self.config.percentiles),
                ));
            }
            series.active = !series.windows.is_empty();
            series.active
        });
        self.active = active;
        out.sort_by_key(|(i, r)| (r.start_ns, *i));
        out.into_iter().map(|(_, r)| r).collect()
    }
}

fn tags_equal<S: AsRef<str>>(a: &[(S, S)], b: &[(S, S)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0.as_ref() == y.0.as_ref() && x.1.as_ref() == y.1.as_ref())
}

fn result(series: &Series, start: i64, w: i64, acc: Acc, percentiles: &[f64]) -> WindowResult {
    let kind = series.kind;
    let seconds = w as f64 / 1e9;
    let (last, increase, rate, distinct) = match kind {
        MetricKind::Histogram => (None, None, None, None),
        MetricKind::Counter => (
            Some(acc.last),
            Some(acc.increase),
            Some(acc.increase / seconds),
            None,
        ),
        MetricKind::Gauge => (Some(acc.last), None, None, None),
        MetricKind::Set => (
            Some(acc.last),
            None,
            None,
            Some(acc.set.as_ref().map_or(0, |s| s.len() as u64)),
        ),
    };
    let hdr = if kind == MetricKind::Histogram {
        Some(acc.hdr.unwrap_or_default())
    } else {
        None
    };
    let percentiles = match &hdr {
        Some(h) => percentiles
            .iter()
            .map(|&q| {
                (
                    q,
                    from_recorded(h.value_at_quantile(q / 100.0), series.resolution),
                )
            })
            .collect(),
        None => Vec::new(),
    };
    WindowResult {
        name: series.name.to_string(),
        unit: series.unit.to_string(),
        tags: series
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        kind,
        start_ns: start,
        end_ns: start.saturating_add(w),
        count: acc.count,
        sum: acc.sum,
        min: acc.min,
        max: acc.max,
        last,
        increase,
        rate,
        distinct,
        percentiles,
        hdr,
    }
}
