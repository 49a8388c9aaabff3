//! logsieve's core: JSON Lines bytes to validated, transformed Arrow record batches.
//!
//! Modules by responsibility: `lines` (splitting), `json` (strict scanning), `timestamp`
//! (parsing and formatting instants), `record` (the contract's rules), `columns` (Arrow
//! buffers), `error_lines` (error records as JSON Lines), `merge` (stitching parallel pieces), `pipeline` (parallel driver), `errors` (the one error type), `python` (bindings).

pub mod columns;
pub mod error_lines;
pub mod errors;
pub mod json;
pub mod lines;
pub mod merge;
pub mod pipeline;
pub mod python;
pub mod record;
pub mod timestamp;

use pyo3::prelude::*;

/// mimalloc keeps freed pages mapped for reuse: each call allocates its output columns afresh,
/// and with the system allocator the page faults of those fresh pages cost a third of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (the crate names no constant for it;
/// a test checks the index against the option's documented default of 1000 ms).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory for reuse for 10 s (mimalloc's default is 1 s) before returning it to
/// the OS, as jemalloc does by default: the columns of one call are freed while the caller
/// writes them out, and the next call would otherwise fault fresh, zeroed pages in again.
/// An explicit `MIMALLOC_PURGE_DELAY` in the environment wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
    }
}

#[pymodule]
mod _core {
    #[pymodule_export]
    use super::python::{Batch, Stats, process, process_lines};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        super::tune_allocator();
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        let codes = super::record::ErrorCode::ALL.map(super::record::ErrorCode::as_str);
        m.add("ERROR_CODES", pyo3::types::PyTuple::new(m.py(), codes)?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn purge_delay_option_index() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an integer option.
            let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
            assert_eq!(
                delay, 1000,
                "mi_option_t changed: fix MI_OPTION_PURGE_DELAY"
            );
        }
    }
}
