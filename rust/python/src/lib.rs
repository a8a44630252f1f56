use pyo3::prelude::*;

#[pyfunction]
fn answer() -> u64 {
    revopipe_core::answer()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(answer, m)?)?;
    Ok(())
}
