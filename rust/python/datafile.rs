//! `ParquetFile`: a data file of the clean table, written from record batches of pyarrow (or
//! anything else with Arrow's PyCapsule interface).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi};
use arrow_array::{RecordBatch, StructArray};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::datafile::{DataFile, FileOptions};

/// One Parquet data file being written; each row group's columns are encoded in parallel on the
/// core's threads, without the GIL. Calls from several threads take turns.
#[pyclass(module = "logsieve._core", frozen)]
pub struct ParquetFile {
    file: Mutex<Option<DataFile>>,
    path: PathBuf,
    /// What `bytes_written` answers while another thread may be writing.
    written: AtomicUsize,
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
        let options = FileOptions {
            dictionary,
            statistics,
        };
        let file = DataFile::create(&path, schema, &options)?;
        Ok(Self {
            file: Mutex::new(Some(file)),
            path,
            written: AtomicUsize::new(0),
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
            let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            let file = file.as_mut().ok_or_else(|| self.closed())?;
            file.write(&rows, row_group_rows)?;
            self.written.store(file.bytes_written(), Ordering::Relaxed);
            Ok(())
        })
    }

    /// Bytes in the file after the last `write` (row groups; the footer comes with `close`).
    #[getter]
    fn bytes_written(&self) -> usize {
        self.written.load(Ordering::Relaxed)
    }

    /// Writes the footer and closes the file; closing again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let file = self.file.lock().unwrap_or_else(|e| e.into_inner()).take();
            match file {
                Some(file) => Ok(file.close()?),
                None => Ok(()),
            }
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
