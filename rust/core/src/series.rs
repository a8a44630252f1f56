//! Stable series keys: one `u64` per (name, tag set).
//!
//! # Definition (stable: never change it, stored keys depend on it)
//!
//! `series_key(name, tags)` is XXH3-64 with seed 0 (the `xxh3_64` of the xxHash
//! specification, as implemented by the pure-Rust `xxhash-rust` crate) of the bytes
//!
//! ```text
//! name 0xFF  key1 0xFF value1 0xFF  key2 0xFF value2 0xFF  ...
//! ```
//!
//! where every string is its UTF-8 bytes and the tag pairs are sorted by key, then by value
//! (byte order, which for UTF-8 is Unicode code point order, the order of Python's
//! `sorted`). The byte `0xFF` never occurs in UTF-8, so it is an unambiguous terminator:
//! `("a", "bc")` and `("ab", "c")` hash different byte strings. XXH3 is defined on bytes
//! with a fixed (little-endian) reading of them, so a key is the same on every platform,
//! every run and every process; no random seed is involved.
//!
//! Consequences: the key does not depend on the order the tags are given in, and a tag set
//! is a multiset: a repeated pair counts twice.

use xxhash_rust::xxh3::xxh3_64;

use crate::error::BatchError;

/// Ends every string in the hashed byte stream; `0xFF` never occurs in UTF-8.
const TERMINATOR: u8 = 0xFF;

/// Computes series keys, reusing its scratch space from call to call.
#[derive(Debug, Default, Clone)]
pub struct SeriesHasher {
    bytes: Vec<u8>,
    order: Vec<usize>,
}

impl SeriesHasher {
    /// A hasher with empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// The series key of `name` with `tags` (any order); see the [module docs](self).
    pub fn key<S: AsRef<str>>(&mut self, name: &str, tags: &[(S, S)]) -> u64 {
        self.bytes.clear();
        push_terminated(&mut self.bytes, name);
        let sorted = tags.windows(2).all(|w| pair_key(&w[0]) <= pair_key(&w[1]));
        if sorted {
            for (key, value) in tags {
                push_terminated(&mut self.bytes, key.as_ref());
                push_terminated(&mut self.bytes, value.as_ref());
            }
        } else {
            self.order.clear();
            self.order.extend(0..tags.len());
            self.order
                .sort_unstable_by(|&a, &b| pair_key(&tags[a]).cmp(&pair_key(&tags[b])));
            for &i in &self.order {
                let (key, value) = &tags[i];
                push_terminated(&mut self.bytes, key.as_ref());
                push_terminated(&mut self.bytes, value.as_ref());
            }
        }
        xxh3_64(&self.bytes)
    }
}

#[inline]
fn pair_key<S: AsRef<str>>((key, value): &(S, S)) -> (&str, &str) {
    (key.as_ref(), value.as_ref())
}

#[inline]
fn push_terminated(bytes: &mut Vec<u8>, s: &str) {
    bytes.extend_from_slice(s.as_bytes());
    bytes.push(TERMINATOR);
}

/// The series key of `name` with `tags` (any order); see the [module docs](self).
pub fn series_key<S: AsRef<str>>(name: &str, tags: &[(S, S)]) -> u64 {
    SeriesHasher::new().key(name, tags)
}

/// The series key of every row: `names[i]` with `tags[i]`.
///
/// # Errors
/// [`BatchError::LengthMismatch`] for column `tags` if the columns differ in length.
pub fn series_keys<S, T>(names: &[S], tags: &[T]) -> Result<Vec<u64>, BatchError>
where
    S: AsRef<str>,
    T: AsRef<[(S, S)]>,
{
    if names.len() != tags.len() {
        return Err(BatchError::LengthMismatch {
            column: "tags",
            len: tags.len(),
            expected: names.len(),
        });
    }
    let mut hasher = SeriesHasher::new();
    Ok(names
        .iter()
        .zip(tags)
        .map(|(name, tags)| hasher.key(name.as_ref(), tags.as_ref()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &[(&str, &str)] = &[];

    #[test]
    fn order_of_tags_does_not_matter() {
        let a = series_key("cpu", &[("host", "a"), ("core", "0"), ("dc", "x")]);
        let b = series_key("cpu", &[("dc", "x"), ("host", "a"), ("core", "0")]);
        assert_eq!(a, b);
        assert_eq!(
            series_key("m", &[("k", "2"), ("k", "1")]),
            series_key("m", &[("k", "1"), ("k", "2")])
        );
    }

    #[test]
    fn separators_are_unambiguous() {
        assert_ne!(
            series_key("m", &[("a", "bc")]),
            series_key("m", &[("ab", "c")])
        );
        assert_ne!(series_key("ab", NONE), series_key("a", &[("b", "")]));
        assert_ne!(series_key("m", &[("a", "")]), series_key("m", &[("", "a")]));
        assert_ne!(series_key("m", NONE), series_key("m", &[("", "")]));
        assert_ne!(
            series_key("m", &[("a", "b"), ("c", "d")]),
            series_key("m", &[("a", "b\u{0}c"), ("", "d")])
        );
    }

    #[test]
    fn everything_counts() {
        let base = series_key("m", &[("k", "v")]);
        assert_ne!(base, series_key("n", &[("k", "v")]));
        assert_ne!(base, series_key("m", &[("k", "w")]));
        assert_ne!(base, series_key("m", &[("j", "v")]));
        assert_ne!(base, series_key("m", NONE));
        assert_ne!(base, series_key("m", &[("k", "v"), ("k", "v")]));
    }

    #[test]
    fn keys_are_pinned() {
        // Literal values, cross-checked against the reference C xxHash (XXH3_64bits of the
        // documented byte strings): a change of crate, algorithm or framing that would
        // alter stored keys fails here.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(series_key("cpu", NONE), 0x49b0_c916_e264_d9f0);
        assert_eq!(series_key("cpu", NONE), xxh3_64(b"cpu\xff"));
        assert_eq!(
            series_key("cpu", &[("host", "a"), ("core", "0")]),
            0xf3f5_037d_faf4_05a8
        );
        assert_eq!(
            series_key("cpu", &[("host", "a"), ("core", "0")]),
            xxh3_64(b"cpu\xffcore\xff0\xffhost\xffa\xff")
        );
        assert_eq!(series_key("mem.used", &[("k", "v")]), 0x7d00_d316_d23c_3d8e);
        assert_eq!(series_key("é", &[("😀", "\n")]), 0x6630_2f5a_f1dc_3f3b);
    }

    #[test]
    fn owned_strings_and_reuse() {
        let tags = vec![
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "1".to_string()),
        ];
        let mut hasher = SeriesHasher::new();
        let first = hasher.key("m", &tags);
        assert_eq!(hasher.key("m", &[("a", "1"), ("b", "2")]), first);
        assert_eq!(hasher.key("m", &tags), first);
    }

    #[test]
    fn batch_keys() {
        let tags: [&[(&str, &str)]; 2] = [&[("k", "v")], NONE];
        let keys = series_keys(&["a", "b"], &tags).unwrap();
        assert_eq!(
            keys,
            [series_key("a", &[("k", "v")]), series_key("b", NONE)]
        );
        let err = series_keys(&["a"], &tags).unwrap_err();
        assert_eq!(err.column(), "tags");
    }
}
