//! One series' accumulator for one window.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::hist::{Hdr, HdrStaging};
use crate::resolution::to_recorded;

/// Distinct values a set window keeps at most; past it, new values are not counted.
pub const SET_CAP: usize = 100_000;

/// Hashes `u64`s that are already well mixed (series keys) as themselves.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Mixes `u64`s that may be poorly distributed (f64 bit patterns) before hashing.
#[derive(Default, Clone, Copy)]
pub struct MixHasher(u64);

impl Hasher for MixHasher {
    #[inline]
    fn finish(&self) -> u64 {
        // The finalizer of SplitMix64.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

pub type IdBuild = BuildHasherDefault<IdHasher>;
pub type MixBuild = BuildHasherDefault<MixHasher>;

/// What one series gathered in one window. Which parts are used depends on the kind.
#[derive(Debug, Clone)]
pub struct Acc {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The last raw value by arrival (counter, gauge, set).
    pub last: f64,
    /// Counter: the sum of positive deltas.
    pub increase: f64,
    /// Histogram: the recorded integers.
    pub hdr: Option<Hdr>,
    /// Set: the distinct bit patterns seen (at most [`SET_CAP`]).
    pub set: Option<HashSet<u64, MixBuild>>,
}

impl Acc {
    pub fn new() -> Acc {
        Acc {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: f64::NAN,
            increase: 0.0,
            hdr: None,
            set: None,
        }
    }

    /// Folds one raw value into count / sum / min / max / last.
    #[inline]
    pub fn add_raw(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
    }

    /// Folds many finite histogram values: the fast path.
    #[inline]
    pub fn add_histogram_values(
        &mut self,
        values: &[f64],
        resolution: f64,
        sigfig: u8,
        staging: &mut HdrStaging,
    ) {
        let (mut sum, mut min, mut max) = (0.0, self.min, self.max);
        for &v in values {
            sum += v;
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
        }
        self.hdr
            .get_or_insert_with(|| Hdr::new(sigfig))
            .record_f64s(values, resolution, staging);
        self.count += values.len() as u64;
        self.sum += sum;
        self.min = min;
        self.max = max;
        if let Some(&v) = values.last() {
            self.last = v;
        }
    }

    /// Folds one histogram value.
    #[inline]
    pub fn add_histogram(&mut self, v: f64, resolution: f64, sigfig: u8) {
        self.add_raw(v);
        self.hdr
            .get_or_insert_with(|| Hdr::new(sigfig))
            .record(to_recorded(v, resolution));
    }

    /// Folds one set member. `-0.0` counts as `0.0`.
    #[inline]
    pub fn add_set(&mut self, v: f64) {
        self.add_raw(v);
        let set = self.set.get_or_insert_with(HashSet::default);
        if set.len() < SET_CAP {
            set.insert((v + 0.0).to_bits());
        }
    }

    /// Merges another instance's histogram window.
    pub fn merge_histogram(
        &mut self,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        hdr: &Hdr,
        sigfig: u8,
    ) {
        self.count += count;
        self.sum += sum;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        self.hdr.get_or_insert_with(|| Hdr::new(sigfig)).merge(hdr);
    }
}
