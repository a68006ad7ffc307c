//! Training: recipes, the shared loop, the training step (mixing and updating) and the hooks
//! through which methods shape it, checkpoints, evaluation.

pub mod batchnorm;
pub mod checkpoint;
pub mod eval;
pub mod hooks;
pub mod log;
pub mod recipe;
pub mod step;
pub mod trainer;

pub use batchnorm::recalibrate_batchnorm;
pub use checkpoint::{CheckpointDir, RunClock};
pub use eval::{Metrics, evaluate, majority_class};
pub use hooks::{MixingDraw, PlainStep, StepHooks, StepPosition};
pub use log::{EvalPoint, TrainLog};
// The recipe's optimiser, where experiment code looks for the recipe's parts.
pub use crate::optim::OptimizerSpec;
pub use recipe::{Recipe, ScheduleKind, ScheduleSpec};
pub use step::MkStep;
pub use trainer::{
    Stream, TrainData, TrainSettings, evaluate_point, mixing_gradient, stream_rng, stream_rng_at,
    subset_seed, train,
};
