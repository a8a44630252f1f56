//! Buffers reused from call to call on each thread, so a steady stream of batches runs on
//! memory that is already mapped: fresh multi-megabyte buffers cost more in page faults than
//! the encoding itself.

use std::cell::Cell;

use revopipe_core::{BatchError, MetricBatch};

use crate::texts::Texts;

/// Retained per thread at most; a call that needed more frees it afterwards.
const MAX_RETAINED_BYTES: usize = 64 << 20;

/// Everything one call needs besides its result.
#[derive(Default)]
pub struct Scratch {
    pub texts: Texts,
    pub kinds: Vec<u8>,
    pub values: Vec<f64>,
    pub timestamps: Vec<i64>,
    pub out: Vec<u8>,
    /// Allocations for the borrowed views of `texts`, kept empty between calls (see
    /// [`reuse`]).
    pub names: Vec<&'static str>,
    pub units: Vec<&'static str>,
    pub pairs: Vec<(&'static str, &'static str)>,
    pub rows: Vec<&'static [(&'static str, &'static str)]>,
}

impl Scratch {
    /// Views the extracted columns as a [`MetricBatch`] and runs `f` on it and on the output
    /// buffer; the view's allocations go back into the scratch afterwards.
    pub fn with_batch<R>(
        &mut self,
        f: impl FnOnce(&MetricBatch<'_>, &mut Vec<u8>) -> R,
    ) -> Result<R, BatchError> {
        let mut names = reuse(std::mem::take(&mut self.names));
        let mut units = reuse(std::mem::take(&mut self.units));
        let mut pairs = reuse(std::mem::take(&mut self.pairs));
        let mut rows = reuse(std::mem::take(&mut self.rows));
        self.texts.strs(&self.texts.names, &mut names);
        self.texts.strs(&self.texts.units, &mut units);
        self.texts.pair_strs(&mut pairs);
        self.texts.rows(&pairs, &mut rows);
        let result = MetricBatch::new(
            &names,
            &self.kinds,
            &self.values,
            &units,
            &self.timestamps,
            &rows,
        )
        .map(|batch| f(&batch, &mut self.out));
        self.rows = reuse(rows);
        self.pairs = reuse(pairs);
        self.names = reuse(names);
        self.units = reuse(units);
        result
    }

    fn retained_bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        self.texts.retained_bytes()
            + bytes(&self.kinds)
            + bytes(&self.values)
            + bytes(&self.timestamps)
            + bytes(&self.out)
            + bytes(&self.names)
            + bytes(&self.units)
            + bytes(&self.pairs)
            + bytes(&self.rows)
    }
}

thread_local! {
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

/// This thread's scratch space, emptied. A nested call (e.g. from a generator passed as a
/// column) finds none and gets a fresh one.
pub fn take() -> Box<Scratch> {
    let mut scratch = SCRATCH.with(Cell::take).unwrap_or_default();
    scratch.texts.clear();
    scratch.kinds.clear();
    scratch.values.clear();
    scratch.timestamps.clear();
    scratch.out.clear();
    scratch
}

/// Gives the scratch space back for the next call on this thread, unless it grew too big.
pub fn give_back(scratch: Box<Scratch>) {
    if scratch.retained_bytes() <= MAX_RETAINED_BYTES {
        SCRATCH.with(|cell| cell.set(Some(scratch)));
    }
}

/// An empty vector that reuses `v`'s allocation for elements of another type with the same
/// layout (here: the same references with another lifetime). Collecting a vector's own
/// `into_iter()` in place keeps its buffer when the layouts match; nothing is ever mapped,
/// since the vector is emptied first.
pub fn reuse<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!("emptied")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_keeps_the_allocation() {
        let mut v: Vec<&'static str> = Vec::with_capacity(1000);
        v.push("x");
        let ptr = v.as_ptr() as usize;
        let local = String::from("local");
        let mut w: Vec<&str> = reuse(v);
        assert!(w.is_empty());
        assert_eq!(w.as_ptr() as usize, ptr);
        assert!(w.capacity() >= 1000);
        w.push(&local);
        let back: Vec<&'static str> = reuse(w);
        assert_eq!(back.as_ptr() as usize, ptr);
    }

    #[test]
    fn scratch_is_kept_and_emptied() {
        let mut s = take();
        s.out.extend_from_slice(b"abc");
        let ptr = s.out.as_ptr() as usize;
        give_back(s);
        let s = take();
        assert!(s.out.is_empty());
        assert_eq!(s.out.as_ptr() as usize, ptr);
        // Nested: the first is out, so a second take gets a fresh one.
        let nested = take();
        assert_eq!(nested.out.capacity(), 0);
        give_back(nested);
        give_back(s);
    }

    #[test]
    fn oversized_scratch_is_dropped() {
        let mut s = take();
        s.out = Vec::with_capacity(MAX_RETAINED_BYTES + 1);
        give_back(s);
        assert_eq!(take().out.capacity(), 0);
    }
}
