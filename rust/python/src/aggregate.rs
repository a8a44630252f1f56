//! `revopipe._core.Aggregator`: windowed per-series aggregation (see
//! `revopipe_core::aggregate` for the semantics).
//!
//! The Rust aggregator sits behind a mutex in a frozen pyclass: columns are copied while
//! attached to the interpreter, then the lock is taken and the work done detached (GIL
//! released), so other Python threads run and concurrent calls serialize on the lock
//! rather than on the GIL.

use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use revopipe_core::resolution::resolution_for_unit;
use revopipe_core::{AggregateError, Aggregator, AggregatorConfig, BatchError, WindowResult};

use crate::extract;
use crate::scratch::{self, Scratch};

fn value_error(e: impl ToString) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Windowed per-series aggregation with HDR percentiles.
///
/// Aggregator(window_ns, percentiles=(50, 90, 95, 99, 99.9), significant_digits=3,
/// max_series_per_metric=2000, grace_ns=0, late_policy="drop")
///
/// Tumbling windows aligned to the epoch; flush(now_ns) returns one dict per series per
/// closed window. Raises ValueError for an invalid argument.
#[pyclass(frozen, module = "revopipe._core", name = "Aggregator")]
pub struct PyAggregator {
    inner: Mutex<Aggregator>,
}

impl PyAggregator {
    fn lock(&self) -> MutexGuard<'_, Aggregator> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Aggregates the batch in `s`.
fn ingest_scratch(agg: &mut Aggregator, s: &mut Scratch) -> Result<(), BatchError> {
    s.with_batch(|batch, _| agg.ingest(batch))
}

fn result_dict<'py>(py: Python<'py>, r: WindowResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &r.name)?;
    d.set_item("unit", &r.unit)?;
    let tags: Vec<Bound<'py, PyTuple>> = r
        .tags
        .iter()
        .map(|(k, v)| PyTuple::new(py, [k.as_str(), v.as_str()]))
        .collect::<PyResult<_>>()?;
    d.set_item("tags", PyTuple::new(py, tags)?)?;
    d.set_item("kind", r.kind.code())?;
    d.set_item("start_ns", r.start_ns)?;
    d.set_item("end_ns", r.end_ns)?;
    d.set_item("count", r.count)?;
    d.set_item("sum", r.sum)?;
    d.set_item("min", r.min)?;
    d.set_item("max", r.max)?;
    d.set_item("last", r.last)?;
    d.set_item("increase", r.increase)?;
    d.set_item("rate", r.rate)?;
    d.set_item("distinct", r.distinct)?;
    let percentiles: Vec<Bound<'py, PyTuple>> = r
        .percentiles
        .iter()
        .map(|&(q, v)| PyTuple::new(py, [q, v]))
        .collect::<PyResult<_>>()?;
    d.set_item("percentiles", PyList::new(py, percentiles)?)?;
    d.set_item("hdr", r.hdr.map(|h| h.encode_v2_deflate_base64()))?;
    d.set_item("resolution", resolution_for_unit(&r.unit))?;
    Ok(d)
}

/// A `(key, value)` tag tuple argument as owned pairs.
fn tag_pairs(tags: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    tags.extract::<Vec<(String, String)>>().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(
            "tags: expected a sequence of (key, value) str pairs",
        )
    })
}

#[pymethods]
impl PyAggregator {
    #[new]
    #[pyo3(signature = (
        window_ns,
        percentiles = vec![50.0, 90.0, 95.0, 99.0, 99.9],
        significant_digits = 3,
        max_series_per_metric = 2000,
        grace_ns = 0,
        late_policy = "drop",
    ))]
    fn new(
        window_ns: i64,
        percentiles: Vec<f64>,
        significant_digits: i64,
        max_series_per_metric: i64,
        grace_ns: i64,
        late_policy: &str,
    ) -> PyResult<Self> {
        let significant_digits = u8::try_from(significant_digits)
            .ok()
            .filter(|d| (1..=5).contains(d))
            .ok_or_else(|| {
                value_error(format!(
                    "significant_digits must be in 1..=5, got {significant_digits}"
                ))
            })?;
        let max_series_per_metric = usize::try_from(max_series_per_metric).map_err(|_| {
            value_error(format!(
                "max_series_per_metric must be >= 0, got {max_series_per_metric}"
            ))
        })?;
        let config = AggregatorConfig {
            window_ns,
            grace_ns,
            significant_digits,
            percentiles,
            max_series_per_metric,
            late_policy: late_policy.parse().map_err(value_error)?,
        };
        let agg = Aggregator::new(config).map_err(|e: AggregateError| value_error(e))?;
        Ok(PyAggregator {
            inner: Mutex::new(agg),
        })
    }

    /// Aggregates a columnar batch (the columns of `encode_jsonl`). The GIL is released
    /// while aggregating. Raises ValueError / TypeError for malformed columns.
    #[pyo3(signature = (names, kinds, values, units, timestamps, tags))]
    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &self,
        py: Python<'_>,
        names: &Bound<'_, PyAny>,
        kinds: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        units: &Bound<'_, PyAny>,
        timestamps: &Bound<'_, PyAny>,
        tags: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let mut s = scratch::take();
        extract::batch(&mut s, names, kinds, values, units, timestamps, tags)?;
        let (s, result) = py.detach(|| {
            let result = ingest_scratch(&mut self.lock(), &mut s);
            (s, result)
        });
        scratch::give_back(s);
        result.map_err(value_error)
    }

    /// Aggregates many histogram values of one series at one timestamp (the fast path).
    /// `values` is a float64 buffer (array('d'), numpy float64, ...). The GIL is released
    /// while aggregating.
    #[pyo3(signature = (name, unit, tags, values, timestamp_ns))]
    fn ingest_values(
        &self,
        py: Python<'_>,
        name: &str,
        unit: &str,
        tags: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        timestamp_ns: i64,
    ) -> PyResult<()> {
        let tags = tag_pairs(tags)?;
        let mut s = scratch::take();
        let what = "a float64 buffer such as array('d')";
        extract::buffer(values, "values", what, &mut s.values)?;
        let s = py.detach(|| {
            self.lock()
                .ingest_values(name, unit, &tags, &s.values, timestamp_ns);
            s
        });
        scratch::give_back(s);
        Ok(())
    }

    /// Merges another instance's histogram window: its count, sum, min, max and the
    /// base64 compressed-V2 HdrHistogram (a flushed dict's "hdr"). start_ns picks the
    /// window. Raises ValueError if hdr_b64 cannot be decoded.
    #[pyo3(signature = (name, unit, tags, start_ns, count, sum, min, max, hdr_b64))]
    #[allow(clippy::too_many_arguments)]
    fn merge_snapshot(
        &self,
        py: Python<'_>,
        name: &str,
        unit: &str,
        tags: &Bound<'_, PyAny>,
        start_ns: i64,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        hdr_b64: &str,
    ) -> PyResult<()> {
        let tags = tag_pairs(tags)?;
        py.detach(|| {
            self.lock()
                .merge_snapshot(name, unit, &tags, start_ns, count, sum, min, max, hdr_b64)
        })
        .map_err(value_error)
    }

    /// Closes the windows ending at or before now_ns - grace_ns (all of them if force) and
    /// returns one dict per series per closed window, by window start.
    #[pyo3(signature = (now_ns, force = false))]
    fn flush<'py>(
        &self,
        py: Python<'py>,
        now_ns: i64,
        force: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let results = py.detach(|| self.lock().flush(now_ns, force));
        let dicts: Vec<Bound<'py, PyDict>> = results
            .into_iter()
            .map(|r| result_dict(py, r))
            .collect::<PyResult<_>>()?;
        PyList::new(py, dicts)
    }

    /// Late events so far.
    #[getter]
    fn late_events(&self, py: Python<'_>) -> u64 {
        py.detach(|| self.lock().late_events())
    }

    /// Events sent to an overflow series so far.
    #[getter]
    fn overflow_events(&self, py: Python<'_>) -> u64 {
        py.detach(|| self.lock().overflow_events())
    }

    /// Series known, overflow series included.
    #[getter]
    fn series_count(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().series_count())
    }

    /// Windows holding events not yet flushed.
    #[getter]
    fn open_windows(&self, py: Python<'_>) -> usize {
        py.detach(|| self.lock().open_windows())
    }

    /// The end of the newest closed window (ns); events before it are late.
    #[getter]
    fn watermark(&self, py: Python<'_>) -> i64 {
        py.detach(|| self.lock().watermark())
    }
}
