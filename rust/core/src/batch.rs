//! A borrowed, validated view of a columnar metric batch.

use crate::error::BatchError;
use crate::kind::MetricKind;

/// Metrics as parallel columns, borrowed from the caller: row `i` is the metric
/// (`names[i]`, `kinds[i]`, `values[i]`, `units[i]`, `timestamps[i]`, `tags[i]`).
///
/// `S` is any string type (`&str`, `String`, ...); each row's tags are a slice of
/// `(key, value)` pairs, held as `T` (`&[(&str, &str)]`, `Vec<(String, String)>`, ...).
/// Building one with [`MetricBatch::new`] checks that every column has one entry per row
/// and every kind is a valid code, so encoding cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct MetricBatch<'a, S = &'a str, T = &'a [(&'a str, &'a str)]> {
    names: &'a [S],
    kinds: &'a [u8],
    values: &'a [f64],
    units: &'a [S],
    timestamps: &'a [i64],
    tags: &'a [T],
}

impl<'a, S, T> MetricBatch<'a, S, T>
where
    S: AsRef<str>,
    T: AsRef<[(S, S)]>,
{
    /// Checks the columns and wraps them. Timestamps are nanoseconds since the Unix epoch;
    /// kinds are [`MetricKind`] codes.
    ///
    /// # Errors
    /// [`BatchError::LengthMismatch`] naming the first column (in argument order) whose
    /// length differs from `names`', or [`BatchError::InvalidKind`] for the first row whose
    /// kind is not in `0..=3`.
    pub fn new(
        names: &'a [S],
        kinds: &'a [u8],
        values: &'a [f64],
        units: &'a [S],
        timestamps: &'a [i64],
        tags: &'a [T],
    ) -> Result<Self, BatchError> {
        let expected = names.len();
        let lengths = [
            ("kinds", kinds.len()),
            ("values", values.len()),
            ("units", units.len()),
            ("timestamps", timestamps.len()),
            ("tags", tags.len()),
        ];
        for (column, len) in lengths {
            if len != expected {
                return Err(BatchError::LengthMismatch {
                    column,
                    len,
                    expected,
                });
            }
        }
        if let Some(row) = kinds
            .iter()
            .position(|&k| MetricKind::from_code(k).is_none())
        {
            return Err(BatchError::InvalidKind {
                row,
                code: kinds[row],
            });
        }
        Ok(MetricBatch {
            names,
            kinds,
            values,
            units,
            timestamps,
            tags,
        })
    }

    /// The number of rows.
    #[inline]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the batch has no rows.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The metric names.
    #[inline]
    pub fn names(&self) -> &'a [S] {
        self.names
    }

    /// The kind codes, all valid.
    #[inline]
    pub fn kinds(&self) -> &'a [u8] {
        self.kinds
    }

    /// The values.
    #[inline]
    pub fn values(&self) -> &'a [f64] {
        self.values
    }

    /// The units.
    #[inline]
    pub fn units(&self) -> &'a [S] {
        self.units
    }

    /// The timestamps, in nanoseconds.
    #[inline]
    pub fn timestamps(&self) -> &'a [i64] {
        self.timestamps
    }

    /// Each row's `(key, value)` tag pairs.
    #[inline]
    pub fn tags(&self) -> &'a [T] {
        self.tags
    }

    /// The kind of row `row`.
    ///
    /// # Panics
    /// If `row >= self.len()`.
    #[inline]
    pub fn kind(&self, row: usize) -> MetricKind {
        // Validated in `new`; the fallback is unreachable.
        MetricKind::from_code(self.kinds[row]).unwrap_or(MetricKind::Gauge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_TAGS: &[(&str, &str)] = &[];

    #[test]
    fn accepts_matching_columns() {
        let tags: [&[(&str, &str)]; 2] = [NO_TAGS, &[("host", "a")]];
        let b = MetricBatch::new(
            &["a", "b"],
            &[0, 3],
            &[1.0, 2.0],
            &["1", "By"],
            &[1, 2],
            &tags,
        )
        .unwrap();
        assert_eq!(b.len(), 2);
        assert!(!b.is_empty());
        assert_eq!(b.kind(1), MetricKind::Set);
        assert_eq!(b.tags()[1], &[("host", "a")]);
    }

    #[test]
    fn accepts_owned_strings() {
        let names = vec!["cpu".to_string()];
        let units = vec!["%".to_string()];
        let tags = vec![vec![("k".to_string(), "v".to_string())]];
        let b = MetricBatch::new(&names, &[1], &[0.5], &units, &[7], &tags).unwrap();
        assert_eq!(b.names()[0], "cpu");
    }

    #[test]
    fn empty_batch_is_valid() {
        let b: MetricBatch<'_> = MetricBatch::new(&[], &[], &[], &[], &[], &[]).unwrap();
        assert!(b.is_empty());
    }

    #[test]
    fn rejects_length_mismatch_naming_the_column() {
        let tags: [&[(&str, &str)]; 2] = [NO_TAGS, NO_TAGS];
        let err =
            MetricBatch::new(&["a", "b"], &[0, 1], &[1.0], &["", ""], &[1, 2], &tags).unwrap_err();
        assert_eq!(
            err,
            BatchError::LengthMismatch {
                column: "values",
                len: 1,
                expected: 2
            }
        );
        let err = MetricBatch::new(
            &["a", "b"],
            &[0, 1],
            &[1.0, 2.0],
            &["", ""],
            &[1, 2],
            &tags[..1],
        )
        .unwrap_err();
        assert_eq!(err.column(), "tags");
        assert_eq!(err.row(), 1);
    }

    #[test]
    fn rejects_bad_kind_naming_the_row() {
        let tags: [&[(&str, &str)]; 3] = [NO_TAGS; 3];
        let err = MetricBatch::new(
            &["a", "b", "c"],
            &[0, 3, 4],
            &[1.0, 2.0, 3.0],
            &["", "", ""],
            &[1, 2, 3],
            &tags,
        )
        .unwrap_err();
        assert_eq!(err, BatchError::InvalidKind { row: 2, code: 4 });
        assert!(err.to_string().contains("row 2"));
    }
}
