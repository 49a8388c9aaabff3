//! The Python face of the core: the functions of `logsieve._core` and how they take their
//! input; the classes they return are in `batch`, Arrow's PyCapsule interface in `arrow`.

mod arrow;
mod batch;
mod datafile;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use arrow_array::{RecordBatch, StructArray};
use arrow_schema::DataType;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyCapsule, PyDict, PyMemoryView, PyString, PyTuple};

use crate::dates;
use crate::errors::CoreError;
use crate::memory;
use crate::pipeline::{self, Options};
use crate::record::FieldNames;
use crate::scan;
pub use batch::{Batch, DatePart, Scan, Stats};
pub use datafile::{ColumnSummary, ParquetFile};

/// A `first_line` argument. An int beyond int64 is refused as out of range (`ConfigError`, a
/// `ValueError`) like any other line number that cannot be, not as pyo3's `OverflowError`.
pub struct FirstLine(i64);

impl<'a, 'py> FromPyObject<'a, 'py> for FirstLine {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<i64>() {
            Ok(n) => Ok(Self(n)),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                Err(CoreError::Config(format!(
                    "first_line must be between 1 and 2**63 - 1, got {}",
                    obj.as_any()
                ))
                .into())
            }
            Err(e) => Err(e),
        }
    }
}

/// Runs `work` on the input's bytes with the GIL released, borrowing `bytes` when possible.
fn with_input_bytes<T: Send>(
    data: &Bound<'_, PyAny>,
    work: impl FnOnce(&[u8]) -> T + Send,
) -> PyResult<T> {
    let py = data.py();
    if let Ok(bytes) = data.cast::<PyBytes>() {
        // bytes are immutable and `data` keeps them alive for the whole call.
        let slice = bytes.as_bytes();
        return Ok(py.detach(|| work(slice)));
    }
    if data.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "process() expects bytes, not str: encode the text first, e.g. data.encode()",
        ));
    }
    if let Ok(array) = data.cast::<PyByteArray>() {
        let owned = array.to_vec(); // a bytearray may change while the GIL is released: copy it
        return Ok(py.detach(|| work(&owned)));
    }
    let view = py
        .import("builtins")?
        .getattr("memoryview")?
        .call1((data,))
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "process() expects bytes, bytearray or another buffer, got {}",
                data.get_type().name().map_or("?".into(), |n| n.to_string())
            ))
        })?;
    // One copy into immutable bytes, which then stay alive (and unchanged) for the whole call.
    let bytes = view.call_method0("tobytes")?.cast_into::<PyBytes>()?;
    let slice = bytes.as_bytes();
    Ok(py.detach(|| work(slice)))
}

/// Validates and transforms JSON Lines into clean rows and error records.
#[pyfunction]
#[pyo3(signature = (
    data,
    *,
    timestamp_field = "timestamp".to_string(),
    user_id_field = "user_id".to_string(),
    action_field = "action".to_string(),
    first_line = FirstLine(1),
))]
pub fn process(
    data: &Bound<'_, PyAny>,
    timestamp_field: String,
    user_id_field: String,
    action_field: String,
    first_line: FirstLine,
) -> PyResult<Py<Batch>> {
    let options = Options {
        fields: FieldNames {
            timestamp: timestamp_field,
            user_id: user_id_field,
            action: action_field,
        },
        first_line: first_line.0,
    };
    let output = with_input_bytes(data, |bytes| pipeline::process(bytes, &options))??;
    Batch::new(data.py(), output)
}

/// `process_stream`'s step: processes the complete lines of `data[:length]` (all of it when
/// `last`) and returns the batch, or None when there is no complete line, and the bytes consumed.
///
/// `data` is bytes or a bytearray, read in place with the GIL released: `process_stream` reads a
/// file into two bytearrays in turn and touches neither while the core reads it.
#[pyfunction]
#[pyo3(signature = (data, length, first_line, last, timestamp_field, user_id_field, action_field))]
#[allow(clippy::too_many_arguments)]
pub fn process_lines(
    data: &Bound<'_, PyAny>,
    length: usize,
    first_line: FirstLine,
    last: bool,
    timestamp_field: String,
    user_id_field: String,
    action_field: String,
) -> PyResult<(Option<Py<Batch>>, usize)> {
    let options = Options {
        fields: FieldNames {
            timestamp: timestamp_field,
            user_id: user_id_field,
            action: action_field,
        },
        first_line: first_line.0,
    };
    let _export; // held until the call returns
    let whole = if let Ok(bytes) = data.cast::<PyBytes>() {
        bytes.as_bytes()
    } else if let Ok(array) = data.cast::<PyByteArray>() {
        // A buffer export, what pyo3's `PyBuffer` would hold (it is not in the limited API of
        // Python 3.9, the abi3 wheel's floor): every resize raises `BufferError` meanwhile.
        _export = PyMemoryView::from(array.as_any())?;
        // SAFETY: `_export` keeps the bytearray from being resized (or freed) until this call
        // returns, so the slice stays valid; its contents are not written meanwhile, as the one
        // caller (`stream.py`) promises (see `_runs`).
        unsafe { array.as_bytes() }
    } else {
        return Err(PyTypeError::new_err(
            "process_lines() expects bytes or a bytearray",
        ));
    };
    let Some(bytes) = whole.get(..length) else {
        return Err(PyValueError::new_err(format!(
            "length {length} is beyond the {} bytes of data",
            whole.len()
        )));
    };
    let end = if last {
        bytes.len()
    } else {
        memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1)
    };
    if end == 0 {
        return Ok((None, 0));
    }
    let output = data
        .py()
        .detach(|| pipeline::process(&bytes[..end], &options))?;
    Ok((Some(Batch::new(data.py(), output)?), end))
}

/// How long the core's allocator keeps freed memory for reuse (ms), from now on: for entry
/// points of streaming processes (`logsieve.memory.use_lean_memory`).
#[pyfunction]
pub fn set_purge_delay(ms: u32) {
    memory::set_purge_delay(ms);
}

/// The core allocator's purge delay in force (ms).
#[pyfunction]
pub fn purge_delay() -> libc::c_long {
    memory::purge_delay()
}

/// Reads `columns` of many small Parquet files in parallel without the GIL: each input is a
/// path (`str` or `os.PathLike`, read here) or the file's bytes.
#[pyfunction]
pub fn read_columns(
    py: Python<'_>,
    files: Vec<Bound<'_, PyAny>>,
    schema: Bound<'_, PyAny>,
) -> PyResult<Scan> {
    let wanted = import_schema(&schema)?;
    let mut inputs = Vec::with_capacity(files.len());
    for file in &files {
        inputs.push(if let Ok(bytes) = file.cast::<PyBytes>() {
            scan::FileInput::Bytes(bytes::Bytes::copy_from_slice(bytes.as_bytes()))
        } else if let Ok(path) = file.extract::<std::path::PathBuf>() {
            scan::FileInput::Path(path)
        } else {
            return Err(PyTypeError::new_err(
                "read_columns() takes paths (str or os.PathLike) or bytes",
            ));
        });
    }
    let scan = py.detach(|| scan::read_columns(inputs, &wanted))?;
    let failed = PyDict::new(py);
    for (index, reason) in scan.failed {
        failed.set_item(index, reason)?;
    }
    Ok(Scan {
        rows: scan.rows,
        failed: failed.unbind(),
    })
}

/// `batch`'s rows per UTC date (the first ten bytes of the text `column`), dates in the order
/// they first appear: long runs of one date as zero-copy slices, interleaved rows gathered per
/// date, without the GIL.
#[pyfunction]
pub fn split_by_date(
    py: Python<'_>,
    batch: &Bound<'_, PyAny>,
    column: &str,
) -> PyResult<Vec<DatePart>> {
    let rows = import_batch(batch, "split_by_date()")?;
    let parts = py.detach(|| dates::split_by_date(&rows, column))?;
    parts
        .into_iter()
        .map(|part| DatePart::new(py, part))
        .collect()
}

/// A record batch from anything with `__arrow_c_array__`, sharing its buffers; `taker` names
/// the function in the message for anything else.
pub(crate) fn import_batch(batch: &Bound<'_, PyAny>, taker: &str) -> PyResult<RecordBatch> {
    let pair = batch
        .call_method0("__arrow_c_array__")
        .map_err(|_| PyTypeError::new_err(format!("{taker} takes record batches")))?;
    let pair = pair.cast_into::<PyTuple>()?;
    let schema = pair.get_item(0)?.cast_into::<PyCapsule>()?;
    let array = pair.get_item(1)?.cast_into::<PyCapsule>()?;
    let schema = schema.pointer_checked(Some(c"arrow_schema"))?;
    let array = array.pointer_checked(Some(c"arrow_array"))?;
    // SAFETY: the capsules of the PyCapsule interface hold an FFI_ArrowSchema and an
    // FFI_ArrowArray; the array is moved out (its release callback now ours, as the interface
    // says a consumer does), the schema only borrowed while its capsule lives.
    let data = unsafe {
        let array = FFI_ArrowArray::from_raw(array.as_ptr() as *mut FFI_ArrowArray);
        let schema = &*(schema.as_ptr() as *const FFI_ArrowSchema);
        from_ffi(array, schema)
    }
    .map_err(|e| PyTypeError::new_err(format!("not an Arrow record batch: {e}")))?;
    // A record batch crosses as a struct without nulls; anything else is not one.
    if !matches!(data.data_type(), DataType::Struct(_)) || data.nulls().is_some() {
        return Err(PyTypeError::new_err(format!(
            "{taker} takes record batches, got an array of {}",
            data.data_type()
        )));
    }
    Ok(RecordBatch::from(StructArray::from(data)))
}

/// An Arrow schema from anything with `__arrow_c_schema__` (a `pyarrow.Schema`, say).
pub(crate) fn import_schema(schema: &Bound<'_, PyAny>) -> PyResult<arrow_schema::Schema> {
    let capsule = schema
        .call_method0("__arrow_c_schema__")
        .map_err(|_| PyTypeError::new_err("expected an Arrow schema (e.g. pyarrow.Schema)"))?;
    let capsule = capsule.cast_into::<PyCapsule>()?;
    let pointer = capsule.pointer_checked(Some(c"arrow_schema"))?;
    // SAFETY: a capsule named "arrow_schema" holds an FFI_ArrowSchema (the PyCapsule
    // interface), alive as long as the capsule, which outlives this borrow.
    let ffi = unsafe { &*(pointer.as_ptr() as *const arrow_schema::ffi::FFI_ArrowSchema) };
    arrow_schema::Schema::try_from(ffi).map_err(|e| PyTypeError::new_err(e.to_string()))
}
