//! Value resolution per unit: how raw `f64` values become the integers stored in
//! histograms.
//!
//! HDR histograms store non-negative integers. A raw value `v` of a series whose unit has
//! resolution `r` is recorded as the integer `round(v / r)` ([`to_recorded`]) and read back
//! as `recorded * r` ([`from_recorded`]). So a value is kept to within `r / 2` absolute
//! error (plus the histogram's relative error of `10^-significant_digits`).
//!
//! Two histograms can only be merged if they were recorded with the **same resolution**
//! (i.e. the same unit): the integers of different resolutions mean different values.
//!
//! | unit | resolution | meaning |
//! |------|-----------|---------|
//! | `"s"` | `1e-6` | seconds, kept to the microsecond |
//! | `"ms"` | `1e-3` | milliseconds, kept to the microsecond |
//! | `"us"`, `"ns"` | `1.0` | already integral units |
//! | `"By"` | `1.0` | bytes |
//! | `"1"` | `1e-6` | dimensionless ratios |
//! | anything else | `1e-3` | |

/// The resolution (the value of one recorded integer step) for values of `unit`.
///
/// `"s"` → 1e-6, `"ms"` → 1e-3, `"us"` / `"ns"` → 1.0, `"By"` → 1.0, `"1"` → 1e-6,
/// anything else → 1e-3. Histogram values are recorded as the integer
/// `round(value / resolution)`, so histograms can only be merged when recorded with equal
/// resolution.
pub fn resolution_for_unit(unit: &str) -> f64 {
    match unit {
        "s" => 1e-6,
        "ms" => 1e-3,
        "us" | "ns" => 1.0,
        "By" => 1.0,
        "1" => 1e-6,
        _ => 1e-3,
    }
}

/// `value` as the recorded integer `round(value / resolution)`.
///
/// Negative values and NaN record as 0; values beyond `u64::MAX` (including +inf)
/// saturate to `u64::MAX`.
#[inline]
pub fn to_recorded(value: f64, resolution: f64) -> u64 {
    let scaled = value / resolution;
    // Same result as `scaled.round() as u64` (half away from zero; `as` saturates, NaN and
    // negatives give 0), without `f64::round`, which is a libm call on baseline x86-64.
    if scaled > 0.0 {
        let truncated = scaled as u64;
        // Exact: below 2^53 the fraction is representable; above, `scaled` is integral.
        // Branch-free: the fraction is as good as random.
        let up = (scaled - truncated as f64 >= 0.5) & (truncated != u64::MAX);
        truncated + u64::from(up)
    } else {
        0
    }
}

/// The value a recorded integer stands for: `v * resolution`.
#[inline]
pub fn from_recorded(v: u64, resolution: f64) -> f64 {
    v as f64 * resolution
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(resolution_for_unit("s"), 1e-6);
        assert_eq!(resolution_for_unit("ms"), 1e-3);
        assert_eq!(resolution_for_unit("us"), 1.0);
        assert_eq!(resolution_for_unit("ns"), 1.0);
        assert_eq!(resolution_for_unit("By"), 1.0);
        assert_eq!(resolution_for_unit("1"), 1e-6);
        assert_eq!(resolution_for_unit("whatever"), 1e-3);
        assert_eq!(resolution_for_unit(""), 1e-3);
    }

    #[test]
    fn recorded() {
        assert_eq!(to_recorded(-1.0, 1.0), 0);
        assert_eq!(to_recorded(f64::NAN, 1.0), 0);
        assert_eq!(to_recorded(f64::NEG_INFINITY, 1.0), 0);
        assert_eq!(to_recorded(f64::INFINITY, 1.0), u64::MAX);
        assert_eq!(to_recorded(1e30, 1.0), u64::MAX);
        assert_eq!(to_recorded(2.5, 1.0), 3);
        assert_eq!(to_recorded(2.4, 1.0), 2);
        assert_eq!(to_recorded(0.0015, 1e-3), 2);
        assert_eq!(to_recorded(1.234567, 1e-6), 1_234_567);
        assert_eq!(from_recorded(1_234_567, 1e-6), 1_234_567.0 * 1e-6);
        assert_eq!(from_recorded(7, 1.0), 7.0);
        assert_eq!(to_recorded(0.49999999999999994, 1.0), 0);
        assert_eq!(to_recorded(4503599627370495.5, 1.0), 4503599627370496);
        assert_eq!(to_recorded(9007199254740993.0, 1.0), 9007199254740992);
        assert_eq!(to_recorded(1.8446744073709552e19, 1.0), u64::MAX);
    }

    #[test]
    fn matches_round() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x >> 2); // positive, every magnitude
            for r in [1.0, 1e-3, 1e-6] {
                let want = (v / r).round() as u64;
                assert_eq!(to_recorded(v, r), want, "{v} / {r}");
            }
            let small = (x % 10_000_000) as f64 / 1000.0;
            assert_eq!(to_recorded(small, 1e-3), (small / 1e-3).round() as u64);
        }
    }
}
