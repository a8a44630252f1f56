//! JSON numbers: shortest round-trip floats and integers into a byte buffer.

/// Reusable scratch for number formatting (both live on the stack).
#[derive(Default)]
pub struct NumberWriter {
    float: ryu::Buffer,
    int: itoa::Buffer,
}

impl NumberWriter {
    /// A fresh writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `v` as a JSON number that parses back to exactly `v` (ryu's shortest
    /// representation, e.g. `1.5`, `3.0`, `1e300`, `-0.0`). NaN and ±infinity have no
    /// JSON form and are written as `null`.
    #[inline]
    pub fn write_f64(&mut self, out: &mut Vec<u8>, v: f64) {
        if v.is_finite() {
            out.extend_from_slice(self.float.format_finite(v).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }

    /// Appends `v` as a JSON integer.
    #[inline]
    pub fn write_i64(&mut self, out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(self.int.format(v).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        let mut out = Vec::new();
        NumberWriter::new().write_f64(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn floats() {
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(3.0), "3.0");
        assert_eq!(float(-0.0), "-0.0");
        assert_eq!(float(1e300), "1e300");
        assert_eq!(float(f64::NAN), "null");
        assert_eq!(float(f64::INFINITY), "null");
        assert_eq!(float(f64::NEG_INFINITY), "null");
        for v in [f64::MIN_POSITIVE, f64::MAX, f64::MIN, 5e-324, 0.1 + 0.2] {
            assert_eq!(float(v).parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn integers() {
        let mut out = Vec::new();
        let mut w = NumberWriter::new();
        for v in [0, -1, i64::MIN, i64::MAX] {
            out.clear();
            w.write_i64(&mut out, v);
            assert_eq!(std::str::from_utf8(&out).unwrap(), v.to_string());
        }
    }
}
