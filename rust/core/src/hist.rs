//! [`Hdr`]: an auto-resizing HDR histogram of recorded integers, with the standard
//! HdrHistogram serialization.
//!
//! Values are non-negative integers: raw `f64` values are turned into them with
//! [`crate::resolution::to_recorded`] (see [`crate::resolution`]); two histograms can only be
//! meaningfully merged when their integers were recorded with the same resolution.
//!
//! The wire format is the standard HdrHistogram "V2" encoding (cookie `0x1c849303`), or its
//! zlib-compressed wrapper "compressed V2" (cookie `0x1c849304`), as written by the Java,
//! C, Go and Python implementations. [`Hdr::encode_v2_deflate_base64`] produces base64 of
//! compressed V2, which Python's `hdrhistogram` package reads with
//! `HdrHistogram.decode(b64)`; [`Hdr::decode_base64`] reads either form.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer, V2Serializer};
use hdrhistogram::Histogram;

/// Why an encoded histogram could not be read (or a histogram could not be made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HdrError {
    /// The text is not valid (standard, padded) base64.
    Base64(String),
    /// The bytes are not a V2 or compressed V2 HdrHistogram encoding.
    Decode(String),
    /// The number of significant digits is not in `1..=5`.
    SignificantDigits(u8),
}

impl fmt::Display for HdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HdrError::Base64(e) => write!(f, "histogram snapshot is not valid base64: {e}"),
            HdrError::Decode(e) => write!(
                f,
                "histogram snapshot is not a V2 / compressed V2 HdrHistogram encoding: {e}"
            ),
            HdrError::SignificantDigits(d) => {
                write!(f, "significant digits must be in 1..=5, got {d}")
            }
        }
    }
}

impl std::error::Error for HdrError {}

/// An auto-resizing HDR histogram of `u64` values with `u64` counts.
///
/// Lowest discernible value 1; the highest trackable value grows as needed. Quantile
/// answers are within a relative error of `10^-sigfig` of an actually recorded value.
#[derive(Clone)]
pub struct Hdr {
    inner: Histogram<u64>,
}

impl fmt::Debug for Hdr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hdr")
            .field("sigfig", &self.inner.sigfig())
            .field("count", &self.inner.len())
            .field("min", &self.inner.min())
            .field("max", &self.inner.max())
            .finish()
    }
}

impl PartialEq for Hdr {
    /// Same counts in the same buckets at the same precision (the highest trackable value,
    /// i.e. how far each has grown, may differ).
    fn eq(&self, other: &Hdr) -> bool {
        let (a, b) = (&self.inner, &other.inner);
        a.sigfig() == b.sigfig()
            && a.len() == b.len()
            && a.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .eq(b
                    .iter_recorded()
                    .map(|v| (v.value_iterated_to(), v.count_at_value())))
    }
}

impl Hdr {
    /// An empty auto-resizing histogram keeping `sigfig` significant decimal digits;
    /// `sigfig` is clamped into `1..=5` (use [`Hdr::try_new`] to reject other values).
    pub fn new(sigfig: u8) -> Hdr {
        Hdr::try_new(sigfig.clamp(1, 5)).unwrap_or_else(|_| unreachable!())
    }

    /// An empty auto-resizing histogram keeping `sigfig` significant decimal digits.
    ///
    /// # Errors
    /// [`HdrError::SignificantDigits`] unless `sigfig` is in `1..=5`.
    pub fn try_new(sigfig: u8) -> Result<Hdr, HdrError> {
        if !(1..=5).contains(&sigfig) {
            return Err(HdrError::SignificantDigits(sigfig));
        }
        let mut inner = Histogram::new(sigfig).map_err(|_| HdrError::SignificantDigits(sigfig))?;
        inner.auto(true);
        Ok(Hdr { inner })
    }

    /// Records one occurrence of `value`.
    #[inline]
    pub fn record(&mut self, value: u64) {
        // Auto-resizing: recording only fails when the histogram cannot grow (sizes beyond
        // `usize`), in which case the value is clamped to the highest trackable one.
        if self.inner.record(value).is_err() {
            self.inner.saturating_record(value);
        }
    }

    /// Records `count` occurrences of `value`.
    #[inline]
    pub fn record_n(&mut self, value: u64, count: u64) {
        if self.inner.record_n(value, count).is_err() {
            self.inner.saturating_record_n(value, count);
        }
    }

    /// Adds every count of `other` to this histogram (growing it as needed).
    ///
    /// Exact (bucket for bucket) when both have the same significant digits.
    pub fn merge(&mut self, other: &Hdr) {
        // Only fails if `self` could not resize, impossible with auto-resize on.
        let _ = self.inner.add(&other.inner);
    }

    /// The value at quantile `q` (`0.0..=1.0`): the highest value equivalent to the
    /// recorded value at that rank; 0 when empty.
    #[inline]
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        self.inner.value_at_quantile(q)
    }

    /// The value at percentile `p` (`0.0..=100.0`).
    #[inline]
    pub fn value_at_percentile(&self, p: f64) -> u64 {
        self.inner.value_at_percentile(p)
    }

    /// The number of recorded values.
    #[inline]
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// Whether nothing was recorded.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The lowest recorded value (bucket-equivalent); 0 when empty.
    #[inline]
    pub fn min(&self) -> u64 {
        self.inner.min()
    }

    /// The highest recorded value (bucket-equivalent); 0 when empty.
    #[inline]
    pub fn max(&self) -> u64 {
        self.inner.max()
    }

    /// The number of significant digits kept.
    #[inline]
    pub fn sigfig(&self) -> u8 {
        self.inner.sigfig()
    }

    /// Forgets every recorded value, keeping the allocation.
    pub fn clear(&mut self) {
        self.inner.reset();
    }

    /// The wrapped `hdrhistogram` histogram.
    pub fn as_histogram(&self) -> &Histogram<u64> {
        &self.inner
    }

    /// The compressed V2 encoding (cookie `0x1c849304`, zlib-deflated V2).
    pub fn encode_v2_deflate(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Serialization into a Vec only fails for counts above i64::MAX.
        if V2DeflateSerializer::new()
            .serialize(&self.inner, &mut out)
            .is_err()
        {
            out.clear();
        }
        out
    }

    /// The plain (uncompressed) V2 encoding (cookie `0x1c849303`).
    pub fn encode_v2(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if V2Serializer::new()
            .serialize(&self.inner, &mut out)
            .is_err()
        {
            out.clear();
        }
        out
    }

    /// Standard base64 (padded) of the compressed V2 encoding: what Python's
    /// `hdrhistogram` package reads with `HdrHistogram.decode(b64)`.
    pub fn encode_v2_deflate_base64(&self) -> String {
        STANDARD.encode(self.encode_v2_deflate())
    }

    /// Reads a V2 or compressed V2 encoding. The result auto-resizes.
    ///
    /// # Errors
    /// [`HdrError::Decode`] if the bytes are not such an encoding.
    pub fn decode(bytes: &[u8]) -> Result<Hdr, HdrError> {
        let mut reader = bytes;
        let mut inner: Histogram<u64> = Deserializer::new()
            .deserialize(&mut reader)
            .map_err(|e| HdrError::Decode(format!("{e:?}")))?;
        inner.auto(true);
        Ok(Hdr { inner })
    }

    /// Reads standard base64 (surrounding whitespace ignored) of a V2 or compressed V2
    /// encoding. The result auto-resizes.
    ///
    /// # Errors
    /// [`HdrError::Base64`] for invalid base64, [`HdrError::Decode`] if the bytes are not
    /// such an encoding.
    pub fn decode_base64(text: &str) -> Result<Hdr, HdrError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| HdrError::Base64(e.to_string()))?;
        Hdr::decode(&bytes)
    }
}

/// Scratch counts for [`Hdr::record_f64s`], reused from call to call (one per thread or
/// per owner; any precision).
///
/// Recording many values one by one into `hdrhistogram` costs a non-inlined call and
/// min/max bookkeeping each; staging counts them in a flat array of the same bucket layout
/// first, then adds each touched bucket once with `record_n`. The result is identical.
#[derive(Debug, Default, Clone)]
pub struct HdrStaging {
    counts: Vec<u64>,
}

impl HdrStaging {
    /// Empty scratch space.
    pub fn new() -> HdrStaging {
        HdrStaging::default()
    }
}

/// The bucket layout of a histogram with lowest discernible value 1 (as `hdrhistogram`
/// lays it out).
#[derive(Clone, Copy)]
struct Layout {
    half_magnitude: u32,
    half_count: u64,
    mask: u64,
    leading_zero_base: u32,
}

impl Layout {
    fn new(sigfig: u8) -> Layout {
        let largest = 2 * 10u64.pow(u32::from(sigfig));
        let count_magnitude = 64 - (largest - 1).leading_zeros(); // ceil(log2(largest))
        let half_magnitude = count_magnitude - 1;
        let count = 1u64 << count_magnitude;
        Layout {
            half_magnitude,
            half_count: count / 2,
            mask: count - 1,
            leading_zero_base: 64 - half_magnitude - 1,
        }
    }

    #[inline(always)]
    fn index(self, value: u64) -> usize {
        let bucket = self.leading_zero_base - (value | self.mask).leading_zeros();
        let sub_bucket = value >> bucket;
        (((u64::from(bucket) + 1) << self.half_magnitude) + sub_bucket - self.half_count) as usize
    }

    /// The lowest value of the bucket at `index`.
    fn value_for(self, index: usize) -> u64 {
        let index = index as u64;
        let bucket = (index >> self.half_magnitude) as i64 - 1;
        let sub_bucket = (index & (self.half_count - 1)) + self.half_count;
        if bucket < 0 {
            sub_bucket - self.half_count
        } else {
            sub_bucket << bucket
        }
    }
}

impl Hdr {
    /// Records `to_recorded(v, resolution)` for every `v` of `values` (callers filter out
    /// what they do not want recorded); fast for many values, through `staging`.
    pub fn record_f64s(&mut self, values: &[f64], resolution: f64, staging: &mut HdrStaging) {
        use crate::resolution::to_recorded;
        if values.len() < 64 {
            for &v in values {
                self.record(to_recorded(v, resolution));
            }
            return;
        }
        let layout = Layout::new(self.sigfig());
        let counts = &mut staging.counts;
        let (mut lo, mut hi) = (usize::MAX, 0usize);
        for &v in values {
            let i = layout.index(to_recorded(v, resolution));
            if i >= counts.len() {
                counts.resize(i + 1, 0);
            }
            counts[i] += 1;
            lo = lo.min(i);
            hi = hi.max(i);
        }
        if lo > hi {
            return;
        }
        for (i, c) in counts[lo..=hi].iter_mut().enumerate() {
            if *c != 0 {
                self.record_n(layout.value_for(lo + i), *c);
                *c = 0;
            }
        }
    }
}

impl Hdr {
    /// How many recorded values lie at or below each of `bounds` (in the histogram's unit,
    /// ascending; each bound becomes `to_recorded(bound, resolution)`): the cumulative
    /// buckets of a Prometheus or OTLP explicit-bounds histogram.
    ///
    /// A recorded integer is only known to its HDR bucket, so a bucket counts as at or below
    /// a bound when its lowest equivalent value is: a value equal to the bound is always
    /// counted, and a value above it only when within the histogram's precision of it.
    pub fn counts_at_or_below(&self, bounds: &[f64], resolution: f64) -> Vec<u64> {
        use crate::resolution::to_recorded;
        let h = &self.inner;
        let thresholds: Vec<u64> = bounds.iter().map(|&b| to_recorded(b, resolution)).collect();
        let mut out = vec![0u64; bounds.len()];
        let mut next = 0; // first bound the current value may still be at or below
        let mut below = 0u64; // values counted so far
        for v in h.iter_recorded() {
            let low = h.lowest_equivalent(v.value_iterated_to());
            while next < thresholds.len() && thresholds[next] < low {
                out[next] = below;
                next += 1;
            }
            below += v.count_at_value();
        }
        for slot in &mut out[next..] {
            *slot = below;
        }
        out
    }
}

impl Default for Hdr {
    /// An empty histogram with 3 significant digits.
    fn default() -> Hdr {
        Hdr::new(3)
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn counts_at_or_below_match_a_sorted_reference() {
        let mut h = Hdr::new(3);
        // exact region of a 3-digit histogram: below 2048 every integer has its own bucket
        let values = [0u64, 1, 5, 5, 10, 100, 1000, 2000];
        for &v in &values {
            h.record(v);
        }
        let bounds = [0.0, 1.0, 4.0, 5.0, 99.0, 100.0, 1500.0, 5000.0];
        let got = h.counts_at_or_below(&bounds, 1.0);
        let want: Vec<u64> = bounds
            .iter()
            .map(|&b| values.iter().filter(|&&v| v as f64 <= b).count() as u64)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_value_equal_to_a_bound_is_at_or_below_it() {
        let mut h = Hdr::new(3);
        // 0.005 s at 1 µs resolution sits in a bucket 4 units wide
        h.record(crate::resolution::to_recorded(0.005, 1e-6));
        let got = h.counts_at_or_below(&[0.0049, 0.005, 0.01], 1e-6);
        assert_eq!(got, vec![0, 1, 1]);
        assert_eq!(Hdr::new(3).counts_at_or_below(&[1.0], 1.0), vec![0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_quantiles() {
        let mut h = Hdr::new(3);
        assert!(h.is_empty());
        for v in 1..=1000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.value_at_quantile(0.5), 500);
        assert_eq!(h.value_at_quantile(1.0), 1000);
        assert_eq!(h.min(), 1);
        // Auto-resizing far beyond the initial range.
        h.record(u64::MAX / 4);
        assert_eq!(h.count(), 1001);
        assert!(
            h.max() >= u64::MAX / 4 - (u64::MAX / 4) / 1000,
            "{}",
            h.max()
        );
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Hdr::new(3);
        let mut b = Hdr::new(3);
        let mut all = Hdr::new(3);
        for v in 0..500u64 {
            a.record(v * 7);
            all.record(v * 7);
        }
        for v in 0..300u64 {
            b.record(v * 1_000_003);
            all.record(v * 1_000_003);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn round_trips_both_encodings() {
        let mut h = Hdr::new(2);
        for v in [0u64, 1, 5, 5, 100, 12_345, 1 << 40] {
            h.record(v);
        }
        let b64 = h.encode_v2_deflate_base64();
        let back = Hdr::decode_base64(&b64).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.sigfig(), 2);
        let plain = STANDARD.encode(h.encode_v2());
        assert_eq!(Hdr::decode_base64(&plain).unwrap(), h);
        // The decoded histogram keeps auto-resizing.
        let mut back = back;
        back.record(u64::MAX / 2);
        assert_eq!(back.count(), h.count() + 1);
        assert_eq!(&b64[..4], "HIST"); // 0x1c849304 in base64
    }

    #[test]
    fn staged_recording_is_identical() {
        let mut staging = HdrStaging::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for sigfig in 1..=5u8 {
            for spread in [1.0, 1e3, 1e6, 1e12, 1e19, 1e25] {
                let values: Vec<f64> = (0..3000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x >> 11) as f64 / (1u64 << 53) as f64 * spread
                    })
                    .chain([0.0, -1.0, 0.4, 0.6, 1.0])
                    .collect();
                let mut direct = Hdr::new(sigfig);
                for &v in &values {
                    direct.record(crate::resolution::to_recorded(v, 1e-3));
                }
                let mut staged = Hdr::new(sigfig);
                staged.record_f64s(&values[..10], 1e-3, &mut staging);
                staged.record_f64s(&values[10..], 1e-3, &mut staging);
                assert_eq!(staged, direct, "sigfig {sigfig} spread {spread}");
                assert_eq!(staged.max(), direct.max());
                assert_eq!(staged.min(), direct.min());
                assert_eq!(staged.value_at_quantile(0.5), direct.value_at_quantile(0.5));
                assert!(staging.counts.iter().all(|&c| c == 0));
            }
        }
        let layout = Layout::new(3);
        for v in [0u64, 1, 2047, 2048, 4095, 4096, 1 << 40, u64::MAX] {
            let i = layout.index(v);
            assert_eq!(layout.index(layout.value_for(i)), i, "{v}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            Hdr::decode_base64("not base64!"),
            Err(HdrError::Base64(_))
        ));
        assert!(matches!(
            Hdr::decode_base64("AAAAAAAA"),
            Err(HdrError::Decode(_))
        ));
        assert_eq!(Hdr::try_new(0), Err(HdrError::SignificantDigits(0)));
        assert_eq!(Hdr::try_new(6), Err(HdrError::SignificantDigits(6)));
        assert_eq!(Hdr::new(9).sigfig(), 5);
    }
}
