//! `revopipe._core`: thin Python bindings over `revopipe-core`.
//!
//! Each call first copies the Python columns into Rust-owned memory while attached to the
//! interpreter (strings into one arena; numeric columns through the buffer protocol, with
//! no per-element Python calls), then detaches (releases the GIL) for the actual work, so
//! other Python threads run meanwhile. The buffers are reused by the next call on the same
//! thread (see `scratch`).

mod aggregate;
mod extract;
mod hist;
mod instruments;
mod loadgen;
mod scratch;
mod statsd;
mod texts;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use revopipe_core::{BatchError, SeriesHasher};

use crate::scratch::{reuse, Scratch};

fn value_error(e: BatchError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Builds the batch view over `s` and encodes it into `s.out`.
fn encode(s: &mut Scratch) -> Result<(), BatchError> {
    #[allow(clippy::redundant_closure)] // the closure is what makes the call generic over lifetimes
    s.with_batch(|batch, out| revopipe_core::encode_jsonl(batch, out))
}

/// Hashes each (name, tags) row of `s`.
fn hash(s: &mut Scratch) -> Result<Vec<u64>, BatchError> {
    let texts = &s.texts;
    let mut pairs = reuse(std::mem::take(&mut s.pairs));
    let mut rows = reuse(std::mem::take(&mut s.rows));
    texts.pair_strs(&mut pairs);
    texts.rows(&pairs, &mut rows);
    let result = if texts.names.len() == rows.len() {
        let mut hasher = SeriesHasher::new();
        Ok(texts
            .names
            .iter()
            .zip(&rows)
            .map(|(&name, tags)| hasher.key(texts.get(name), tags))
            .collect())
    } else {
        Err(BatchError::LengthMismatch {
            column: "tags",
            len: rows.len(),
            expected: texts.names.len(),
        })
    };
    s.rows = reuse(rows);
    s.pairs = reuse(pairs);
    result
}

/// Encode a columnar metric batch as JSON lines.
///
/// Row i is the metric (names[i], kinds[i], values[i], units[i], timestamps[i], tags[i]);
/// each becomes one line
/// {"type":"metric","name":...,"kind":...,"value":...,"unit":...,"timestamp":...,"tags":{...}}
/// ending in a newline. kinds are bytes of codes 0 counter, 1 gauge, 2 histogram, 3 set;
/// values a float64 buffer (array('d')); timestamps an int64 buffer (array('q'), ns); tags
/// per row a tuple of (key, value) str pairs. NaN and infinite values are written as null.
/// The GIL is released while encoding.
///
/// Raises ValueError (naming the column and row) if the columns differ in length or a kind
/// is not 0..3, TypeError if a column has the wrong type.
#[pyfunction]
#[pyo3(signature = (names, kinds, values, units, timestamps, tags))]
fn encode_jsonl<'py>(
    py: Python<'py>,
    names: &Bound<'py, PyAny>,
    kinds: &Bound<'py, PyAny>,
    values: &Bound<'py, PyAny>,
    units: &Bound<'py, PyAny>,
    timestamps: &Bound<'py, PyAny>,
    tags: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut s = scratch::take();
    extract::batch(&mut s, names, kinds, values, units, timestamps, tags)?;

    let (s, encoded) = py.detach(move || {
        let result = encode(&mut s);
        (s, result)
    });
    let result = encoded
        .map(|()| PyBytes::new(py, &s.out))
        .map_err(value_error);
    scratch::give_back(s);
    result
}

/// The stable 64-bit series key of each (names[i], tags[i]).
///
/// XXH3-64 (seed 0) of the name and the tags sorted by key then value, each string
/// terminated by the byte 0xFF: the same on every platform and run, and independent of
/// the order of the tags. The GIL is released while hashing.
///
/// Raises ValueError if the columns differ in length, TypeError if one has the wrong type.
#[pyfunction]
#[pyo3(signature = (names, tags))]
fn series_keys<'py>(
    py: Python<'py>,
    names: &Bound<'py, PyAny>,
    tags: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let mut s = scratch::take();
    let mut strings = extract::Strings::new(&mut s.texts);
    extract::names(&mut strings, names)?;
    extract::tags(&mut strings, tags)?;
    drop(strings);
    let (s, keys) = py.detach(move || {
        let result = hash(&mut s);
        (s, result)
    });
    scratch::give_back(s);
    PyList::new(py, keys.map_err(value_error)?)
}

/// revopipe's Rust core: JSON-lines encoding of metric batches and series keys.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(encode_jsonl, m)?)?;
    m.add_function(wrap_pyfunction!(series_keys, m)?)?;
    m.add_class::<aggregate::PyAggregator>()?;
    instruments::register(m)?;
    hist::register(m)?;
    statsd::register(m)?;
    loadgen::register(m)?;
    Ok(())
}
