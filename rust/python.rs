//! The Python face of the core: `process`, `Batch`, `Stats`, and Arrow's PyCapsule interface.

use std::ffi::CStr;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{Array, RecordBatch, RecordBatchIterator, StructArray};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyCapsule, PyDict, PyMemoryView, PyString, PyTuple};

use crate::error_lines::{write_error_lines, write_error_lines_to};
use crate::errors::CoreError;
use crate::pipeline::{self, Options, Output};
use crate::record::FieldNames;
use crate::scan;

const ARROW_SCHEMA: &CStr = c"arrow_schema";
const ARROW_ARRAY: &CStr = c"arrow_array";
const ARROW_STREAM: &CStr = c"arrow_array_stream";

/// Counts for one call: `processed == valid + errors`, blank lines apart.
#[pyclass(module = "logsieve._core", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Stats {
    processed: u64,
    valid: u64,
    errors: u64,
    blank: u64,
    bytes: u64,
}

#[pymethods]
impl Stats {
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("processed", self.processed)?;
        d.set_item("valid", self.valid)?;
        d.set_item("errors", self.errors)?;
        d.set_item("blank", self.blank)?;
        d.set_item("bytes", self.bytes)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "Stats(processed={}, valid={}, errors={}, blank={}, bytes={})",
            self.processed, self.valid, self.errors, self.blank, self.bytes
        )
    }
}

impl From<pipeline::Stats> for Stats {
    fn from(s: pipeline::Stats) -> Self {
        Self {
            processed: s.processed,
            valid: s.valid,
            errors: s.errors,
            blank: s.blank,
            bytes: s.bytes,
        }
    }
}

/// One record batch exported through the Arrow PyCapsule interface: what `pyarrow.record_batch`
/// takes without copying, and the base class of [`Batch`], whose export is its clean rows.
#[pyclass(module = "logsieve._core", frozen, subclass)]
pub struct ArrowExport(RecordBatch);

#[pymethods]
impl ArrowExport {
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let _ = requested_schema; // the spec lets producers ignore it
        let data = StructArray::from(self.0.clone()).into_data();
        let array = FFI_ArrowArray::new(&data);
        let schema = self.__arrow_c_schema__(py)?;
        let array = PyCapsule::new_with_value(py, array, ARROW_ARRAY)?;
        PyTuple::new(py, [schema.into_any(), array.into_any()])
    }

    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let schema =
            FFI_ArrowSchema::try_from(self.0.schema().as_ref()).map_err(CoreError::from)?;
        PyCapsule::new_with_value(py, schema, ARROW_SCHEMA)
    }

    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let reader = RecordBatchIterator::new([Ok(self.0.clone())], self.0.schema());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, ARROW_STREAM)
    }
}

/// `pyarrow.record_batch(...)` over our export: pyarrow takes the buffers, nothing is copied.
fn to_pyarrow(py: Python<'_>, batch: &RecordBatch) -> PyResult<Py<PyAny>> {
    let export = Bound::new(py, ArrowExport(batch.clone()))?;
    let record_batch = py.import("pyarrow")?.getattr("record_batch")?;
    Ok(record_batch.call1((export,))?.unbind())
}

/// The result of one `process` call: clean rows (the base class's export), error records and
/// counts.
#[pyclass(module = "logsieve._core", frozen, extends = ArrowExport)]
pub struct Batch {
    errors: RecordBatch,
    stats: Stats,
    clean_py: PyOnceLock<Py<PyAny>>,
    errors_py: PyOnceLock<Py<PyAny>>,
}

#[pymethods]
impl Batch {
    /// Valid rows as a `pyarrow.RecordBatch`.
    #[getter]
    fn clean(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        slf.get()
            .clean_py
            .get_or_try_init(py, || to_pyarrow(py, &slf.as_super().get().0))
            .map(|o| o.clone_ref(py))
    }

    /// Invalid lines as a `pyarrow.RecordBatch` (line, error, detail, raw).
    #[getter]
    fn errors(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.errors_py
            .get_or_try_init(py, || to_pyarrow(py, &self.errors))
            .map(|o| o.clone_ref(py))
    }

    #[getter]
    fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The error records as JSON Lines (`source`, `line`, `error`, `detail`, `raw` or
    /// `raw_base64`), rendered in Rust without the GIL: one line per error, each ending in `\n`.
    fn error_lines<'py>(&self, py: Python<'py>, source: &str) -> PyResult<Bound<'py, PyBytes>> {
        let rendered = py.detach(|| {
            let mut out = Vec::new();
            write_error_lines(&self.errors, source, &mut out).map(|()| out)
        })?;
        Ok(PyBytes::new(py, &rendered))
    }

    /// The same JSON Lines written to `file` (anything with `write(bytes)`), rendered without
    /// the GIL and handed over about 1 MiB at a time: a huge invalid line is never held twice.
    fn write_error_lines(
        &self,
        py: Python<'_>,
        source: &str,
        file: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let mut sink = PyWriter(file.unbind());
        py.detach(|| write_error_lines_to(&self.errors, source, &mut sink))?;
        Ok(())
    }

    fn __len__(slf: &Bound<'_, Self>) -> usize {
        slf.as_super().get().0.num_rows()
    }

    fn __repr__(&self) -> String {
        let s = &self.stats;
        format!(
            "Batch(processed={}, valid={}, errors={}, blank={}, bytes={})",
            s.processed, s.valid, s.errors, s.blank, s.bytes
        )
    }
}

impl Batch {
    fn new(py: Python<'_>, o: Output) -> PyResult<Py<Self>> {
        let batch = Self {
            errors: o.errors,
            stats: o.stats.into(),
            clean_py: PyOnceLock::new(),
            errors_py: PyOnceLock::new(),
        };
        Py::new(
            py,
            PyClassInitializer::from(ArrowExport(o.clean)).add_subclass(batch),
        )
    }
}

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

/// The columns `read_columns` read, and the files it could not.
#[pyclass(module = "logsieve._core", frozen)]
pub struct Scan {
    rows: RecordBatch,
    #[pyo3(get)]
    failed: Py<PyDict>,
}

#[pymethods]
impl Scan {
    /// `file` (index into the inputs) and the requested columns as a `pyarrow.RecordBatch`.
    #[getter]
    fn rows(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_pyarrow(py, &self.rows)
    }
}

/// Reads `columns` of many small Parquet files in parallel without the GIL: each input is a
/// path (`str` or `os.PathLike`, read here) or the file's bytes.
#[pyfunction]
pub fn read_columns(
    py: Python<'_>,
    files: Vec<Bound<'_, PyAny>>,
    columns: Vec<String>,
) -> PyResult<Scan> {
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
    let scan = py.detach(|| scan::read_columns(inputs, &columns))?;
    let failed = PyDict::new(py);
    for (index, reason) in scan.failed {
        failed.set_item(index, reason)?;
    }
    Ok(Scan {
        rows: scan.rows,
        failed: failed.unbind(),
    })
}

/// `std::io::Write` over a Python file object: each write takes the GIL for one `write` call.
struct PyWriter(Py<PyAny>);

impl std::io::Write for PyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut rest = buf;
        while !rest.is_empty() {
            // A raw file may take fewer bytes than offered and say how many; others take all.
            let taken = Python::attach(|py| {
                let written = self
                    .0
                    .call_method1(py, "write", (PyBytes::new(py, rest),))?;
                written.extract::<Option<usize>>(py)
            })
            .map_err(std::io::Error::other)?;
            match taken.unwrap_or(rest.len()) {
                n @ 1.. if n <= rest.len() => rest = &rest[n..],
                n => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        format!("write() took {n} of {} bytes", rest.len()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
