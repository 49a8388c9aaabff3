//! Arrow's PyCapsule interface: record batches handed to pyarrow (or any other consumer)
//! without copying.

use std::ffi::CStr;

use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{Array, RecordBatch, RecordBatchIterator, StructArray};
use pyo3::prelude::*;
use pyo3::types::{PyCapsule, PyTuple};

use crate::errors::CoreError;

const ARROW_SCHEMA: &CStr = c"arrow_schema";
const ARROW_ARRAY: &CStr = c"arrow_array";
const ARROW_STREAM: &CStr = c"arrow_array_stream";

/// One record batch exported through the Arrow PyCapsule interface: what `pyarrow.record_batch`
/// takes without copying, and the base class of [`Batch`], whose export is its clean rows.
#[pyclass(module = "logsieve._core", frozen, subclass)]
pub struct ArrowExport(pub RecordBatch);

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
pub fn to_pyarrow(py: Python<'_>, batch: &RecordBatch) -> PyResult<Py<PyAny>> {
    let export = Bound::new(py, ArrowExport(batch.clone()))?;
    let record_batch = py.import("pyarrow")?.getattr("record_batch")?;
    Ok(record_batch.call1((export,))?.unbind())
}
