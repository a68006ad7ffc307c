//! Experiments as data: declarative files, profiles, overrides and the run plan.

pub mod overrides;
pub mod plan;
pub mod spec;
pub mod tune;

pub use plan::{FinalRun, Phase, Plan, RunSpec, TuningState, plan};
pub use spec::{ClaimsConfig, DatasetEntry, Experiment, ResolvedExperiment, list, load, locate};
pub use tune::{GridPoint, TuneSpec};
