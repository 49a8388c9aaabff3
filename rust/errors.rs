//! The one error type of the core, and its conversion into the exceptions of `logsieve.errors`.
//!
//! Invalid input lines are not errors here: they are data, and go to the error batch.
//! These are the cases where a whole call cannot proceed.

use std::fmt;

use pyo3::PyErr;
use pyo3::import_exception;

import_exception!(logsieve.errors, InputTooLargeError);
import_exception!(logsieve.errors, ConfigError);
import_exception!(logsieve.errors, InternalError);

#[derive(Debug)]
pub enum CoreError {
    /// An output column would pass the 2 GiB that Arrow's 32-bit offsets can address.
    InputTooLarge { what: &'static str, bytes: usize },
    /// A setting the caller passed is unusable.
    Config(String),
    /// A bug: a panic or an Arrow invariant broken by our own code.
    Internal(String),
    /// Writing output failed (the file object's `write` raised, a disk filled up).
    Output(std::io::Error),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InputTooLarge { what, bytes } => write!(
                f,
                "{what} would hold {bytes} bytes, more than one Arrow batch can address \
                 (2 GiB); pass the input through logsieve.process_stream() instead"
            ),
            Self::Config(msg) => f.write_str(msg),
            Self::Internal(msg) => write!(
                f,
                "internal error in logsieve's core (please report it): {msg}"
            ),
            Self::Output(e) => write!(f, "writing the output failed: {e}"),
        }
    }
}

impl std::error::Error for CoreError {}

/// Arrow only fails when our own code broke one of its invariants.
impl From<arrow_schema::ArrowError> for CoreError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        CoreError::Internal(format!("building or exporting Arrow data failed: {e}"))
    }
}

impl From<std::io::Error> for CoreError {
    fn from(e: std::io::Error) -> Self {
        CoreError::Output(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> Self {
        let msg = e.to_string();
        match e {
            CoreError::InputTooLarge { .. } => InputTooLargeError::new_err(msg),
            CoreError::Config(_) => ConfigError::new_err(msg),
            CoreError::Internal(_) => InternalError::new_err(msg),
            // The Python exception the file object raised, where there was one.
            CoreError::Output(e) => match e.downcast::<PyErr>() {
                Ok(raised) => raised,
                Err(other) => pyo3::exceptions::PyOSError::new_err(other.to_string()),
            },
        }
    }
}
