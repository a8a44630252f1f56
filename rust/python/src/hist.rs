//! HdrHistogram helpers for exporters that need fixed buckets (Prometheus, OTLP).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use revopipe_core::Hdr;

/// The cumulative bucket counts of an encoded histogram: for each of `bounds` (ascending,
/// in the histogram's unit), how many recorded values are at or below it.
///
/// `hdr_b64` is a base64 (compressed) V2 HdrHistogram of values recorded as
/// round(value / resolution), as in `HistogramSnapshot`. Raises ValueError if it cannot be
/// decoded, if resolution is not positive, or if the bounds are not finite and ascending.
/// The GIL is released while decoding and counting.
#[pyfunction]
fn hdr_bucket_counts(
    py: Python<'_>,
    hdr_b64: &str,
    resolution: f64,
    bounds: Vec<f64>,
) -> PyResult<Vec<u64>> {
    if !(resolution.is_finite() && resolution > 0.0) {
        return Err(PyValueError::new_err(format!(
            "hdr_bucket_counts: resolution must be a positive number, got {resolution}"
        )));
    }
    // finiteness first: with NaN excluded, `>=` is the exact negation of "ascending"
    if let Some(i) = bounds
        .iter()
        .position(|b| !b.is_finite())
        .or_else(|| bounds.windows(2).position(|w| w[0] >= w[1]))
    {
        return Err(PyValueError::new_err(format!(
            "hdr_bucket_counts: bounds must be finite and strictly ascending; \
             look at bounds[{i}] and the one after it"
        )));
    }
    let text = hdr_b64.to_owned();
    py.detach(move || Hdr::decode_base64(&text).map(|h| h.counts_at_or_below(&bounds, resolution)))
        .map_err(|e| PyValueError::new_err(format!("hdr_bucket_counts: {e}")))
}

/// Adds the histogram helpers to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hdr_bucket_counts, m)?)?;
    Ok(())
}
