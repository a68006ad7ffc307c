//! Training: recipes, the training step (mixing and updating), the shared loop and
//! evaluation.

pub mod adversary;
pub mod batchnorm;
pub mod checkpoint;
pub mod eval;
pub mod recipe;
pub mod step;
pub mod trainer;

pub use adversary::Adversary;
pub use batchnorm::recalibrate_batchnorm;
pub use checkpoint::CheckpointDir;
pub use eval::{Metrics, evaluate};
// The recipe's optimiser, where experiment code looks for the recipe's parts.
pub use crate::optim::OptimizerSpec;
pub use recipe::{Recipe, ScheduleKind, ScheduleSpec};
pub use step::MkStep;
pub use trainer::{
    Distillation, EvalPoint, Stream, TrainData, TrainLog, TrainSettings, stream_rng, stream_rng_at,
    subset_seed, train,
};
