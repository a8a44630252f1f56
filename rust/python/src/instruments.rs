//! In-process instruments (`Counter`, `Gauge`, `Histogram`) over the global registry of
//! `revopipe_core::instruments`.
//!
//! The handles are frozen pyclasses holding an `Arc` to the shared Rust state, so a method
//! call is the pyo3 argument parsing plus an atomic add (counters, gauges) or one
//! uncontended mutex section (histograms): no Python-level work, and no `&mut self`
//! borrow flag. The state itself is atomics and a mutex, correct without the GIL too.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use revopipe_core::instruments::{self as core, InstrumentError, Meta, Reading, Registry};

fn value_error(e: InstrumentError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn tags_tuple<'py>(py: Python<'py>, meta: &Meta) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, meta.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn repr(py: Python<'_>, class: &str, meta: &Meta) -> PyResult<String> {
    let name = PyString::new(py, &meta.name).repr()?;
    let unit = PyString::new(py, &meta.unit).repr()?;
    let tags = tags_tuple(py, meta)?.repr()?;
    Ok(format!("{class}(name={name}, unit={unit}, tags={tags})"))
}

/// A monotonic counter: `inc(amount=1.0)`; collected as a cumulative total.
#[pyclass(frozen, module = "revopipe._core")]
pub struct Counter {
    inner: Arc<core::Counter>,
}

#[pymethods]
impl Counter {
    /// Adds `amount` (default 1). Raises ValueError if it is negative, NaN or infinite.
    #[pyo3(signature = (amount = 1.0))]
    fn inc(&self, amount: f64) -> PyResult<()> {
        self.inner.inc(amount).map_err(value_error)
    }

    /// The total since creation.
    #[getter]
    fn value(&self) -> f64 {
        self.inner.value()
    }

    /// The metric name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.meta().name
    }

    /// The unit.
    #[getter]
    fn unit(&self) -> &str {
        &self.inner.meta().unit
    }

    /// The tags as sorted (key, value) pairs.
    #[getter]
    fn tags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        tags_tuple(py, self.inner.meta())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr(py, "Counter", self.inner.meta())
    }
}

/// A value that goes up and down: `set`, `inc`, `dec`; collected as its current value.
#[pyclass(frozen, module = "revopipe._core")]
pub struct Gauge {
    inner: Arc<core::Gauge>,
}

#[pymethods]
impl Gauge {
    /// Replaces the value.
    fn set(&self, value: f64) {
        self.inner.set(value);
    }

    /// Adds `amount` (default 1).
    #[pyo3(signature = (amount = 1.0))]
    fn inc(&self, amount: f64) {
        self.inner.add(amount);
    }

    /// Subtracts `amount` (default 1).
    #[pyo3(signature = (amount = 1.0))]
    fn dec(&self, amount: f64) {
        self.inner.add(-amount);
    }

    /// The current value.
    #[getter]
    fn value(&self) -> f64 {
        self.inner.value()
    }

    /// The metric name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.meta().name
    }

    /// The unit.
    #[getter]
    fn unit(&self) -> &str {
        &self.inner.meta().unit
    }

    /// The tags as sorted (key, value) pairs.
    #[getter]
    fn tags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        tags_tuple(py, self.inner.meta())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr(py, "Gauge", self.inner.meta())
    }
}

/// A distribution: `record(value)`; collected as the observations since the last collect.
#[pyclass(frozen, module = "revopipe._core")]
pub struct Histogram {
    inner: Arc<core::Histogram>,
}

#[pymethods]
impl Histogram {
    /// Records one observation (NaN and infinities are ignored).
    fn record(&self, value: f64) {
        self.inner.record(value);
    }

    /// Records one observation and keeps it as an exemplar of the trace that produced it.
    fn record_exemplar(&self, value: f64, trace_id: &str, span_id: &str) -> PyResult<()> {
        self.inner
            .record_exemplar(value, trace_id, span_id)
            .map_err(value_error)
    }

    /// Observations recorded since creation (collects do not reset it).
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }

    /// The size of one HdrHistogram unit, in the histogram's unit.
    #[getter]
    fn resolution(&self) -> f64 {
        self.inner.resolution()
    }

    /// The HdrHistogram precision.
    #[getter]
    fn significant_digits(&self) -> u8 {
        self.inner.significant_digits()
    }

    /// The metric name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.meta().name
    }

    /// The unit.
    #[getter]
    fn unit(&self) -> &str {
        &self.inner.meta().unit
    }

    /// The tags as sorted (key, value) pairs.
    #[getter]
    fn tags<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        tags_tuple(py, self.inner.meta())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        repr(py, "Histogram", self.inner.meta())
    }
}

/// The counter `name` with `tags` ((key, value) pairs), created on first use; the same
/// handle state for the same name and tags. Raises ValueError if that name and tags are
/// already another kind of instrument or have another unit.
#[pyfunction]
#[pyo3(signature = (name, unit = "1", tags = Vec::new()))]
fn counter(name: &str, unit: &str, tags: Vec<(String, String)>) -> PyResult<Counter> {
    let inner = Registry::global()
        .counter(name, unit, tags)
        .map_err(value_error)?;
    Ok(Counter { inner })
}

/// The gauge `name` with `tags`, created on first use (see `counter`).
#[pyfunction]
#[pyo3(signature = (name, unit = "1", tags = Vec::new()))]
fn gauge(name: &str, unit: &str, tags: Vec<(String, String)>) -> PyResult<Gauge> {
    let inner = Registry::global()
        .gauge(name, unit, tags)
        .map_err(value_error)?;
    Ok(Gauge { inner })
}

/// The histogram `name` with `tags`, created on first use with `significant_digits`
/// (1..=5) of HdrHistogram precision (see `counter`).
#[pyfunction]
#[pyo3(signature = (name, unit = "s", tags = Vec::new(), significant_digits = 3))]
fn histogram(
    name: &str,
    unit: &str,
    tags: Vec<(String, String)>,
    significant_digits: i64,
) -> PyResult<Histogram> {
    let digits = match u8::try_from(significant_digits) {
        Ok(d @ 1..=5) => d,
        _ => {
            return Err(PyValueError::new_err(format!(
                "significant_digits must be between 1 and 5, got {significant_digits}"
            )))
        }
    };
    let inner = Registry::global()
        .histogram(name, unit, tags, digits)
        .map_err(value_error)?;
    Ok(Histogram { inner })
}

/// A snapshot of every instrument, as dicts, in order of creation.
///
/// Counters and gauges: {"kind": 0 | 1, "name", "unit", "tags", "value"}, counters as
/// their cumulative total. Histograms, only those with observations since the previous
/// collect, which this one takes: {"kind": 2, "name", "unit", "tags", "count", "sum",
/// "min", "max", "hdr", "resolution", "exemplars"}, hdr being a base64 compressed HdrHistogram V2 of
/// the values in units of resolution. The GIL is released while reading and encoding.
#[pyfunction]
fn collect_instruments(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    // read and encode without the GIL; the histograms' base64 texts, in order
    let (snapshots, hdrs) = py.detach(|| {
        let snapshots = Registry::global().collect();
        let hdrs: Vec<String> = snapshots
            .iter()
            .filter_map(|s| match &s.reading {
                Reading::Histogram(d) => Some(d.hdr.encode_v2_deflate_base64()),
                Reading::Value(_) => None,
            })
            .collect();
        (snapshots, hdrs)
    });
    let mut hdrs = hdrs.into_iter();
    let out = PyList::empty(py);
    for snap in snapshots {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "kind"), snap.kind.code())?;
        d.set_item(intern!(py, "name"), &snap.meta.name)?;
        d.set_item(intern!(py, "unit"), &snap.meta.unit)?;
        d.set_item(intern!(py, "tags"), tags_tuple(py, &snap.meta)?)?;
        match snap.reading {
            Reading::Value(v) => d.set_item(intern!(py, "value"), v)?,
            Reading::Histogram(h) => {
                d.set_item(intern!(py, "count"), h.count)?;
                d.set_item(intern!(py, "sum"), h.sum)?;
                d.set_item(intern!(py, "min"), h.min)?;
                d.set_item(intern!(py, "max"), h.max)?;
                d.set_item(intern!(py, "hdr"), hdrs.next())?;
                d.set_item(intern!(py, "resolution"), h.resolution)?;
                let exemplars = PyList::empty(py);
                for e in &h.exemplars {
                    exemplars.append((e.value, &e.trace_id, &e.span_id, e.timestamp_ns))?;
                }
                d.set_item(intern!(py, "exemplars"), exemplars)?;
            }
        }
        out.append(d)?;
    }
    Ok(out)
}

/// Drops every instrument from the registry (for tests). Handles already given out keep
/// working but are no longer collected.
#[pyfunction]
fn reset_instruments() {
    Registry::global().reset();
}

/// Adds the instrument classes and functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Counter>()?;
    m.add_class::<Gauge>()?;
    m.add_class::<Histogram>()?;
    m.add_function(wrap_pyfunction!(counter, m)?)?;
    m.add_function(wrap_pyfunction!(gauge, m)?)?;
    m.add_function(wrap_pyfunction!(histogram, m)?)?;
    m.add_function(wrap_pyfunction!(collect_instruments, m)?)?;
    m.add_function(wrap_pyfunction!(reset_instruments, m)?)?;
    Ok(())
}
