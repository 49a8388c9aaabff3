//! `ParquetFile`: a data file of the clean table, written from record batches of pyarrow (or
//! anything else with Arrow's PyCapsule interface).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::import_batch;
use crate::datafile::{ColumnSummary as Summary, DataFile, Extreme, FileOptions};
use crate::errors::CoreError;

/// One Parquet data file being written; each row group's columns are encoded in parallel on the
/// core's threads, without the GIL. Calls from several threads take turns.
#[pyclass(module = "logsieve._core", frozen)]
pub struct ParquetFile {
    file: Mutex<State>,
    path: PathBuf,
    names: Vec<String>,
    /// What the file holds as of the last write: answered while another thread writes, and
    /// once the file is closed.
    written: Mutex<Written>,
}

enum State {
    Open(Box<DataFile>),
    /// A write failed part way: the file is incomplete, and this says why.
    Failed(String),
    Closed,
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
        let file = DataFile::create(&path, schema, &options).map_err(|e| at(&path, e))?;
        let written = Written {
            columns: file.columns().to_vec(),
            ..Written::default()
        };
        Ok(Self {
            file: Mutex::new(State::Open(Box::new(file))),
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
            .map(|batch| import_batch(batch, "ParquetFile.write()"))
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| {
            let mut state = lock(&self.file);
            let file = match &mut *state {
                State::Open(file) => file,
                other => return Err(self.unusable(other)),
            };
            let result = file.write(&rows, row_group_rows);
            *lock(&self.written) = Written {
                bytes: file.bytes_written(),
                rows: file.rows(),
                columns: file.columns().to_vec(),
            };
            match result {
                Ok(()) => Ok(()),
                Err(e @ CoreError::Config(_)) => Err(e.into()), // refused, nothing written
                Err(e) => {
                    *state = State::Failed(e.to_string());
                    Err(at(&self.path, e).into())
                }
            }
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
        py.detach(|| {
            let mut state = lock(&self.file);
            match std::mem::replace(&mut *state, State::Closed) {
                State::Open(file) => file.close().map_err(|e| {
                    *state = State::Failed(e.to_string());
                    at(&self.path, e).into()
                }),
                State::Closed => Ok(()),
                failed @ State::Failed(_) => {
                    let err = self.unusable(&failed);
                    *state = failed;
                    Err(err)
                }
            }
        })
    }

    fn __repr__(&self) -> String {
        format!("<ParquetFile {}>", self.path.display())
    }
}

impl ParquetFile {
    fn unusable(&self, state: &State) -> PyErr {
        let path = self.path.display();
        match state {
            State::Failed(why) => CoreError::Output(std::io::Error::other(format!(
                "the Parquet file {path} is incomplete after an earlier failure ({why})"
            )))
            .into(),
            _ => PyValueError::new_err(format!("the Parquet file {path} is closed")),
        }
    }
}

/// An output error that names the file (the OS's message alone does not).
fn at(path: &std::path::Path, e: CoreError) -> CoreError {
    match e {
        CoreError::Output(io) => CoreError::Output(std::io::Error::new(
            io.kind(),
            format!("{}: {io}", path.display()),
        )),
        other => other,
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
        // Text that is not UTF-8 (a producer's arrays are not validated on import) has no
        // extremes a reader could compare with: none rather than replaced characters, which
        // would sort elsewhere and let a reader skip the file wrongly.
        let text = |v: &Option<Extreme>| match v {
            Some(Extreme::Bytes(b)) => std::str::from_utf8(b).is_ok(),
            _ => true,
        };
        let (min, max) = if text(&summary.min) && text(&summary.max) {
            (value(py, &summary.min)?, value(py, &summary.max)?)
        } else {
            (None, None)
        };
        Ok(Self {
            nulls: summary.nulls,
            min,
            max,
        })
    }
}

fn value(py: Python<'_>, v: &Option<Extreme>) -> PyResult<Option<Py<PyAny>>> {
    Ok(match v {
        None => None,
        Some(Extreme::Int(n)) => Some(n.into_pyobject(py)?.into_any().unbind()),
        Some(Extreme::Bytes(b)) => Some(
            String::from_utf8_lossy(b)
                .into_pyobject(py)?
                .into_any()
                .unbind(),
        ),
    })
}

/// A poisoned lock only means another call panicked; the state it guards stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
