//! How a method shapes each step of the shared training loop.
//!
//! The loop (`trainer.rs`) does what every method does: batches, forward, backward, the fused
//! update, evaluation, checkpoints. A method changes a step only through these hooks (in the
//! spirit of the AlgoPerf submission API's `update_params`): how majority kernels are mixed,
//! which loss is minimised, and how strongly the copies move. Each hook has the plain
//! training step as its default, so a method implements only what it changes.

use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;

/// Where the loop is when it asks a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPosition {
    /// Steps taken before this one (0 at the first step of the run).
    pub step: usize,
    /// The current epoch, from 1.
    pub epoch: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Epochs of the whole run.
    pub epochs: usize,
}

impl StepPosition {
    /// How far training has gone, from 0 at the first step to 1 at the last.
    pub fn progress(&self) -> f64 {
        if self.total_steps <= 1 {
            0.0
        } else {
            self.step as f64 / (self.total_steps - 1) as f64
        }
    }
}

/// One step's request for mixing coefficients.
pub struct MixingDraw<'a> {
    pub position: StepPosition,
    /// Majority-kernel layers of the model (rows of the answer).
    pub layers: usize,
    /// Copies per kernel (columns of the answer).
    pub k: usize,
    /// The epoch's mixing stream: random draws must come from it, so that a resumed run draws
    /// what an uninterrupted one draws.
    pub rng: &'a mut StdRng,
    /// `dL/dp` (`[layers, k]`, row-major) of this step's batch at the given coefficients: one
    /// extra forward and backward pass per call (adversarial mixing uses it).
    pub loss_gradient: &'a dyn Fn(&[f32]) -> Vec<f32>,
}

/// The parts of a training step a method may change. The defaults are the plain step.
pub trait StepHooks<B: AutodiffBackend> {
    /// This step's mixing coefficients, `[layers, k]` row-major, every row on the simplex.
    /// Asked only when the model has majority kernels. Default: uniform (the mean kernel).
    fn mixing(&mut self, draw: MixingDraw<'_>) -> Vec<f32> {
        vec![1.0 / draw.k as f32; draw.layers * draw.k]
    }

    /// The loss of this step's `logits` for the training examples `batch` (indices into the
    /// training set). Default: cross-entropy against the labels (with the recipe's label
    /// smoothing, already in `cross_entropy`).
    fn loss(
        &self,
        logits: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        _batch: &[usize],
        cross_entropy: &CrossEntropyLoss<B>,
    ) -> Tensor<B, 1> {
        cross_entropy.forward(logits, labels)
    }

    /// Whether [`StepHooks::mixing`] may be asked for a step's coefficients during the
    /// previous step, before its update: true only when the draw depends on nothing but its
    /// position and the mixing stream (never on the model, nor on `loss_gradient`, which then
    /// panics). The loop then mixes that step's kernels inside the update pass, which reads
    /// every copy anyway (one pass over the copies less per step; same draws, same values).
    /// Default: false.
    fn draws_ahead(&self) -> bool {
        false
    }

    /// Factor on the majority-kernel copies' gradients before the update (learning-rate
    /// compensation, docs/METHODS.md). Default: 1.
    fn copy_grad_scale(&self) -> f32 {
        1.0
    }
}

/// The plain training step: every hook at its default.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainStep;

impl<B: AutodiffBackend> StepHooks<B> for PlainStep {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_runs_from_zero_to_one() {
        let at = |step| StepPosition {
            step,
            epoch: 1,
            total_steps: 5,
            epochs: 1,
        };
        assert_eq!(at(0).progress(), 0.0);
        assert_eq!(at(2).progress(), 0.5);
        assert_eq!(at(4).progress(), 1.0);
        let single = StepPosition {
            total_steps: 1,
            ..at(0)
        };
        assert_eq!(single.progress(), 0.0);
    }
}
