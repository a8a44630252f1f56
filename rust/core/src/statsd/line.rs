//! One StatsD / DogStatsD line, taken apart without any state.
//!
//! ```text
//! name:value[:value...]|type[|@rate][|#tag[:value],...][|c:container][|T<unix seconds>]
//! _e{title_len,text_len}:title|text|...        an event (not supported, counted)
//! _sc|name|status|...                          a service check (not supported, counted)
//! ```

use std::fmt;

/// The type field of a metric line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `c`
    Counter,
    /// `g`
    Gauge,
    /// `ms`
    Timer,
    /// `h`
    Histogram,
    /// `d`
    Distribution,
    /// `s`
    Set,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "c" => Type::Counter,
            "g" => Type::Gauge,
            "ms" => Type::Timer,
            "h" => Type::Histogram,
            "d" => Type::Distribution,
            "s" => Type::Set,
            _ => return None,
        })
    }
}

/// What a line holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    Metric(MetricLine<'a>),
    /// A DogStatsD event (`_e{...}`).
    Event,
    /// A DogStatsD service check (`_sc|...`).
    ServiceCheck,
}

/// A metric line; its tags are pushed into the vector given to [`parse_line`].
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLine<'a> {
    pub name: &'a str,
    /// One or more values separated by `:` (DogStatsD protocol v1.1), not yet checked.
    pub values: &'a str,
    pub ty: Type,
    /// `1.0` when the line has none; otherwise in `(0, 1]`.
    pub rate: f64,
    /// The DogStatsD container id (`|c:...`), if any and non-empty.
    pub container: Option<&'a str>,
    /// `|T<seconds>`, in nanoseconds.
    pub timestamp_ns: Option<i64>,
}

/// Why a line was rejected. Borrows from the line: formatting happens only for the few
/// lines whose message is kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason<'a> {
    InvalidUtf8,
    NoValue,
    EmptyName,
    PipeInName,
    NoType,
    UnknownType(&'a str),
    EmptyValue,
    BadValue(&'a str),
    NegativeCounter(&'a str),
    BadRate(&'a str),
    BadTimestamp(&'a str),
    EmptyTagKey,
    TooManySamples(usize),
    SeriesTooLong(usize),
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::InvalidUtf8 => f.write_str("not valid UTF-8"),
            Reason::NoValue => f.write_str(
                "no ':' between the metric name and its value (expected name:value|type)",
            ),
            Reason::EmptyName => f.write_str("empty metric name"),
            Reason::PipeInName => f.write_str("'|' in the metric name"),
            Reason::NoType => f.write_str("no '|type' after the value (expected name:value|type)"),
            Reason::UnknownType(t) => {
                write!(
                    f,
                    "unknown metric type {t:?} (expected c, g, ms, h, d or s)"
                )
            }
            Reason::EmptyValue => f.write_str("empty value"),
            Reason::BadValue(v) => write!(f, "value {v:?} is not a finite number"),
            Reason::NegativeCounter(v) => write!(
                f,
                "negative counter increment {v:?} (revopipe counters only go up; \
                 send a gauge with a relative '-N' instead)"
            ),
            Reason::BadRate(r) => write!(f, "sample rate {r:?} is not a number in (0, 1]"),
            Reason::BadTimestamp(t) => {
                write!(f, "timestamp {t:?} is not whole Unix seconds (T1700000000)")
            }
            Reason::EmptyTagKey => f.write_str("a tag with an empty key"),
            Reason::TooManySamples(n) => write!(
                f,
                "expands to {n} samples (values x 1/rate), more than {}",
                super::MAX_SAMPLES_PER_LINE
            ),
            Reason::SeriesTooLong(n) => write!(
                f,
                "name and tags take {n} bytes, more than {}",
                super::MAX_SERIES_BYTES
            ),
        }
    }
}

/// Parses one line (no newline, trimmed, non-empty); the metric's tags are pushed into
/// `tags` (cleared first), in the order given.
pub fn parse_line<'a>(
    line: &'a str,
    tags: &mut Vec<(&'a str, &'a str)>,
) -> Result<Line<'a>, Reason<'a>> {
    tags.clear();
    if line.starts_with("_e{") {
        return Ok(Line::Event);
    }
    if line.starts_with("_sc|") {
        return Ok(Line::ServiceCheck);
    }
    let (name, rest) = line.split_once(':').ok_or(Reason::NoValue)?;
    if name.is_empty() {
        return Err(Reason::EmptyName);
    }
    if name.contains('|') {
        return Err(Reason::PipeInName);
    }
    let (values, rest) = rest.split_once('|').ok_or(Reason::NoType)?;
    let mut fields = rest.split('|');
    let ty_text = fields.next().unwrap_or_default();
    let ty = Type::parse(ty_text).ok_or(Reason::UnknownType(ty_text))?;
    let mut rate = 1.0;
    let mut container = None;
    let mut timestamp_ns = None;
    for field in fields {
        match field.as_bytes().first() {
            Some(b'@') => rate = parse_rate(&field[1..]).ok_or(Reason::BadRate(field))?,
            Some(b'#') => parse_tags(&field[1..], tags)?,
            Some(b'T') => {
                timestamp_ns =
                    Some(parse_timestamp(&field[1..]).ok_or(Reason::BadTimestamp(field))?)
            }
            Some(b'c') if field.starts_with("c:") => {
                container = Some(&field[2..]).filter(|c| !c.is_empty());
            }
            // Later protocol versions add fields; an unknown one does not spoil the line.
            _ => {}
        }
    }
    if values.is_empty() {
        return Err(Reason::EmptyValue);
    }
    Ok(Line::Metric(MetricLine {
        name,
        values,
        ty,
        rate,
        container,
        timestamp_ns,
    }))
}

/// A finite number; `+` and `-` signs, exponents and `.5` / `5.` are accepted.
#[inline]
pub fn parse_number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_rate(s: &str) -> Option<f64> {
    parse_number(s).filter(|&r| r > 0.0 && r <= 1.0)
}

fn parse_timestamp(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()?.checked_mul(1_000_000_000)
}

fn parse_tags<'a>(s: &'a str, tags: &mut Vec<(&'a str, &'a str)>) -> Result<(), Reason<'a>> {
    for tag in s.split(',') {
        if tag.is_empty() {
            continue;
        }
        let (key, value) = tag.split_once(':').unwrap_or((tag, ""));
        if key.is_empty() {
            return Err(Reason::EmptyTagKey);
        }
        tags.push((key, value));
    }
    Ok(())
}
