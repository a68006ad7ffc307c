//! Training: recipes, the shared loop and the hooks through which methods shape its steps,
//! checkpoints, evaluation.

pub mod batchnorm;
pub mod checkpoint;
pub mod eval;
pub mod hooks;
pub mod log;
pub mod optim;
pub mod recipe;
pub mod trainer;

pub use batchnorm::recalibrate_batchnorm;
pub use checkpoint::CheckpointDir;
pub use eval::{Metrics, evaluate};
pub use hooks::{MixingDraw, PlainStep, StepHooks, StepPosition};
pub use log::{EvalPoint, TrainLog};
pub use recipe::{OptimizerSpec, Recipe, ScheduleKind, ScheduleSpec};
pub use trainer::{
    Stream, TrainData, TrainSettings, mixing_gradient, stream_rng, stream_rng_at, subset_seed,
    train,
};
