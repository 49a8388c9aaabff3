//! What the bindings return: `Batch` (clean rows, error records, counts), `Stats`, `Scan`,
//! `DatePart`.

use arrow_array::{Array, RecordBatch, StringArray};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict};

use super::arrow::{ArrowExport, to_pyarrow};
use crate::dates;
use crate::error_lines::{write_error_lines, write_error_lines_to};
use crate::pipeline::{self, Output};
use crate::record::ErrorCode;

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

    /// Error records per code, codes in the contract's order, those with none left out.
    #[getter]
    fn error_counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let codes = ErrorCode::ALL.map(ErrorCode::as_str);
        let mut counts = [0u64; ErrorCode::ALL.len()];
        let column = self.errors.column_by_name("error");
        if let Some(texts) = column.and_then(|c| c.as_any().downcast_ref::<StringArray>()) {
            for code in texts.iter().flatten() {
                if let Some(i) = codes.iter().position(|c| *c == code) {
                    counts[i] += 1;
                }
            }
        }
        let out = PyDict::new(py);
        for (code, count) in codes.iter().zip(counts) {
            if count > 0 {
                out.set_item(code, count)?;
            }
        }
        Ok(out)
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
    pub fn new(py: Python<'_>, o: Output) -> PyResult<Py<Self>> {
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

/// The columns `read_columns` read, and the files it could not.
#[pyclass(module = "logsieve._core", frozen)]
pub struct Scan {
    pub rows: RecordBatch,
    #[pyo3(get)]
    pub failed: Py<PyDict>,
}

#[pymethods]
impl Scan {
    /// `file` (index into the inputs) and the requested columns as a `pyarrow.RecordBatch`.
    #[getter]
    fn rows(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_pyarrow(py, &self.rows)
    }
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

/// The rows of one UTC date (`split_by_date`), in their order in the batch they came from.
#[pyclass(module = "logsieve._core", frozen, get_all)]
pub struct DatePart {
    date: String,
    rows: Py<PyAny>,
}

impl DatePart {
    pub fn new(py: Python<'_>, part: dates::DatePart) -> PyResult<Self> {
        Ok(Self {
            date: part.date,
            rows: to_pyarrow(py, &part.rows)?,
        })
    }
}

#[pymethods]
impl DatePart {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let rows = self.rows.bind(py).getattr("num_rows")?;
        Ok(format!(
            "DatePart(date={:?}, rows=<{rows} rows>)",
            self.date
        ))
    }
}
