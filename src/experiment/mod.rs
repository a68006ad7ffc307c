//! Experiments as data: declarative files, profiles, overrides and the run plan.

pub mod overrides;
pub mod plan;
pub mod spec;

pub use plan::{RunSpec, plan};
pub use spec::{DatasetEntry, Experiment, ResolvedExperiment, list, load, locate};
