//! What a training run did: its evaluation points and totals, stored with checkpoints and
//! results.

use serde::{Deserialize, Serialize};

use super::eval::Metrics;

/// One evaluation of the deployed (eval-mode) model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub epoch: usize,
    pub step: usize,
    pub lr: f64,
    pub train: Metrics,
    pub test: Metrics,
    /// The validation slice's metrics, when the recipe holds one out (checkpoints written
    /// before validation splits existed have none).
    #[serde(default)]
    pub validation: Option<Metrics>,
    /// Training seconds so far, evaluation excluded.
    pub train_seconds: f64,
}

/// What a training run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainLog {
    pub points: Vec<EvalPoint>,
    pub steps: usize,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    /// The loss became NaN or infinite; training stopped at that step.
    pub diverged: bool,
    /// The epoch training resumed after (0 when it started fresh).
    pub resumed_after_epoch: usize,
    /// Steps spent training the teachers or ensemble members this run needed (0 when they
    /// were reused from earlier runs): the method's cost beyond its own steps.
    pub teacher_steps: usize,
}

impl TrainLog {
    /// Mean wall-clock of one training step in milliseconds.
    pub fn step_ms(&self) -> f64 {
        1e3 * self.train_seconds / self.steps.max(1) as f64
    }
}
