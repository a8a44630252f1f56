//! JSON string escaping into a byte buffer.
//!
//! Escaped: `"` and `\` and the control characters U+0000..=U+001F (as the short escapes
//! `\b \t \n \f \r` where JSON has one, otherwise `\u00XX`). Every other character,
//! including DEL and all non-ASCII text, is valid inside a JSON string and is copied as its
//! UTF-8 bytes.

/// For each byte: 0 when it is copied as is, else the character written after `\`
/// (`u` meaning `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

static HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` to `out` as a quoted JSON string.
#[inline]
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_json_str_contents(out, s);
    out.push(b'"');
}

/// Appends `s` to `out` escaped for use inside a JSON string, without the quotes.
#[inline]
pub fn write_json_str_contents(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        // The common case: one copy.
        out.extend_from_slice(bytes);
        return;
    }
    // Bytes in `start..i` need no escape and are copied in one go.
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape != 0 {
            // Multi-byte UTF-8 sequences contain only bytes >= 0x80, so `start` and `i`
            // are always on character boundaries.
            out.extend_from_slice(&bytes[start..i]);
            write_escape(out, b, escape);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Whether any byte of `bytes` must be escaped, testing eight bytes at a time.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    let len = bytes.len();
    if len >= 8 {
        let mut words = bytes.chunks_exact(8);
        if words.any(|w| word_needs_escape(read_u64(w))) {
            return true;
        }
        // The last, overlapping, word covers the remainder.
        !len.is_multiple_of(8) && word_needs_escape(read_u64(&bytes[len - 8..]))
    } else if len >= 4 {
        // Two overlapping halves cover all of 4..=7 bytes.
        let lo = read_u32(&bytes[..4]);
        let hi = read_u32(&bytes[len - 4..]);
        word_needs_escape(u64::from(lo) | u64::from(hi) << 32)
    } else if len > 0 {
        // First, middle and last cover all of 1..=3 bytes; the rest is padding that needs
        // no escape.
        let word = [
            bytes[0],
            bytes[len / 2],
            bytes[len - 1],
            b'a',
            b'a',
            b'a',
            b'a',
            b'a',
        ];
        word_needs_escape(u64::from_le_bytes(word))
    } else {
        false
    }
}

#[inline]
fn read_u64(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

#[inline]
fn read_u32(bytes: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

#[inline]
fn write_escape(out: &mut Vec<u8>, b: u8, escape: u8) {
    if escape == b'u' {
        out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]);
    } else {
        out.extend_from_slice(&[b'\\', escape]);
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `word` is below 0x20, a `"` or a `\`. Exact (no false answers):
/// each test is the classic "some byte is zero / below n" bit trick, whose result is
/// non-zero exactly when such a byte exists.
#[inline]
fn word_needs_escape(word: u64) -> bool {
    let below_0x20 = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let is_quote = quote.wrapping_sub(ONES) & !quote;
    let is_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_0x20 | is_quote | is_backslash) & HIGHS != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        write_json_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_text_is_copied() {
        assert_eq!(escaped(""), r#""""#);
        assert_eq!(escaped("cpu.usage"), r#""cpu.usage""#);
        assert_eq!(escaped("héllo ☃ 😀 \u{7f}"), "\"héllo ☃ 😀 \u{7f}\"");
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(escaped(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(escaped(r#"\""#), r#""\\\"""#);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escaped("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(escaped("\u{0}\u{1}\u{1f}"), r#""\u0000\u0001\u001f""#);
        assert_eq!(escaped("x\u{b}y"), r#""x\u000by""#);
    }

    #[test]
    fn word_test_matches_the_table() {
        // Each special byte, at each position, among bytes that need no escape.
        for special in 0u8..=255 {
            for pos in 0..8 {
                for filler in [b'a', 0x20, 0x7f, 0x80, 0xff, b'!', b'#', b'[', b']'] {
                    let mut word = [filler; 8];
                    word[pos] = special;
                    assert_eq!(
                        word_needs_escape(u64::from_le_bytes(word)),
                        ESCAPE[usize::from(special)] != 0,
                        "byte {special:#x} at {pos} among {filler:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn needs_escape_checks_every_byte_of_every_length() {
        for len in 0..=24 {
            assert!(!needs_escape(&vec![b'x'; len]));
            for pos in 0..len {
                for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    let mut bytes = vec![b'x'; len];
                    bytes[pos] = special;
                    assert!(
                        needs_escape(&bytes),
                        "len {len} pos {pos} byte {special:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_strings_with_escapes_at_every_offset() {
        let base = "abcdefghijklmnopqrstuvwxyzé☃😀0123456789";
        for (at, _) in base.char_indices() {
            for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}"] {
                let s = format!("{}{special}{}", &base[..at], &base[at..]);
                let parsed: String = serde_json::from_str(&escaped(&s)).unwrap();
                assert_eq!(parsed, s);
            }
        }
    }

    #[test]
    fn every_char_below_0x80_round_trips() {
        for c in (0u8..0x80).map(char::from) {
            let s = format!("a{c}b");
            let parsed: String = serde_json::from_str(&escaped(&s)).unwrap();
            assert_eq!(parsed, s);
        }
    }
}
