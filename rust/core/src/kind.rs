//! The kind of a metric: how its values combine.

use std::fmt;

/// How a metric's values combine. The discriminant is the wire code shared with Python
/// (`revopipe.events.MetricKind`): a batch carries kinds as one byte per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MetricKind {
    /// A monotonically increasing total.
    Counter = 0,
    /// A value sampled at a point in time.
    Gauge = 1,
    /// A distribution of observations.
    Histogram = 2,
    /// A count of distinct values.
    Set = 3,
}

impl MetricKind {
    /// Every kind, indexed by its code.
    pub const ALL: [MetricKind; 4] = [
        MetricKind::Counter,
        MetricKind::Gauge,
        MetricKind::Histogram,
        MetricKind::Set,
    ];

    /// The kind with this wire code, if the code is one of `0..=3`.
    #[inline]
    pub fn from_code(code: u8) -> Option<MetricKind> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The wire code (`0..=3`).
    #[inline]
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The label written in JSON: `"counter"`, `"gauge"`, `"histogram"` or `"set"`.
    #[inline]
    pub fn label(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Set => "set",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl TryFrom<u8> for MetricKind {
    type Error = u8;

    /// The kind with this code; the rejected code otherwise.
    fn try_from(code: u8) -> Result<Self, u8> {
        MetricKind::from_code(code).ok_or(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_labels_round_trip() {
        let expected = [(0, "counter"), (1, "gauge"), (2, "histogram"), (3, "set")];
        for (code, label) in expected {
            let kind = MetricKind::from_code(code).unwrap();
            assert_eq!(kind.code(), code);
            assert_eq!(kind.label(), label);
            assert_eq!(kind.to_string(), label);
            assert_eq!(MetricKind::try_from(code), Ok(kind));
        }
    }

    #[test]
    fn unknown_codes_are_rejected() {
        for code in 4..=u8::MAX {
            assert_eq!(MetricKind::from_code(code), None);
            assert_eq!(MetricKind::try_from(code), Err(code));
        }
    }
}
