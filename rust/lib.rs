//! logsieve's core: JSON Lines bytes to validated, transformed Arrow record batches.
//!
//! Modules by responsibility: `lines` (splitting), `json` (strict scanning), `timestamp`
//! (parsing and formatting instants), `record` (the contract's rules), `columns` (Arrow
//! buffers, and the one list of the clean columns' layout), `error_lines` (error records as JSON
//! Lines), `merge` (placing parallel pieces in one output), `concat` (joining the pieces' error
//! records), `memory` (huge pages for big outputs, the allocator's purge delay), `pipeline`
//! (parallel driver), `scan` (columns back from small Parquet files), `datafile` (the table's
//! data files written, columns in parallel), `dates` (rows split into the table's partitions),
//! `errors` (the one error type), `python` (bindings).
//!
//! Every module is private: the crate's interface is the Python module `_core`. (The
//! `json_parsers` bench compiles `json.rs` by path, on its own.)

mod columns;
mod concat;
mod datafile;
mod dates;
mod error_lines;
mod errors;
mod json;
mod lines;
mod memory;
mod merge;
mod pipeline;
mod python;
mod record;
mod scan;
mod timestamp;

use pyo3::prelude::*;

/// mimalloc keeps freed pages mapped for reuse: each call allocates its output columns afresh,
/// and with the system allocator the page faults of those fresh pages cost a third of the time.
/// `logsieve/__init__.py` sets its options (environment variables read when this library loads).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
mod _core {
    #[pymodule_export]
    use super::python::{
        Batch, ColumnSummary, DatePart, ParquetFile, Scan, Stats, process, process_lines,
        purge_delay, read_columns, set_purge_delay, split_by_date,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        let codes = super::record::ErrorCode::ALL.map(super::record::ErrorCode::as_str);
        m.add("ERROR_CODES", pyo3::types::PyTuple::new(m.py(), codes)?)
    }
}
