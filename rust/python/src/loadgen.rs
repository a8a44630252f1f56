//! `LoadGenerator`: the Rust HTTP load generator (`revopipe_core::loadgen`) for Python.
//!
//! The run lives on its own runtime thread; every blocking call here waits detached (GIL
//! released) in short slices, checking for signals between them so Ctrl-C reaches Python
//! as KeyboardInterrupt promptly.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use revopipe_core::loadgen::{
    Config, ErrorClass, LoadGen, Model, Next, RequestSpec, Snapshot, Stage,
};

/// How long one detached wait lasts before signals are checked again.
const SLICE: Duration = Duration::from_millis(100);

type PyRequest = (String, String, Vec<(String, String)>, Option<Vec<u8>>, f64);

/// An HTTP load generator (http:// only) on a tokio runtime of its own.
///
/// requests: (method, url, headers, body, weight) tuples, picked at random (seeded) by
/// weight. model: "closed" (stage targets are virtual users, each looping request ->
/// response -> think_time on its own keep-alive connection) or "open" (targets are
/// arrivals per second; latency from each request's intended send time). stages:
/// (duration_s, target) pairs ramping linearly from start_target. Raises ValueError naming
/// the bad argument.
#[pyclass(name = "LoadGenerator", module = "revopipe._core")]
pub struct PyLoadGenerator {
    config: Mutex<Option<Config>>,
    run: Mutex<Option<Arc<LoadGen>>>,
}

impl PyLoadGenerator {
    fn started(&self) -> PyResult<Arc<LoadGen>> {
        self.run
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                PyRuntimeError::new_err("LoadGenerator: not started; call start() first")
            })
    }
}

fn to_seconds(what: &str, v: f64) -> PyResult<Duration> {
    if v.is_finite() && v >= 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(PyValueError::new_err(format!(
            "LoadGenerator.{what}: timeout must be a number of seconds >= 0, got {v}"
        )))
    }
}

#[pymethods]
impl PyLoadGenerator {
    #[new]
    #[pyo3(signature = (
        requests, model, stages, start_target = 0.0, max_connections = 0, think_time = 0.0,
        timeout = 10.0, expected_status = None, threads = 0, seed = 0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        requests: Vec<PyRequest>,
        model: &str,
        stages: Vec<(f64, f64)>,
        start_target: f64,
        max_connections: usize,
        think_time: f64,
        timeout: f64,
        expected_status: Option<Vec<u16>>,
        threads: usize,
        seed: u64,
    ) -> PyResult<Self> {
        let model: Model = model
            .parse()
            .map_err(|e| PyValueError::new_err(format!("LoadGenerator: {e}")))?;
        let requests = requests
            .into_iter()
            .map(|(method, url, headers, body, weight)| RequestSpec {
                method,
                url,
                headers,
                body,
                weight,
            })
            .collect();
        let stages = stages
            .into_iter()
            .map(|(duration, target)| Stage { duration, target })
            .collect();
        let config = Config {
            start_target,
            max_connections,
            think_time,
            timeout,
            expected_status,
            threads,
            seed,
            ..Config::new(requests, model, stages)
        };
        // everything that can be wrong with the arguments is reported here, not at start()
        revopipe_core::loadgen::validate(&config)
            .map_err(|e| PyValueError::new_err(format!("LoadGenerator: {e}")))?;
        Ok(PyLoadGenerator {
            config: Mutex::new(Some(config)),
            run: Mutex::new(None),
        })
    }

    /// Starts the run on a new runtime thread and returns at once.
    ///
    /// Raises RuntimeError if it was already started.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let config = self
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| {
                PyRuntimeError::new_err(
                    "LoadGenerator: already started; make a new LoadGenerator for another run",
                )
            })?;
        let run = py
            .detach(|| LoadGen::start(config))
            .map_err(|e| PyRuntimeError::new_err(format!("LoadGenerator: {e}")))?;
        *self.run.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(run));
        Ok(())
    }

    /// The next per-second snapshot, waiting up to `timeout` seconds (GIL released); None
    /// on timeout. Raises StopIteration once the run has ended and every snapshot was taken.
    fn next_snapshot<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let run = self.started()?;
        let deadline = Instant::now() + to_seconds("next_snapshot", timeout)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = left.min(SLICE);
            match py.detach(|| run.next_snapshot(wait)) {
                Next::Snapshot(s) => return snapshot_dict(py, &s).map(Some),
                Next::Ended => return Err(PyStopIteration::new_err(())),
                Next::Timeout if left <= SLICE => return Ok(None),
                Next::Timeout => py.check_signals()?,
            }
        }
    }

    /// Asks the run to end now and waits for its thread (GIL released): in-flight
    /// requests are abandoned after at most min(timeout, 1 s). Idempotent; a no-op before
    /// start().
    fn stop(&self, py: Python<'_>) {
        let run = self
            .run
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(run) = run {
            py.detach(|| run.stop());
        }
    }

    /// The totals over the whole run, with the snapshot keys ("interval" is the elapsed
    /// time). Blocks (GIL released, Ctrl-C honoured) until the run has ended.
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let run = self.started()?;
        loop {
            if let Some(s) = py.detach(|| run.summary(SLICE)) {
                return snapshot_dict(py, &s);
            }
            py.check_signals()?;
        }
    }

    /// Whether the run has started and not yet ended.
    #[getter]
    fn running(&self) -> bool {
        self.run
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|r| r.is_running())
    }
}

fn snapshot_dict<'py>(py: Python<'py>, s: &Snapshot) -> PyResult<Bound<'py, PyDict>> {
    let st = &s.stats;
    let hdr = py.detach(|| s.latency_hdr());
    let d = PyDict::new(py);
    d.set_item("t", s.t)?;
    d.set_item("interval", s.interval)?;
    d.set_item("requests", st.requests)?;
    d.set_item("ok", st.ok)?;
    let errors = PyDict::new(py);
    for class in ErrorClass::ALL {
        errors.set_item(class.name(), st.error_count(class))?;
    }
    d.set_item("errors", errors)?;
    d.set_item("bytes_received", st.bytes_received)?;
    d.set_item("target", s.target)?;
    d.set_item("active", s.active)?;
    d.set_item("dropped", st.dropped)?;
    d.set_item("latency_hdr", PyBytes::new(py, &hdr))?;
    let l = st.latency();
    let latency = PyDict::new(py);
    for (k, v) in [
        ("min", l.min),
        ("mean", l.mean),
        ("p50", l.p50),
        ("p90", l.p90),
        ("p95", l.p95),
        ("p99", l.p99),
        ("p99_9", l.p99_9),
        ("max", l.max),
    ] {
        latency.set_item(k, v)?;
    }
    d.set_item("latency", latency)?;
    let status = PyDict::new(py);
    for (code, n) in st.status_counts() {
        status.set_item(code.to_string(), n)?;
    }
    d.set_item("status", status)?;
    Ok(d)
}

/// Adds `LoadGenerator` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLoadGenerator>()?;
    Ok(())
}
