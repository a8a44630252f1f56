//! `revopipe._core.StatsdParser`: StatsD / DogStatsD buffers into metric batch columns
//! (see `revopipe_core::statsd` for the semantics).
//!
//! The parse runs detached (GIL released). The result's name, unit and tags columns are
//! tuples whose items are shared Python objects, one set per series made once and kept
//! across calls, so a steady stream of lines creates no Python strings at all; values and
//! timestamps come back as native-endian bytes for `array('d'/'q').frombytes`.
//!
//! `read_datagrams` / `discard_datagrams` drain a UDP socket many datagrams per call, so
//! an event loop pays one turn per wakeup rather than one per datagram.

use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use revopipe_core::statsd::{self as core, StatsdCounts, StatsdParser, StatsdRows};

/// The Python objects of one series, made when it first appears in a result.
struct SeriesObjects {
    name: Py<PyString>,
    unit: Py<PyString>,
    tags: Py<PyTuple>,
}

struct State {
    parser: StatsdParser,
    /// The rows buffer, reused from call to call.
    rows: StatsdRows,
    /// By series id; `0..objects.len()` are made.
    objects: Vec<SeriesObjects>,
}

/// Parses StatsD and DogStatsD lines, a whole buffer of datagrams per call.
///
/// StatsdParser(max_series=100_000)
///
/// Keeps per-series state (counter totals, gauge values) for at most max_series series;
/// lines of further series are dropped and counted in `overflow_lines`. Raises ValueError
/// if max_series < 1.
#[pyclass(frozen, module = "revopipe._core", name = "StatsdParser")]
pub struct PyStatsdParser {
    state: Mutex<State>,
}

impl PyStatsdParser {
    /// Locks without the GIL's help: waiting detached, so a thread holding the lock while
    /// attached (making Python objects) can always finish.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, State> {
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }

    fn counts(&self, py: Python<'_>) -> StatsdCounts {
        self.lock(py).parser.counts()
    }
}

/// Makes the Python objects of the series the parser has and `objects` lacks.
fn make_objects(py: Python<'_>, st: &mut State) -> PyResult<()> {
    for id in st.objects.len()..st.parser.series_count() {
        let info = st.parser.series(id as u32);
        let tags = PyTuple::new(
            py,
            info.tags
                .iter()
                .map(|(k, v)| PyTuple::new(py, [&**k, &**v]))
                .collect::<PyResult<Vec<_>>>()?,
        )?;
        let unit = if info.unit == "ms" {
            intern!(py, "ms")
        } else {
            intern!(py, "1")
        };
        st.objects.push(SeriesObjects {
            name: PyString::new(py, info.name).unbind(),
            unit: unit.clone().unbind(),
            tags: tags.unbind(),
        });
    }
    Ok(())
}

fn ne_bytes<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    items: &[T],
    to_bytes: fn(T) -> [u8; N],
) -> PyResult<Bound<'py, PyBytes>> {
    PyBytes::new_with(py, items.len() * N, |buf| {
        for (chunk, &item) in buf.chunks_exact_mut(N).zip(items) {
            chunk.copy_from_slice(&to_bytes(item));
        }
        Ok(())
    })
}

#[pymethods]
impl PyStatsdParser {
    #[new]
    #[pyo3(signature = (max_series = 100_000))]
    fn new(max_series: i64) -> PyResult<Self> {
        let max_series = usize::try_from(max_series)
            .ok()
            .filter(|&n| n >= 1)
            .ok_or_else(|| {
                PyValueError::new_err(format!("max_series must be >= 1, got {max_series}"))
            })?;
        Ok(PyStatsdParser {
            state: Mutex::new(State {
                parser: StatsdParser::new(max_series),
                rows: StatsdRows::default(),
                objects: Vec::new(),
            }),
        })
    }

    /// Parses every newline-separated line of data; rows without a |T timestamp get
    /// now_ns. Returns the columns (names, kinds, values, units, timestamps, tags):
    /// names and units tuples of str, kinds bytes of kind codes, values the native
    /// float64 bytes and timestamps the native int64 bytes (for array.frombytes), tags a
    /// tuple of sorted (key, value) tuples. Never raises for bad input: malformed lines
    /// are counted and skipped. The GIL is released while parsing.
    #[pyo3(signature = (data, now_ns))]
    fn parse<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyBytes>,
        now_ns: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let bytes = data.as_bytes();
        let rows = py.detach(|| {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let mut rows = std::mem::take(&mut st.rows);
            st.parser.parse(bytes, now_ns, &mut rows);
            rows
        });
        let mut st = self.lock(py);
        make_objects(py, &mut st)?;
        let objects = &st.objects;
        let of = |i: usize| &objects[rows.series[i] as usize];
        let n = rows.len();
        let names = PyTuple::new(py, (0..n).map(|i| of(i).name.bind(py)))?;
        let units = PyTuple::new(py, (0..n).map(|i| of(i).unit.bind(py)))?;
        let tags = PyTuple::new(py, (0..n).map(|i| of(i).tags.bind(py)))?;
        let kinds = PyBytes::new(py, &rows.kinds);
        let values = ne_bytes(py, &rows.values, f64::to_ne_bytes)?;
        let timestamps = ne_bytes(py, &rows.timestamps, i64::to_ne_bytes)?;
        st.rows = rows;
        PyTuple::new(
            py,
            [
                names.into_any(),
                kinds.into_any(),
                values.into_any(),
                units.into_any(),
                timestamps.into_any(),
                tags.into_any(),
            ],
        )
    }

    /// The messages of the first malformed lines since the previous call (at most 5),
    /// each "reason: 'excerpt of the line'".
    fn take_errors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let errors = self.lock(py).parser.take_errors();
        PyList::new(py, errors)
    }

    /// Non-empty lines seen.
    #[getter]
    fn lines(&self, py: Python<'_>) -> u64 {
        self.counts(py).lines
    }

    /// Metric lines turned into rows.
    #[getter]
    fn metric_lines(&self, py: Python<'_>) -> u64 {
        self.counts(py).metrics
    }

    /// Lines that could not be read (skipped).
    #[getter]
    fn malformed_lines(&self, py: Python<'_>) -> u64 {
        self.counts(py).malformed
    }

    /// DogStatsD events and service checks (skipped).
    #[getter]
    fn unsupported_lines(&self, py: Python<'_>) -> u64 {
        self.counts(py).unsupported
    }

    /// Lines of new series dropped because max_series were tracked.
    #[getter]
    fn overflow_lines(&self, py: Python<'_>) -> u64 {
        self.counts(py).overflow
    }

    /// Series tracked.
    #[getter]
    fn series_count(&self, py: Python<'_>) -> usize {
        self.lock(py).parser.series_count()
    }

    /// The cap on tracked series.
    #[getter]
    fn max_series(&self, py: Python<'_>) -> usize {
        self.lock(py).parser.max_series()
    }
}

/// Reads the datagrams queued on the non-blocking UDP socket `fd`, each followed by a
/// newline (the form `StatsdParser.parse` takes), until none is left, max_datagrams were
/// read, or max_bytes or more were. Returns (data, datagrams read). The GIL is released
/// while reading. Raises OSError if the first read fails (e.g. `fd` is no socket).
#[cfg(unix)]
#[pyfunction]
#[pyo3(signature = (fd, max_bytes, max_datagrams = 4096))]
fn read_datagrams(
    py: Python<'_>,
    fd: i32,
    max_bytes: usize,
    max_datagrams: usize,
) -> PyResult<(Bound<'_, PyBytes>, usize)> {
    let (out, n) = py.detach(|| {
        let mut out = Vec::new();
        core::read_datagrams(fd, &mut out, max_bytes, max_datagrams).map(|n| (out, n))
    })?;
    Ok((PyBytes::new(py, &out), n))
}

/// Reads and throws away up to max_datagrams datagrams queued on the non-blocking UDP
/// socket `fd`; returns how many. Raises OSError as read_datagrams.
#[cfg(unix)]
#[pyfunction]
#[pyo3(signature = (fd, max_datagrams = 4096))]
fn discard_datagrams(py: Python<'_>, fd: i32, max_datagrams: usize) -> PyResult<usize> {
    Ok(py.detach(|| core::discard_datagrams(fd, max_datagrams))?)
}

/// Adds `StatsdParser`, and on Unix `read_datagrams` and `discard_datagrams`, to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStatsdParser>()?;
    #[cfg(unix)]
    {
        m.add_function(wrap_pyfunction!(read_datagrams, m)?)?;
        m.add_function(wrap_pyfunction!(discard_datagrams, m)?)?;
    }
    Ok(())
}
