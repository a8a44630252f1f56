//! In-process instruments: counters, gauges and histograms cheap enough for every request.
//!
//! - [`Counter`]: a monotonic total. Whole increments go to an integer `AtomicU64` (one
//!   `fetch_add`), fractional ones to an `f64` kept as bits in an `AtomicU64` (a CAS loop).
//! - [`Gauge`]: an `f64` kept as bits in an `AtomicU64`; `set` is a store, `add` a CAS loop.
//! - [`Histogram`]: a [`Hdr`] plus the exact count/sum/min/max behind one `Mutex`.
//!   Values are recorded as integers in units of `resolution_for_unit(unit)`.
//! - [`Registry`]: instruments keyed by (name, sorted tags); asking twice returns the same
//!   shared instrument, asking with another kind or unit is an [`InstrumentError`].
//!   [`Registry::collect`] snapshots them: counters cumulative, gauges current, histograms
//!   the delta since the previous collect. [`Registry::global`] is the process-wide one.
//!
//! Everything is `Send + Sync` and exact under any number of threads.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::hist::Hdr;
use crate::kind::MetricKind;
use crate::resolution::{resolution_for_unit, to_recorded};

/// 2^53: every whole `f64` below it converts to `u64` and back exactly.
const EXACT_INT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Why an instrument call was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum InstrumentError {
    /// The name and tags are already registered with another kind or unit.
    Conflict {
        /// The instrument's name.
        name: String,
        /// The kind it was registered with.
        kind: MetricKind,
        /// The unit it was registered with.
        unit: String,
        /// The kind asked for now.
        requested_kind: MetricKind,
        /// The unit asked for now.
        requested_unit: String,
    },
    /// A counter increment that is negative, NaN or infinite.
    InvalidIncrement(f64),
    /// Histogram precision outside `1..=5` significant digits.
    InvalidSignificantDigits(u8),
    /// An exemplar whose trace or span id is not W3C hex of the right length.
    BadExemplar {
        /// The histogram's name.
        name: String,
        /// The trace id given (cut short).
        trace_id: String,
        /// The span id given (cut short).
        span_id: String,
    },
}

impl fmt::Display for InstrumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstrumentError::Conflict {
                name,
                kind,
                unit,
                requested_kind,
                requested_unit,
            } => write!(
                f,
                "instrument {name:?} with these tags is already a {kind} with unit {unit:?}; \
                 cannot also be a {requested_kind} with unit {requested_unit:?}"
            ),
            InstrumentError::InvalidIncrement(amount) => write!(
                f,
                "a counter only goes up: increment must be finite and >= 0, got {amount}"
            ),
            InstrumentError::InvalidSignificantDigits(digits) => write!(
                f,
                "significant_digits must be between 1 and 5, got {digits}"
            ),
            InstrumentError::BadExemplar {
                name,
                trace_id,
                span_id,
            } => write!(
                f,
                "histogram {name:?}: exemplar needs a W3C trace id (32 lowercase hex digits) \
                 and span id (16), not all zero; got trace_id {trace_id:?}, span_id {span_id:?}"
            ),
        }
    }
}

impl Error for InstrumentError {}

/// Sorted (key, value) tag pairs.
pub type Tags = Vec<(String, String)>;

/// What identifies an instrument, plus its unit: shared by the instrument and its snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The metric name.
    pub name: String,
    /// The unit (UCUM-style, e.g. `"s"`, `"By"`, `"1"`).
    pub unit: String,
    /// The tags, sorted by key then value.
    pub tags: Tags,
}

/// Locks `m`, ignoring poisoning: every critical section below leaves the state valid.
#[inline]
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds `amount` to the `f64` stored as bits in `cell`.
#[inline]
fn add_f64(cell: &AtomicU64, amount: f64) {
    let mut current = cell.load(Relaxed);
    loop {
        let next = (f64::from_bits(current) + amount).to_bits();
        match cell.compare_exchange_weak(current, next, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// A monotonic total, reported cumulatively (never reset by a collect).
#[derive(Debug)]
pub struct Counter {
    meta: Arc<Meta>,
    /// The sum of the whole increments below 2^53.
    ints: AtomicU64,
    /// The sum of the other increments, as `f64` bits.
    floats: AtomicU64,
}

impl Counter {
    fn new(meta: Arc<Meta>) -> Counter {
        Counter {
            meta,
            ints: AtomicU64::new(0),
            floats: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Adds `amount`, which must be finite and `>= 0`.
    #[inline]
    pub fn inc(&self, amount: f64) -> Result<(), InstrumentError> {
        // `as u64` saturates, so the round trip only holds for whole values in range.
        let whole = amount as u64;
        if whole as f64 == amount && amount < EXACT_INT_LIMIT {
            self.ints.fetch_add(whole, Relaxed);
            Ok(())
        } else if amount >= 0.0 && amount.is_finite() {
            add_f64(&self.floats, amount);
            Ok(())
        } else {
            Err(InstrumentError::InvalidIncrement(amount))
        }
    }

    /// Adds one.
    #[inline]
    pub fn inc_one(&self) {
        self.ints.fetch_add(1, Relaxed);
    }

    /// The total since creation.
    pub fn value(&self) -> f64 {
        self.ints.load(Relaxed) as f64 + f64::from_bits(self.floats.load(Relaxed))
    }

    /// Name, unit and tags.
    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }
}

/// A value that goes up and down, reported as its current value.
#[derive(Debug)]
pub struct Gauge {
    meta: Arc<Meta>,
    bits: AtomicU64,
}

impl Gauge {
    fn new(meta: Arc<Meta>) -> Gauge {
        Gauge {
            meta,
            bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Replaces the value.
    #[inline]
    pub fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Relaxed);
    }

    /// Adds `amount` (negative to subtract) atomically.
    #[inline]
    pub fn add(&self, amount: f64) {
        add_f64(&self.bits, amount);
    }

    /// The current value.
    pub fn value(&self) -> f64 {
        f64::from_bits(self.bits.load(Relaxed))
    }

    /// Name, unit and tags.
    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }
}

/// Exemplars a histogram keeps per window: one per power-of-two range of values, so the
/// slow tail keeps its own exemplar however many fast requests follow it.
const MAX_EXEMPLARS: usize = 16;

/// One observation tied to the trace that produced it (an OpenMetrics exemplar).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The observed value, in the histogram's unit.
    pub value: f64,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// W3C span id, 16 lowercase hex digits.
    pub span_id: String,
    /// When it was recorded, ns since the Unix epoch.
    pub timestamp_ns: i64,
}

/// The power-of-two range of `value` (its binary exponent), which picks its exemplar slot.
fn exemplar_slot(value: f64) -> i32 {
    if value > 0.0 {
        value.log2().floor() as i32
    } else {
        i32::MIN
    }
}

fn is_hex_id(id: &str, len: usize) -> bool {
    id.len() == len
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0')
}

fn now_unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What a histogram holds between two collects.
#[derive(Debug)]
struct Window {
    hdr: Hdr,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    exemplars: Vec<(i32, Exemplar)>,
}

impl Window {
    fn new(hdr: Hdr) -> Window {
        Window {
            hdr,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            exemplars: Vec::new(),
        }
    }

    fn add(&mut self, value: f64, recorded: u64) {
        self.hdr.record(recorded);
        self.count += 1;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Keeps `e` as the latest exemplar of its slot; when every slot is taken by other
    /// ranges, it replaces the oldest, so the window always shows recent traces.
    fn keep_exemplar(&mut self, e: Exemplar) {
        let slot = exemplar_slot(e.value);
        if let Some(held) = self.exemplars.iter_mut().find(|(s, _)| *s == slot) {
            held.1 = e;
        } else if self.exemplars.len() < MAX_EXEMPLARS {
            self.exemplars.push((slot, e));
        } else if let Some(oldest) = self
            .exemplars
            .iter_mut()
            .min_by_key(|(_, held)| held.timestamp_ns)
        {
            *oldest = (slot, e);
        }
    }
}

#[derive(Debug)]
struct HistState {
    window: Window,
    /// Values recorded since creation.
    total: u64,
}

/// A distribution of observations, reported as the delta since the previous collect.
#[derive(Debug)]
pub struct Histogram {
    meta: Arc<Meta>,
    resolution: f64,
    significant_digits: u8,
    state: Mutex<HistState>,
}

impl Histogram {
    fn new(meta: Arc<Meta>, significant_digits: u8) -> Histogram {
        let resolution = resolution_for_unit(&meta.unit);
        Histogram {
            meta,
            resolution,
            significant_digits,
            state: Mutex::new(HistState {
                window: Window::new(Hdr::new(significant_digits)),
                total: 0,
            }),
        }
    }

    /// Records one observation. NaN and infinities are ignored; the Hdr holds the value in
    /// units of [`Histogram::resolution`] (negative values as 0), count/sum/min/max hold it
    /// exactly.
    #[inline]
    pub fn record(&self, value: f64) {
        if !value.is_finite() {
            return;
        }
        let recorded = to_recorded(value, self.resolution);
        let mut s = lock(&self.state);
        s.total += 1;
        s.window.add(value, recorded);
    }

    /// Records one observation like [`Histogram::record`] and keeps it as an exemplar of
    /// the trace `trace_id` / span `span_id` (W3C hex ids, lowercase, not all zero).
    pub fn record_exemplar(
        &self,
        value: f64,
        trace_id: &str,
        span_id: &str,
    ) -> Result<(), InstrumentError> {
        if !is_hex_id(trace_id, 32) || !is_hex_id(span_id, 16) {
            return Err(InstrumentError::BadExemplar {
                name: self.meta.name.clone(),
                trace_id: trace_id.chars().take(40).collect(),
                span_id: span_id.chars().take(24).collect(),
            });
        }
        if !value.is_finite() {
            return Ok(());
        }
        let exemplar = Exemplar {
            value,
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            timestamp_ns: now_unix_ns(),
        };
        let recorded = to_recorded(value, self.resolution);
        let mut s = lock(&self.state);
        s.total += 1;
        s.window.add(value, recorded);
        s.window.keep_exemplar(exemplar);
        Ok(())
    }

    /// Observations recorded since creation (collects do not reset it).
    pub fn count(&self) -> u64 {
        lock(&self.state).total
    }

    /// The size of one Hdr unit, in the histogram's unit.
    pub fn resolution(&self) -> f64 {
        self.resolution
    }

    /// The Hdr precision.
    pub fn significant_digits(&self) -> u8 {
        self.significant_digits
    }

    /// Name, unit and tags.
    pub fn meta(&self) -> &Arc<Meta> {
        &self.meta
    }

    /// Swaps the window for `fresh` (an empty Hdr) if anything was recorded since the last
    /// take; gives `fresh` back otherwise.
    fn take(&self, fresh: Hdr) -> Result<HistogramDelta, Hdr> {
        let mut s = lock(&self.state);
        if s.window.count == 0 {
            return Err(fresh);
        }
        let w = std::mem::replace(&mut s.window, Window::new(fresh));
        drop(s);
        let mut exemplars: Vec<Exemplar> = w.exemplars.into_iter().map(|(_, e)| e).collect();
        exemplars.sort_by(|a, b| a.value.total_cmp(&b.value));
        Ok(HistogramDelta {
            count: w.count,
            sum: w.sum,
            min: w.min,
            max: w.max,
            hdr: w.hdr,
            resolution: self.resolution,
            exemplars,
        })
    }
}

/// A histogram's observations between two collects.
#[derive(Debug)]
pub struct HistogramDelta {
    /// How many.
    pub count: u64,
    /// Their exact sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
    /// Their distribution, in units of `resolution`.
    pub hdr: Hdr,
    /// The size of one Hdr unit, in the histogram's unit.
    pub resolution: f64,
    /// Observations recorded with their trace, by increasing value (at most one per
    /// power-of-two range, the latest of each).
    pub exemplars: Vec<Exemplar>,
}

/// One instrument in the registry.
#[derive(Debug, Clone)]
pub enum Instrument {
    /// A counter.
    Counter(Arc<Counter>),
    /// A gauge.
    Gauge(Arc<Gauge>),
    /// A histogram.
    Histogram(Arc<Histogram>),
}

impl Instrument {
    /// Its kind.
    pub fn kind(&self) -> MetricKind {
        match self {
            Instrument::Counter(_) => MetricKind::Counter,
            Instrument::Gauge(_) => MetricKind::Gauge,
            Instrument::Histogram(_) => MetricKind::Histogram,
        }
    }

    /// Name, unit and tags.
    pub fn meta(&self) -> &Arc<Meta> {
        match self {
            Instrument::Counter(c) => c.meta(),
            Instrument::Gauge(g) => g.meta(),
            Instrument::Histogram(h) => h.meta(),
        }
    }
}

/// What a collect read from one instrument.
#[derive(Debug)]
pub enum Reading {
    /// A counter's cumulative total or a gauge's current value.
    Value(f64),
    /// A histogram's observations since the previous collect.
    Histogram(HistogramDelta),
}

/// One instrument as seen by [`Registry::collect`].
#[derive(Debug)]
pub struct Snapshot {
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// Name, unit and tags.
    pub meta: Arc<Meta>,
    /// The reading.
    pub reading: Reading,
}

type Key = (String, Tags);

#[derive(Debug, Default)]
struct Entries {
    index: HashMap<Key, usize>,
    list: Vec<Instrument>,
}

/// Instruments keyed by (name, sorted tags), in order of creation.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Mutex<Entries>,
}

fn sorted_tags<I, K, V>(tags: I) -> Tags
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let mut tags: Tags = tags
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    tags.sort_unstable();
    tags
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The process-wide registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// The instrument for (name, tags), created by `make` if there is none yet; an error
    /// if it exists with another kind or unit.
    fn get_or_insert(
        &self,
        kind: MetricKind,
        name: &str,
        unit: &str,
        tags: Tags,
        make: impl FnOnce(Arc<Meta>) -> Instrument,
    ) -> Result<Instrument, InstrumentError> {
        let key = (name.to_owned(), tags);
        let mut entries = lock(&self.entries);
        if let Some(&i) = entries.index.get(&key) {
            let found = &entries.list[i];
            let meta = found.meta();
            if found.kind() != kind || meta.unit != unit {
                return Err(InstrumentError::Conflict {
                    name: meta.name.clone(),
                    kind: found.kind(),
                    unit: meta.unit.clone(),
                    requested_kind: kind,
                    requested_unit: unit.to_owned(),
                });
            }
            return Ok(found.clone());
        }
        let meta = Arc::new(Meta {
            name: key.0.clone(),
            unit: unit.to_owned(),
            tags: key.1.clone(),
        });
        let instrument = make(meta);
        let i = entries.list.len();
        entries.list.push(instrument.clone());
        entries.index.insert(key, i);
        Ok(instrument)
    }

    /// The counter (name, tags), created on first use.
    pub fn counter<I, K, V>(
        &self,
        name: &str,
        unit: &str,
        tags: I,
    ) -> Result<Arc<Counter>, InstrumentError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let tags = sorted_tags(tags);
        let make = |meta| Instrument::Counter(Arc::new(Counter::new(meta)));
        match self.get_or_insert(MetricKind::Counter, name, unit, tags, make)? {
            Instrument::Counter(c) => Ok(c),
            _ => unreachable!("kind checked by get_or_insert"),
        }
    }

    /// The gauge (name, tags), created on first use.
    pub fn gauge<I, K, V>(
        &self,
        name: &str,
        unit: &str,
        tags: I,
    ) -> Result<Arc<Gauge>, InstrumentError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let tags = sorted_tags(tags);
        let make = |meta| Instrument::Gauge(Arc::new(Gauge::new(meta)));
        match self.get_or_insert(MetricKind::Gauge, name, unit, tags, make)? {
            Instrument::Gauge(g) => Ok(g),
            _ => unreachable!("kind checked by get_or_insert"),
        }
    }

    /// The histogram (name, tags), created on first use with `significant_digits` (1..=5)
    /// of precision; a later call with other digits gets the existing histogram.
    pub fn histogram<I, K, V>(
        &self,
        name: &str,
        unit: &str,
        tags: I,
        significant_digits: u8,
    ) -> Result<Arc<Histogram>, InstrumentError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        if !(1..=5).contains(&significant_digits) {
            return Err(InstrumentError::InvalidSignificantDigits(
                significant_digits,
            ));
        }
        let tags = sorted_tags(tags);
        let make = |meta| Instrument::Histogram(Arc::new(Histogram::new(meta, significant_digits)));
        match self.get_or_insert(MetricKind::Histogram, name, unit, tags, make)? {
            Instrument::Histogram(h) => Ok(h),
            _ => unreachable!("kind checked by get_or_insert"),
        }
    }

    /// Every instrument, in order of creation.
    pub fn instruments(&self) -> Vec<Instrument> {
        lock(&self.entries).list.clone()
    }

    /// How many instruments are registered.
    pub fn len(&self) -> usize {
        lock(&self.entries).list.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every instrument. Handles already given out keep working but are no longer
    /// collected; asking again creates new ones.
    pub fn reset(&self) {
        let mut entries = lock(&self.entries);
        entries.index.clear();
        entries.list.clear();
    }

    /// Reads every instrument, in order of creation: counters as their cumulative total,
    /// gauges as their current value, histograms as what was recorded since the previous
    /// collect (each swapped out atomically; histograms with nothing new are left out).
    pub fn collect(&self) -> Vec<Snapshot> {
        let instruments = self.instruments();
        let mut out = Vec::with_capacity(instruments.len());
        let mut spare: Option<Hdr> = None;
        for instrument in instruments {
            let kind = instrument.kind();
            let reading = match &instrument {
                Instrument::Counter(c) => Reading::Value(c.value()),
                Instrument::Gauge(g) => Reading::Value(g.value()),
                Instrument::Histogram(h) => {
                    // allocate the replacement outside the lock; reuse it if not needed
                    let fresh = match spare.take() {
                        Some(hdr) if hdr.sigfig() == h.significant_digits() => hdr,
                        _ => Hdr::new(h.significant_digits()),
                    };
                    match h.take(fresh) {
                        Ok(delta) => Reading::Histogram(delta),
                        Err(unused) => {
                            spare = Some(unused);
                            continue;
                        }
                    }
                }
            };
            out.push(Snapshot {
                kind,
                meta: Arc::clone(instrument.meta()),
                reading,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_TAGS: [(&str, &str); 0] = [];

    #[test]
    fn same_name_and_tags_share_state() {
        let r = Registry::new();
        let a = r.counter("c", "1", [("b", "2"), ("a", "1")]).unwrap();
        let b = r.counter("c", "1", [("a", "1"), ("b", "2")]).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            a.meta().tags,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        let other = r.counter("c", "1", [("a", "1")]).unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        let h1 = r.histogram("h", "s", NO_TAGS, 3).unwrap();
        let h2 = r.histogram("h", "s", NO_TAGS, 2).unwrap();
        assert!(Arc::ptr_eq(&h1, &h2));
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn kind_or_unit_conflicts_are_errors() {
        let r = Registry::new();
        r.counter("x", "1", NO_TAGS).unwrap();
        let err = r.gauge("x", "1", NO_TAGS).unwrap_err();
        assert!(matches!(
            err,
            InstrumentError::Conflict {
                kind: MetricKind::Counter,
                requested_kind: MetricKind::Gauge,
                ..
            }
        ));
        assert!(err.to_string().contains("already a counter"));
        assert!(r.counter("x", "By", NO_TAGS).is_err());
        assert!(r.histogram("x", "1", NO_TAGS, 3).is_err());
        // other tags: another series, no conflict
        r.gauge("x", "1", [("k", "v")]).unwrap();
        assert_eq!(
            r.histogram("y", "s", NO_TAGS, 0).unwrap_err(),
            InstrumentError::InvalidSignificantDigits(0)
        );
        assert!(r.histogram("y", "s", NO_TAGS, 6).is_err());
    }

    #[test]
    fn counter_rejects_negative_and_non_finite() {
        let r = Registry::new();
        let c = r.counter("c", "1", NO_TAGS).unwrap();
        for bad in [-1.0, -0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(c.inc(bad).is_err(), "{bad}");
        }
        c.inc(0.0).unwrap();
        c.inc(-0.0).unwrap();
        c.inc(2.0).unwrap();
        c.inc(0.5).unwrap();
        c.inc(1e300).unwrap();
        c.inc_one();
        assert_eq!(c.value(), 1e300 + 3.5);
        let d = r.counter("d", "1", NO_TAGS).unwrap();
        d.inc(2.0).unwrap();
        d.inc(0.25).unwrap();
        d.inc_one();
        assert_eq!(d.value(), 3.25);
    }

    #[test]
    fn gauge_set_and_add() {
        let r = Registry::new();
        let g = r.gauge("g", "By", NO_TAGS).unwrap();
        assert_eq!(g.value(), 0.0);
        g.set(10.0);
        g.add(2.5);
        g.add(-5.0);
        assert_eq!(g.value(), 7.5);
    }

    fn value_of(snaps: &[Snapshot], name: &str) -> Option<f64> {
        snaps
            .iter()
            .find(|s| s.meta.name == name)
            .map(|s| match s.reading {
                Reading::Value(v) => v,
                Reading::Histogram(_) => panic!("not a value"),
            })
    }

    fn delta_of<'a>(snaps: &'a [Snapshot], name: &str) -> Option<&'a HistogramDelta> {
        snaps
            .iter()
            .find(|s| s.meta.name == name)
            .map(|s| match &s.reading {
                Reading::Histogram(d) => d,
                Reading::Value(_) => panic!("not a histogram"),
            })
    }

    #[test]
    fn collect_is_cumulative_for_counters_and_delta_for_histograms() {
        let r = Registry::new();
        let c = r.counter("c", "1", NO_TAGS).unwrap();
        let g = r.gauge("g", "1", NO_TAGS).unwrap();
        let h = r.histogram("h", "s", [("route", "/")], 3).unwrap();
        c.inc(3.0).unwrap();
        g.set(-4.0);
        for v in [0.5, 0.25, 2.0] {
            h.record(v);
        }
        let first = r.collect();
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].kind, MetricKind::Counter);
        assert_eq!(first[1].kind, MetricKind::Gauge);
        assert_eq!(first[2].kind, MetricKind::Histogram);
        assert_eq!(value_of(&first, "c"), Some(3.0));
        assert_eq!(value_of(&first, "g"), Some(-4.0));
        let d = delta_of(&first, "h").unwrap();
        assert_eq!((d.count, d.sum, d.min, d.max), (3, 2.75, 0.25, 2.0));
        assert_eq!(d.hdr.count(), 3);
        assert_eq!(d.resolution, h.resolution());

        c.inc(1.0).unwrap();
        let second = r.collect();
        assert_eq!(second.len(), 2, "a histogram with nothing new is left out");
        assert_eq!(value_of(&second, "c"), Some(4.0));
        assert!(delta_of(&second, "h").is_none());

        h.record(1.0);
        let third = r.collect();
        let d = delta_of(&third, "h").unwrap();
        assert_eq!((d.count, d.sum, d.min, d.max), (1, 1.0, 1.0, 1.0));
        assert_eq!(d.hdr.count(), 1);
        assert_eq!(h.count(), 4, "count is since creation");
    }

    #[test]
    fn non_finite_values_are_not_recorded() {
        let r = Registry::new();
        let h = r.histogram("h", "s", NO_TAGS, 3).unwrap();
        h.record(f64::NAN);
        h.record(f64::INFINITY);
        h.record(f64::NEG_INFINITY);
        assert_eq!(h.count(), 0);
        assert!(r.collect().is_empty());
    }

    #[test]
    fn exemplars_keep_the_latest_per_power_of_two_range() {
        let reg = Registry::new();
        let h = reg.histogram("lat", "s", NO_TAGS, 3).unwrap();
        let trace = |i: u32| format!("{i:032x}");
        let span = |i: u32| format!("{i:016x}");
        h.record_exemplar(0.010, &trace(1), &span(1)).unwrap();
        h.record_exemplar(0.012, &trace(2), &span(2)).unwrap(); // same range as 0.010
        h.record_exemplar(3.0, &trace(3), &span(3)).unwrap();
        h.record(0.5);
        let snaps = reg.collect();
        let d = delta_of(&snaps, "lat").unwrap();
        assert_eq!(d.count, 4);
        let got: Vec<(f64, &str)> = d
            .exemplars
            .iter()
            .map(|e| (e.value, e.trace_id.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![(0.012, trace(2).as_str()), (3.0, trace(3).as_str())]
        );
        // the next window starts without exemplars
        h.record(1.0);
        let snaps = reg.collect();
        assert!(delta_of(&snaps, "lat").unwrap().exemplars.is_empty());
    }

    #[test]
    fn exemplars_are_bounded_and_ids_checked() {
        let reg = Registry::new();
        let h = reg.histogram("lat", "s", NO_TAGS, 3).unwrap();
        for i in 0..100u32 {
            let v = 2f64.powi(i as i32 - 50);
            h.record_exemplar(v, &format!("{:032x}", i + 1), "00000000000000aa")
                .unwrap();
        }
        assert!(h.record_exemplar(1.0, "xyz", "00000000000000aa").is_err());
        assert!(h
            .record_exemplar(1.0, &"0".repeat(32), "00000000000000aa")
            .is_err());
        assert!(h
            .record_exemplar(1.0, &"A".repeat(32), "00000000000000aa")
            .is_err());
        let snaps = reg.collect();
        let d = delta_of(&snaps, "lat").unwrap();
        assert_eq!(d.count, 100);
        assert_eq!(d.exemplars.len(), MAX_EXEMPLARS);
    }

    #[test]
    fn reset_forgets_instruments() {
        let r = Registry::new();
        let a = r.counter("c", "1", NO_TAGS).unwrap();
        r.reset();
        assert!(r.is_empty());
        assert!(r.collect().is_empty());
        let b = r.gauge("c", "1", NO_TAGS).unwrap();
        a.inc_one();
        assert_eq!(b.value(), 0.0);
    }

    #[test]
    fn exact_under_many_threads() {
        const THREADS: usize = 8;
        const N: u64 = 100_000;
        let r = Registry::new();
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let r = &r;
                s.spawn(move || {
                    let c = r.counter("c", "1", [("shared", "yes")]).unwrap();
                    let f = r.counter("f", "1", NO_TAGS).unwrap();
                    let g = r.gauge("g", "1", NO_TAGS).unwrap();
                    let h = r.histogram("h", "s", NO_TAGS, 3).unwrap();
                    for i in 0..N {
                        c.inc(1.0).unwrap();
                        f.inc(0.5).unwrap();
                        g.add(1.0);
                        h.record((t as u64 * N + i) as f64 * 1e-6);
                    }
                });
            }
        });
        let total = THREADS as u64 * N;
        let snaps = r.collect();
        assert_eq!(value_of(&snaps, "c"), Some(total as f64));
        assert_eq!(value_of(&snaps, "f"), Some(total as f64 / 2.0));
        assert_eq!(value_of(&snaps, "g"), Some(total as f64));
        let d = delta_of(&snaps, "h").unwrap();
        assert_eq!(d.count, total);
        assert_eq!(d.hdr.count(), total);
        assert_eq!(d.min, 0.0);
        assert_eq!(d.max, (total - 1) as f64 * 1e-6);
    }

    #[test]
    fn collect_concurrent_with_records_loses_nothing() {
        const THREADS: usize = 4;
        const N: u64 = 50_000;
        let r = Registry::new();
        let h = r.histogram("h", "ms", NO_TAGS, 2).unwrap();
        let mut collected = 0;
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let h = &h;
                s.spawn(move || (0..N).for_each(|i| h.record(i as f64)));
            }
            for _ in 0..50 {
                for snap in r.collect() {
                    if let Reading::Histogram(d) = snap.reading {
                        assert_eq!(d.hdr.count(), d.count);
                        collected += d.count;
                    }
                }
            }
        });
        for snap in r.collect() {
            if let Reading::Histogram(d) = snap.reading {
                collected += d.count;
            }
        }
        assert_eq!(collected, THREADS as u64 * N);
        assert_eq!(h.count(), THREADS as u64 * N);
    }
}
