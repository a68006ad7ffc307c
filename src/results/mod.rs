//! Results: parquet storage of runs and curves, and provenance of each run.

pub mod memory;
pub mod models;
pub mod provenance;
pub mod store;

pub use models::ModelStore;
pub use store::{CurvePoint, ResultsDir, RunRecord};
