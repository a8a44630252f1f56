//! Why a columnar batch was rejected.

use std::error::Error;
use std::fmt;

/// A columnar batch that cannot be encoded. The message names the column and the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// A column's length differs from the `names` column's.
    LengthMismatch {
        /// The column whose length is wrong.
        column: &'static str,
        /// Its length.
        len: usize,
        /// The number of rows, as given by `names`.
        expected: usize,
    },
    /// A `kinds` entry that is not one of the codes `0..=3`.
    InvalidKind {
        /// The row holding it.
        row: usize,
        /// The code found there.
        code: u8,
    },
}

impl BatchError {
    /// The column at fault.
    pub fn column(&self) -> &'static str {
        match self {
            BatchError::LengthMismatch { column, .. } => column,
            BatchError::InvalidKind { .. } => "kinds",
        }
    }

    /// The first row at fault: for a length mismatch, the first row that one of the two
    /// columns lacks.
    pub fn row(&self) -> usize {
        match *self {
            BatchError::LengthMismatch { len, expected, .. } => len.min(expected),
            BatchError::InvalidKind { row, .. } => row,
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BatchError::LengthMismatch {
                column,
                len,
                expected,
            } if len < expected => write!(
                f,
                "column '{column}' has {len} rows but 'names' has {expected}: \
                 row {len} is missing from '{column}'"
            ),
            BatchError::LengthMismatch {
                column,
                len,
                expected,
            } => write!(
                f,
                "column '{column}' has {len} rows but 'names' has {expected}: \
                 row {expected} of '{column}' has no name"
            ),
            BatchError::InvalidKind { row, code } => write!(
                f,
                "column 'kinds', row {row}: invalid metric kind code {code} \
                 (expected 0 counter, 1 gauge, 2 histogram or 3 set)"
            ),
        }
    }
}

impl Error for BatchError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_column_and_row() {
        let short = BatchError::LengthMismatch {
            column: "values",
            len: 3,
            expected: 5,
        };
        assert_eq!(
            short.to_string(),
            "column 'values' has 3 rows but 'names' has 5: row 3 is missing from 'values'"
        );
        assert_eq!((short.column(), short.row()), ("values", 3));

        let long = BatchError::LengthMismatch {
            column: "tags",
            len: 6,
            expected: 5,
        };
        assert_eq!(
            long.to_string(),
            "column 'tags' has 6 rows but 'names' has 5: row 5 of 'tags' has no name"
        );
        assert_eq!((long.column(), long.row()), ("tags", 5));

        let kind = BatchError::InvalidKind { row: 7, code: 9 };
        assert!(kind
            .to_string()
            .starts_with("column 'kinds', row 7: invalid metric kind code 9"));
        assert_eq!((kind.column(), kind.row()), ("kinds", 7));
    }
}
