//! `ParquetFile`: a data file of the clean table, written from record batches of pyarrow (or
//! anything else with Arrow's PyCapsule interface).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use arrow_array::{RecordBatch, StructArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyDict, PyTuple};

use crate::datafile::{ColumnSummary as Summary, DataFile, Extreme, FileOptions};

/// One Parquet data file being written; each row group's columns are encoded in parallel on the
/// core's threads, without the GIL. Calls from several threads take turns.
#[pyclass(module = "logsieve._core", frozen)]
pub struct ParquetFile {
    file: Mutex<Option<DataFile>>,
    path: PathBuf,
    names: Vec<String>,
    /// What the file holds as of the last write: answered while another thread writes, and
    /// once the file is closed.
    written: Mutex<Written>,
}

#[derive(Default)]
struct Written {
    bytes: usize,
    rows: u64,
    columns: Vec<Summary>,
}

/// What a data file holds of one column: its nulls, and its smallest and largest value where
/// the file keeps statistics for it (an int of microseconds for an instant, else text).
#[pyclass(module = "logsieve._core", frozen, get_all)]
pub struct ColumnSummary {
    nulls: u64,
    min: Option<Py<PyAny>>,
    max: Option<Py<PyAny>>,
}

#[pymethods]
impl ParquetFile {
    #[new]
    #[pyo3(signature = (path, schema, *, dictionary, statistics))]
    fn new(
        path: PathBuf,
        schema: &Bound<'_, PyAny>,
        dictionary: Vec<String>,
        statistics: Vec<String>,
    ) -> PyResult<Self> {
        let schema = Arc::new(super::import_schema(schema)?);
        let names = schema.fields().iter().map(|f| f.name().clone()).collect();
        let options = FileOptions {
            dictionary,
            statistics,
        };
        let file = DataFile::create(&path, schema, &options)?;
        let written = Written {
            columns: file.columns().to_vec(),
            ..Written::default()
        };
        Ok(Self {
            file: Mutex::new(Some(file)),
            path,
            names,
            written: Mutex::new(written),
        })
    }

    /// Appends the rows of `batches` as row groups of at most `row_group_rows` rows.
    fn write(
        &self,
        py: Python<'_>,
        batches: Vec<Bound<'_, PyAny>>,
        row_group_rows: usize,
    ) -> PyResult<()> {
        let rows = batches
            .iter()
            .map(import_batch)
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| {
            let mut file = lock(&self.file);
            let file = file.as_mut().ok_or_else(|| self.closed())?;
            file.write(&rows, row_group_rows)?;
            *lock(&self.written) = Written {
                bytes: file.bytes_written(),
                rows: file.rows(),
                columns: file.columns().to_vec(),
            };
            Ok(())
        })
    }

    /// Bytes in the file after the last `write` (row groups; the footer comes with `close`).
    #[getter]
    fn bytes_written(&self) -> usize {
        lock(&self.written).bytes
    }

    /// Rows written.
    #[getter]
    fn rows(&self) -> u64 {
        lock(&self.written).rows
    }

    /// Each column's summary over the rows written, by name in the schema's order.
    fn columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        let written = lock(&self.written);
        for (name, summary) in self.names.iter().zip(&written.columns) {
            out.set_item(name, ColumnSummary::new(py, summary)?)?;
        }
        Ok(out)
    }

    /// Writes the footer and closes the file; closing again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match lock(&self.file).take() {
            Some(file) => Ok(file.close()?),
            None => Ok(()),
        })
    }

    fn __repr__(&self) -> String {
        format!("<ParquetFile {}>", self.path.display())
    }
}

impl ParquetFile {
    fn closed(&self) -> PyErr {
        PyValueError::new_err(format!(
            "the Parquet file {} is closed",
            self.path.display()
        ))
    }
}

#[pymethods]
impl ColumnSummary {
    fn __repr__(&self, py: Python<'_>) -> String {
        let show = |v: &Option<Py<PyAny>>| match v {
            Some(v) => v
                .bind(py)
                .repr()
                .map_or_else(|_| "?".into(), |r| r.to_string()),
            None => "None".into(),
        };
        format!(
            "ColumnSummary(nulls={}, min={}, max={})",
            self.nulls,
            show(&self.min),
            show(&self.max)
        )
    }
}

impl ColumnSummary {
    fn new(py: Python<'_>, summary: &Summary) -> PyResult<Self> {
        let value = |v: &Option<Extreme>| -> PyResult<Option<Py<PyAny>>> {
            Ok(match v {
                None => None,
                Some(Extreme::Int(n)) => Some(n.into_pyobject(py)?.into_any().unbind()),
                // Text columns hold UTF-8 (Arrow checks it), so nothing is ever replaced.
                Some(Extreme::Bytes(b)) => Some(
                    String::from_utf8_lossy(b)
                        .into_pyobject(py)?
                        .into_any()
                        .unbind(),
                ),
            })
        };
        Ok(Self {
            nulls: summary.nulls,
            min: value(&summary.min)?,
            max: value(&summary.max)?,
        })
    }
}

/// A poisoned lock only means another call panicked; the state it guards stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A record batch from anything with `__arrow_c_array__`, sharing its buffers.
fn import_batch(batch: &Bound<'_, PyAny>) -> PyResult<RecordBatch> {
    let pair = batch
        .call_method0("__arrow_c_array__")
        .map_err(|_| PyTypeError::new_err("ParquetFile.write() takes record batches"))?;
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
    Ok(RecordBatch::from(StructArray::from(data)))
}
