//! Training: recipes, optimisers, the shared loop and evaluation.

pub mod adversary;
pub mod batchnorm;
pub mod checkpoint;
pub mod eval;
pub mod optim;
pub mod recipe;
pub mod trainer;

pub use adversary::Adversary;
pub use batchnorm::recalibrate_batchnorm;
pub use checkpoint::CheckpointDir;
pub use eval::{Metrics, evaluate};
pub use recipe::{OptimizerSpec, Recipe, ScheduleKind, ScheduleSpec};
pub use trainer::{
    Distillation, EvalPoint, Stream, TrainData, TrainLog, TrainSettings, stream_rng, stream_rng_at,
    subset_seed, train,
};
