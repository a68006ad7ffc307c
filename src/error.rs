//! One error type for the whole harness. Every variant names the file, key or value at fault
//! so that a researcher can fix the input without reading the source.

use std::path::PathBuf;

/// Errors raised by the harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file exists but its content is not what its format promises.
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    /// A dataset could not be found locally nor fetched.
    #[error("{0}")]
    MissingData(String),
    /// An experiment file or a `--set` override is invalid.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A value on the command line is invalid.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a parquet results file failed.
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    /// A results file exists but does not have the expected columns.
    #[error("{path}: {message}")]
    Results { path: PathBuf, message: String },
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A data-format error for `path`.
    pub fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A configuration error in `file`.
    pub fn config(file: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            file: file.into(),
            message: message.into(),
        }
    }
}
