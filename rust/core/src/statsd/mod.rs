//! StatsD and DogStatsD lines into metric rows, a whole buffer per call.
//!
//! [`StatsdParser::parse`] takes a buffer of newline-separated lines (a receiver joins the
//! datagrams it got since the last call with `\n`) and appends one row per sample to
//! [`StatsdRows`]: the series id, the kind, the value and the timestamp. The name, tags
//! and unit of a series id are read with [`StatsdParser::series`]; ids are dense, start
//! at 0 and never change, so a caller can keep per-series data in a vector.
//!
//! # Lines
//!
//! `name:value|type`, optionally followed by `|@rate`, `|#tag:value,tag2` (a tag without a
//! value has the value `""`), `|c:<container id>` (becomes the tag `container.id`) and
//! `|T<unix seconds>` (the row's timestamp; otherwise the `now_ns` of the call). Several
//! values may share one line: `name:1:2:3|h` (DogStatsD protocol v1.1). Unknown optional
//! fields are ignored. Lines are trimmed of ASCII whitespace (so `\r\n` works); empty lines
//! are skipped without being counted.
//!
//! # Semantics, by type
//!
//! A series is (name, tag multiset, type class); the tag order of a line does not matter.
//!
//! - `c` → **counter**. revopipe counters are cumulative totals, so the parser keeps one
//!   total per series and each line adds `value / rate`. The row carries the running
//!   total. When a series is first seen a row of `0` precedes its first total (same
//!   timestamp): a consumer takes a series' first sample as its baseline, and this way the
//!   first increment is counted too. Within one call, consecutive totals of a series with
//!   the same timestamp are coalesced into one row (the later total), which gives a
//!   consumer the same increases with far fewer rows. Negative increments are rejected.
//! - `g` → **gauge**. `+v` / `-v` change the current value (starting from 0), any other
//!   value replaces it. Rates are ignored.
//! - `ms` → **histogram** with unit `ms`; `h` and `d` → **histogram** with unit `1`.
//!   With a sample rate each value is repeated `round(1 / rate)` times (at most
//!   [`MAX_SAMPLE_REPEAT`]), so counts are those of the unsampled stream.
//! - `s` → **set**: each member (a string) becomes the integer `xxh3_64(member) >> 11`, as
//!   an f64 (exact: below 2^53), so equal members have equal values. Rates are ignored.
//!
//! # Malformed and unsupported lines
//!
//! A line that cannot be read (invalid UTF-8, no `:` or `|type`, an unknown type, a bad
//! number, rate or timestamp, a tag with an empty key, a negative counter increment, ...)
//! is counted in [`StatsdCounts::malformed`] and skipped as a whole (none of its values
//! is used); the rest of the buffer is parsed as usual. The first [`MAX_KEPT_ERRORS`]
//! messages (reason and an excerpt of the line) are kept until
//! [`StatsdParser::take_errors`]. DogStatsD events and service checks are counted in
//! [`StatsdCounts::unsupported`].
//!
//! # Bounded state
//!
//! At most `max_series` series are tracked. A line of a new series once that many exist
//! is dropped and counted in [`StatsdCounts::overflow`]. Series are kept for the parser's
//! lifetime (counters need their totals). A line's name and tags may take at most
//! [`MAX_SERIES_BYTES`], and a line expands to at most [`MAX_SAMPLES_PER_LINE`] rows.
//!
//! # Reading sockets (Unix)
//!
//! [`read_datagrams`] drains a non-blocking UDP socket into the newline-separated form
//! `parse` takes, many datagrams per call; [`discard_datagrams`] drains without keeping.

mod line;
#[cfg(unix)]
mod recv;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64;

use crate::kind::MetricKind;
use crate::series::SeriesHasher;

pub use line::{parse_line, parse_number, Line, MetricLine, Reason, Type};
#[cfg(unix)]
pub use recv::{discard_datagrams, read_datagrams};

/// Error messages kept between two [`StatsdParser::take_errors`].
pub const MAX_KEPT_ERRORS: usize = 5;
/// The most times one sampled histogram value is repeated (rates below `1 / this`).
pub const MAX_SAMPLE_REPEAT: usize = 1000;
/// The most rows one line may expand to (values x repeats).
pub const MAX_SAMPLES_PER_LINE: usize = 100_000;
/// The most bytes of a series' name and tag keys and values together.
pub const MAX_SERIES_BYTES: usize = 8192;
/// Bytes of a malformed line quoted in its message.
const EXCERPT_BYTES: usize = 120;
/// The tag a `|c:` container id becomes.
pub const CONTAINER_TAG: &str = "container.id";

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// How the lines of a series combine; part of the series identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Counter,
    Gauge,
    Timer,
    Histogram,
    Set,
}

impl Class {
    fn of(ty: Type) -> Class {
        match ty {
            Type::Counter => Class::Counter,
            Type::Gauge => Class::Gauge,
            Type::Timer => Class::Timer,
            Type::Histogram | Type::Distribution => Class::Histogram,
            Type::Set => Class::Set,
        }
    }

    fn kind(self) -> MetricKind {
        match self {
            Class::Counter => MetricKind::Counter,
            Class::Gauge => MetricKind::Gauge,
            Class::Timer | Class::Histogram => MetricKind::Histogram,
            Class::Set => MetricKind::Set,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Class::Timer => "ms",
            _ => "1",
        }
    }

    fn salt(self) -> u64 {
        (self as u64 + 1).wrapping_mul(GOLDEN)
    }
}

/// Keys are already hashes.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;

struct Series {
    name: Box<str>,
    /// Sorted by key, then value.
    tags: Box<[(Box<str>, Box<str>)]>,
    class: Class,
    /// Counter: the total; gauge: the current value (0 before the first line).
    value: f64,
    /// The `call` in which `last_row` was written.
    last_call: u64,
    /// This series' last row in the output of call `last_call`.
    last_row: usize,
}

impl Series {
    fn matches(&self, name: &str, tags: &[(&str, &str)], class: Class) -> bool {
        if self.class != class || &*self.name != name || self.tags.len() != tags.len() {
            return false;
        }
        let own = |i: usize| (&*self.tags[i].0, &*self.tags[i].1);
        if (0..tags.len()).all(|i| own(i) == tags[i]) {
            return true;
        }
        // Another order: equal as multisets (tag sets are small).
        tags.iter().all(|pair| {
            let mine = self
                .tags
                .iter()
                .filter(|(k, v)| (&**k, &**v) == *pair)
                .count();
            mine == tags.iter().filter(|t| *t == pair).count()
        })
    }
}

/// A series as the rows refer to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesInfo<'a> {
    pub name: &'a str,
    /// Sorted by key, then value.
    pub tags: &'a [(Box<str>, Box<str>)],
    pub kind: MetricKind,
    /// `"ms"` for timers, `"1"` otherwise.
    pub unit: &'static str,
}

/// Line counts since the parser was made. Every non-empty line is exactly one of
/// `metrics`, `malformed`, `unsupported` or `overflow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsdCounts {
    /// Non-empty lines seen.
    pub lines: u64,
    /// Metric lines turned into rows.
    pub metrics: u64,
    /// Lines that could not be read.
    pub malformed: u64,
    /// DogStatsD events and service checks.
    pub unsupported: u64,
    /// Lines of new series dropped because `max_series` were tracked already.
    pub overflow: u64,
}

/// The rows of one [`StatsdParser::parse`] call, as columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsdRows {
    /// The series id of each row (see [`StatsdParser::series`]).
    pub series: Vec<u32>,
    /// [`MetricKind`] codes.
    pub kinds: Vec<u8>,
    pub values: Vec<f64>,
    /// Nanoseconds since the Unix epoch.
    pub timestamps: Vec<i64>,
}

impl StatsdRows {
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn clear(&mut self) {
        self.series.clear();
        self.kinds.clear();
        self.values.clear();
        self.timestamps.clear();
    }

    #[inline]
    fn push(&mut self, series: u32, kind: MetricKind, value: f64, ts: i64) {
        self.series.push(series);
        self.kinds.push(kind.code());
        self.values.push(value);
        self.timestamps.push(ts);
    }
}

enum Outcome {
    Metric,
    Unsupported,
    Overflow,
}

/// Parses StatsD / DogStatsD buffers, keeping per-series state; see the
/// [module docs](self).
pub struct StatsdParser {
    max_series: usize,
    series: Vec<Series>,
    /// Series key (mixed with the class, probed on collision) → index in `series`.
    index: HashMap<u64, u32, IdBuild>,
    hasher: SeriesHasher,
    /// Numbers the `parse` calls, for counter coalescing.
    call: u64,
    counts: StatsdCounts,
    errors: Vec<String>,
    /// The values of the line being read (gauges: whether each is relative).
    values: Vec<(bool, f64)>,
}

impl StatsdParser {
    /// A parser tracking at most `max_series` series (at least 1).
    pub fn new(max_series: usize) -> StatsdParser {
        StatsdParser {
            max_series: max_series.max(1),
            series: Vec::new(),
            index: HashMap::default(),
            hasher: SeriesHasher::new(),
            call: 0,
            counts: StatsdCounts::default(),
            errors: Vec::new(),
            values: Vec::new(),
        }
    }

    /// The cap on tracked series.
    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Series tracked so far; ids are `0..series_count()`.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The series with this id.
    ///
    /// # Panics
    /// If `id >= series_count()`.
    pub fn series(&self, id: u32) -> SeriesInfo<'_> {
        let s = &self.series[id as usize];
        SeriesInfo {
            name: &s.name,
            tags: &s.tags,
            kind: s.class.kind(),
            unit: s.class.unit(),
        }
    }

    /// Line counts so far.
    pub fn counts(&self) -> StatsdCounts {
        self.counts
    }

    /// The messages of the first malformed lines since the previous call (at most
    /// [`MAX_KEPT_ERRORS`]), each the reason and an excerpt of the line.
    pub fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    /// Parses every line of `buf` into `rows` (cleared first). Rows without a `|T`
    /// timestamp get `now_ns`. Never fails: unreadable lines are counted and skipped.
    pub fn parse(&mut self, buf: &[u8], now_ns: i64, rows: &mut StatsdRows) {
        rows.clear();
        self.call += 1;
        let mut tags: Vec<(&str, &str)> = Vec::new();
        for raw in buf.split(|&b| b == b'\n') {
            let raw = raw.trim_ascii();
            if raw.is_empty() {
                continue;
            }
            self.counts.lines += 1;
            match self.line(raw, now_ns, &mut tags, rows) {
                Ok(Outcome::Metric) => self.counts.metrics += 1,
                Ok(Outcome::Unsupported) => self.counts.unsupported += 1,
                Ok(Outcome::Overflow) => self.counts.overflow += 1,
                Err(reason) => {
                    self.counts.malformed += 1;
                    if self.errors.len() < MAX_KEPT_ERRORS {
                        self.errors.push(error_message(raw, reason));
                    }
                }
            }
        }
    }

    fn line<'a>(
        &mut self,
        raw: &'a [u8],
        now_ns: i64,
        tags: &mut Vec<(&'a str, &'a str)>,
        rows: &mut StatsdRows,
    ) -> Result<Outcome, Reason<'a>> {
        let text = std::str::from_utf8(raw).map_err(|_| Reason::InvalidUtf8)?;
        let m = match parse_line(text, tags)? {
            Line::Metric(m) => m,
            Line::Event | Line::ServiceCheck => return Ok(Outcome::Unsupported),
        };
        let class = Class::of(m.ty);
        read_values(&m, class, &mut self.values)?;
        let repeat = match class {
            Class::Timer | Class::Histogram => repeat_for(m.rate),
            _ => 1,
        };
        let samples = self.values.len().saturating_mul(repeat);
        if samples > MAX_SAMPLES_PER_LINE {
            return Err(Reason::TooManySamples(samples));
        }
        if let Some(container) = m.container {
            tags.push((CONTAINER_TAG, container));
        }
        let bytes = m.name.len() + tags.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if bytes > MAX_SERIES_BYTES {
            return Err(Reason::SeriesTooLong(bytes));
        }
        let Some((id, new)) = self.lookup(m.name, tags, class) else {
            return Ok(Outcome::Overflow);
        };
        let ts = m.timestamp_ns.unwrap_or(now_ns);
        let kind = class.kind();
        let call = self.call;
        let series = &mut self.series[id as usize];
        match class {
            Class::Counter => {
                if new {
                    rows.push(id, kind, 0.0, ts);
                }
                for &(_, v) in &self.values {
                    series.value += v / m.rate;
                }
                let last = series.last_row;
                if series.last_call == call && !new && rows.timestamps[last] == ts {
                    rows.values[last] = series.value;
                } else {
                    series.last_call = call;
                    series.last_row = rows.len();
                    rows.push(id, kind, series.value, ts);
                }
            }
            Class::Gauge => {
                for &(relative, v) in &self.values {
                    series.value = if relative { series.value + v } else { v };
                    rows.push(id, kind, series.value, ts);
                }
            }
            Class::Timer | Class::Histogram | Class::Set => {
                for &(_, v) in &self.values {
                    for _ in 0..repeat {
                        rows.push(id, kind, v, ts);
                    }
                }
            }
        }
        Ok(Outcome::Metric)
    }

    /// The id of the series, and whether it was made now; `None` if it is new and
    /// `max_series` are tracked already.
    fn lookup(&mut self, name: &str, tags: &[(&str, &str)], class: Class) -> Option<(u32, bool)> {
        let mut probe = self.hasher.key(name, tags) ^ class.salt();
        loop {
            match self.index.get(&probe) {
                Some(&i) if self.series[i as usize].matches(name, tags, class) => {
                    return Some((i, false));
                }
                Some(_) => probe = probe.wrapping_add(GOLDEN),
                None => break,
            }
        }
        if self.series.len() >= self.max_series {
            return None;
        }
        let id = u32::try_from(self.series.len()).ok()?;
        let mut owned: Vec<(Box<str>, Box<str>)> =
            tags.iter().map(|&(k, v)| (k.into(), v.into())).collect();
        owned.sort_unstable();
        self.series.push(Series {
            name: name.into(),
            tags: owned.into_boxed_slice(),
            class,
            value: 0.0,
            last_call: 0,
            last_row: 0,
        });
        self.index.insert(probe, id);
        Some((id, true))
    }
}

/// How many rows a histogram value sampled at `rate` stands for.
fn repeat_for(rate: f64) -> usize {
    // rate is in (0, 1], so 1 / rate >= 1; the cap keeps a tiny rate from exploding.
    ((1.0 / rate).round() as usize).clamp(1, MAX_SAMPLE_REPEAT)
}

/// Checks every value of the line and stores it in `out`: all or nothing.
fn read_values<'a>(
    m: &MetricLine<'a>,
    class: Class,
    out: &mut Vec<(bool, f64)>,
) -> Result<(), Reason<'a>> {
    out.clear();
    for text in m.values.split(':') {
        if text.is_empty() {
            return Err(Reason::EmptyValue);
        }
        let value = match class {
            Class::Set => (false, set_member(text)),
            Class::Gauge => {
                let v = parse_number(text).ok_or(Reason::BadValue(text))?;
                (text.starts_with(['+', '-']), v)
            }
            Class::Counter => {
                let v = parse_number(text).ok_or(Reason::BadValue(text))?;
                if v < 0.0 {
                    return Err(Reason::NegativeCounter(text));
                }
                (false, v)
            }
            Class::Timer | Class::Histogram => {
                (false, parse_number(text).ok_or(Reason::BadValue(text))?)
            }
        };
        out.push(value);
    }
    Ok(())
}

/// The value a set member is counted as: equal members, equal values; exact in an f64.
pub fn set_member(member: &str) -> f64 {
    (xxh3_64(member.as_bytes()) >> 11) as f64
}

fn error_message(raw: &[u8], reason: Reason<'_>) -> String {
    let mut end = raw.len().min(EXCERPT_BYTES);
    let cut = end < raw.len();
    if let Ok(text) = std::str::from_utf8(raw) {
        while !text.is_char_boundary(end) {
            end -= 1;
        }
    }
    let excerpt = String::from_utf8_lossy(&raw[..end]);
    let more = if cut { "..." } else { "" };
    format!("{reason}: {excerpt:?}{more}")
}
