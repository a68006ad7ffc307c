//! Results: the stored rows (declared once in [`schema`]), parquet storage of runs, curves and
//! bench measurements, and provenance of each row.

pub mod bench;
pub mod memory;
pub mod models;
pub mod provenance;
pub mod schema;
pub mod store;

pub use models::ModelStore;
pub use store::{CurvePoint, ReferenceRecord, ResultsDir, RunRecord, parquet_files};
