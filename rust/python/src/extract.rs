//! Reading the Python columns into Rust-owned memory (while attached to the interpreter).
//! Errors name the column, and the row where there is one.

use std::ffi::CString;

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PyString, PyTuple};

use crate::scratch::Scratch;
use crate::texts::{Span, Texts};

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

fn not_a_sequence(column: &str, obj: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "column '{column}': expected a sequence, got {}",
        type_name(obj)
    ))
}

/// Calls `f(row, item)` for each item of a sequence: tuples and lists directly, other
/// iterables through the iterator protocol. A lone `str` or `bytes` is refused: it is a
/// sequence, but never the column that was meant.
fn for_each_item<'py>(
    seq: &Bound<'py, PyAny>,
    column: &str,
    mut f: impl FnMut(usize, &Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(tuple) = seq.cast::<PyTuple>() {
        for (i, item) in tuple.iter_borrowed().enumerate() {
            f(i, &item)?;
        }
    } else if let Ok(list) = seq.cast::<PyList>() {
        for (i, item) in list.iter().enumerate() {
            f(i, &item)?;
        }
    } else if seq.is_instance_of::<PyString>()
        || seq.is_instance_of::<PyBytes>()
        || seq.is_instance_of::<PyByteArray>()
    {
        return Err(not_a_sequence(column, seq));
    } else {
        let iter = seq.try_iter().map_err(|_| not_a_sequence(column, seq))?;
        for (i, item) in iter.enumerate() {
            f(i, &item?)?;
        }
    }
    Ok(())
}

/// Slots in [`Strings`]' cache of recently seen `str` objects (a power of two).
const CACHE_SLOTS: usize = 256;

/// Copies `str` objects into a [`Texts`] arena, each distinct object once when it recurs
/// nearby: batches repeat the same name, unit and tag-key objects row after row.
pub struct Strings<'t, 'py> {
    pub texts: &'t mut Texts,
    /// Recently copied objects by address. Each holds a reference, so no object in it can
    /// be freed and its address reused by another string while the columns are read.
    cache: Vec<Option<(Bound<'py, PyAny>, Span)>>,
}

impl<'t, 'py> Strings<'t, 'py> {
    pub fn new(texts: &'t mut Texts) -> Self {
        Strings {
            texts,
            cache: vec![None; CACHE_SLOTS],
        }
    }

    /// Copies `item`, which must be a `str`, into the arena (unless this object was just
    /// copied); `at` says where it was, for the error.
    fn push(&mut self, item: &Bound<'py, PyAny>, at: impl FnOnce() -> String) -> PyResult<Span> {
        let addr = item.as_ptr() as usize;
        let slot = ((addr >> 4) ^ (addr >> 12)) & (CACHE_SLOTS - 1);
        if let Some((cached, span)) = &self.cache[slot] {
            if cached.is(item) {
                return Ok(*span);
            }
        }
        let span = match item.cast::<PyString>() {
            Ok(s) => match s.to_str() {
                Ok(s) => self.texts.push(s),
                // A lone surrogate has no UTF-8 form.
                Err(e) => return Err(PyValueError::new_err(format!("{}: {e}", at()))),
            },
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "{}: expected str, got {}",
                    at(),
                    type_name(item)
                )))
            }
        };
        self.cache[slot] = Some((item.clone(), span));
        Ok(span)
    }
}

/// The `names` column: a sequence of `str`.
pub fn names<'py>(strings: &mut Strings<'_, 'py>, names: &Bound<'py, PyAny>) -> PyResult<()> {
    for_each_item(names, "names", |row, item| {
        let span = strings.push(item, || format!("column 'names', row {row}"))?;
        strings.texts.names.push(span);
        Ok(())
    })
}

/// The `units` column: a sequence of `str`.
pub fn units<'py>(strings: &mut Strings<'_, 'py>, units: &Bound<'py, PyAny>) -> PyResult<()> {
    for_each_item(units, "units", |row, item| {
        let span = strings.push(item, || format!("column 'units', row {row}"))?;
        strings.texts.units.push(span);
        Ok(())
    })
}

/// One `(key, value)` pair: a tuple or list of two `str`.
fn pair<'py>(
    strings: &mut Strings<'_, 'py>,
    pair: &Bound<'py, PyAny>,
    row: usize,
    tag: usize,
) -> PyResult<()> {
    let bad = || {
        PyTypeError::new_err(format!(
            "column 'tags', row {row}, tag {tag}: expected a (key, value) pair of str, got {}",
            type_name(pair)
        ))
    };
    if let Ok(t) = pair.cast::<PyTuple>() {
        if t.len() != 2 {
            return Err(bad());
        }
        let (key, value) = (t.get_borrowed_item(0)?, t.get_borrowed_item(1)?);
        push_pair(strings, &key, &value, row, tag)
    } else if let Ok(l) = pair.cast::<PyList>() {
        if l.len() != 2 {
            return Err(bad());
        }
        push_pair(strings, &l.get_item(0)?, &l.get_item(1)?, row, tag)
    } else {
        Err(bad())
    }
}

fn push_pair<'py>(
    strings: &mut Strings<'_, 'py>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    row: usize,
    tag: usize,
) -> PyResult<()> {
    let key = strings.push(key, || format!("column 'tags', row {row}, tag {tag} key"))?;
    let value = strings.push(value, || {
        format!("column 'tags', row {row}, tag {tag} value")
    })?;
    strings.texts.pairs.push((key, value));
    Ok(())
}

/// The `tags` column: per row a sequence of `(key, value)` pairs of `str`.
pub fn tags<'py>(strings: &mut Strings<'_, 'py>, tags: &Bound<'py, PyAny>) -> PyResult<()> {
    for_each_item(tags, "tags", |row, pairs| {
        // Tuples, the usual case, and lists skip the iterator protocol.
        if let Ok(t) = pairs.cast::<PyTuple>() {
            for (tag, p) in t.iter_borrowed().enumerate() {
                pair(strings, &p, row, tag)?;
            }
        } else if let Ok(l) = pairs.cast::<PyList>() {
            for (tag, p) in l.iter().enumerate() {
                pair(strings, &p, row, tag)?;
            }
        } else {
            let bad = || {
                PyTypeError::new_err(format!(
                    "column 'tags', row {row}: expected a sequence of (key, value) pairs, got {}",
                    type_name(pairs)
                ))
            };
            if pairs.is_instance_of::<PyString>() {
                return Err(bad());
            }
            let iter = pairs.try_iter().map_err(|_| bad())?;
            for (tag, p) in iter.enumerate() {
                pair(strings, &p?, row, tag)?;
            }
        }
        strings.texts.row_ends.push(strings.texts.pairs.len());
        Ok(())
    })
}

/// Copies a one-dimensional buffer of `T` (any strides) into `dst`, replacing its contents.
pub fn buffer<T: Element + Copy + Default>(
    obj: &Bound<'_, PyAny>,
    column: &str,
    what: &str,
    dst: &mut Vec<T>,
) -> PyResult<()> {
    let py = obj.py();
    dst.clear();
    let buf = match PyBuffer::<T>::get(obj) {
        Ok(buf) => buf,
        Err(_) if is_empty_buffer_of::<T>(obj) => return Ok(()),
        Err(e) => {
            return Err(PyTypeError::new_err(format!(
                "column '{column}': expected {what}, got {} ({e})",
                type_name(obj)
            )))
        }
    };
    if buf.dimensions() != 1 {
        let dims = buf.dimensions();
        buf.release(py);
        return Err(PyTypeError::new_err(format!(
            "column '{column}': expected a one-dimensional buffer, got {dims} dimensions"
        )));
    }
    dst.resize(buf.item_count(), T::default());
    let copied = buf.copy_to_slice(py, dst);
    buf.release(py);
    copied
}

/// Whether `obj` is an empty one-dimensional buffer of `T`. pyo3 refuses some of these
/// (CPython's empty `array` points at a static, unaligned byte), yet there is nothing to read.
fn is_empty_buffer_of<T: Element>(obj: &Bound<'_, PyAny>) -> bool {
    let Ok(view) = PyMemoryView::from(obj) else {
        return false;
    };
    let attr = |name: &str| -> Option<usize> { view.getattr(name).ok()?.extract().ok() };
    let format = view
        .getattr("format")
        .ok()
        .and_then(|f| f.extract::<String>().ok())
        .and_then(|f| CString::new(f).ok());
    let empty = attr("nbytes") == Some(0)
        && attr("ndim") == Some(1)
        && attr("itemsize") == Some(size_of::<T>())
        && format.is_some_and(|f| T::is_compatible_format(&f));
    let _ = view.call_method0("release");
    empty
}

/// Copies a whole columnar metric batch into `s` (strings into its arena, numbers through
/// the buffer protocol), ready for work with the GIL released.
pub fn batch<'py>(
    s: &mut Scratch,
    names: &Bound<'py, PyAny>,
    kinds: &Bound<'py, PyAny>,
    values: &Bound<'py, PyAny>,
    units: &Bound<'py, PyAny>,
    timestamps: &Bound<'py, PyAny>,
    tags: &Bound<'py, PyAny>,
) -> PyResult<()> {
    let mut strings = Strings::new(&mut s.texts);
    self::names(&mut strings, names)?;
    self::units(&mut strings, units)?;
    self::tags(&mut strings, tags)?;
    drop(strings);
    buffer(kinds, "kinds", "bytes of kind codes", &mut s.kinds)?;
    let what = "a float64 buffer such as array('d')";
    buffer(values, "values", what, &mut s.values)?;
    let what = "an int64 buffer such as array('q')";
    buffer(timestamps, "timestamps", what, &mut s.timestamps)
}
