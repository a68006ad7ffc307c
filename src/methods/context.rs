//! What a method is given for one run, and what it returns.

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;

use super::reuse::TrainedModels;
use crate::error::Result;
use crate::models::{Classifier, Model, ModelSpec};
use crate::train::{
    CheckpointDir, Recipe, StepHooks, Stream, TrainData, TrainLog, TrainSettings, stream_rng, train,
};

/// What a method is given for one run.
pub struct MethodContext<'a, B: AutodiffBackend> {
    pub data: TrainData<'a>,
    pub model: &'a ModelSpec,
    pub recipe: &'a Recipe,
    /// The overparameterization factor of the experiment cell.
    pub k: usize,
    pub seed: u64,
    pub device: &'a B::Device,
    pub progress: &'a ProgressBar,
    /// Where the run keeps its checkpoints (none: no checkpointing).
    pub checkpoint: Option<CheckpointDir>,
    /// Where trained models that other runs reuse (ensemble members, teachers) are kept
    /// (none: nothing is reused).
    pub models: Option<&'a dyn TrainedModels<B::InnerBackend>>,
    /// Content fingerprint of the dataset, part of the key of every reusable model.
    pub data_fingerprint: &'a str,
}

/// What a method returns.
pub struct MethodOutput<B: AutodiffBackend> {
    /// The deployed small model, on the inner (non-autodiff) backend.
    pub deployed: Model<B::InnerBackend>,
    pub log: TrainLog,
    /// Parameters that were trained (k·n for majority kernels).
    pub trained_params: usize,
}

#[cfg(test)]
impl<'a, B: AutodiffBackend> MethodContext<'a, B> {
    /// A unit test's run: seed 0, no checkpoints, no model store.
    pub(crate) fn for_test(
        data: TrainData<'a>,
        model: &'a ModelSpec,
        recipe: &'a Recipe,
        k: usize,
        device: &'a B::Device,
        progress: &'a ProgressBar,
    ) -> Self {
        Self {
            data,
            model,
            recipe,
            k,
            seed: 0,
            device,
            progress,
            checkpoint: None,
            models: None,
            data_fingerprint: "test",
        }
    }
}

impl<B: AutodiffBackend> MethodContext<'_, B> {
    /// The recipe as-is: how the baseline trains the small model.
    pub fn plain_settings(&self) -> TrainSettings {
        TrainSettings {
            optimizer: self.recipe.optimizer.clone(),
            schedule: self.recipe.schedule.clone(),
            epochs: self.recipe.epochs,
            batch_size: self.recipe.batch_size,
            augment: self.recipe.augment,
            label_smoothing: self.recipe.label_smoothing,
            eval_every: self.recipe.eval_every,
            seed: self.seed,
        }
    }

    /// Trains `model` with the shared loop on this run's data, each step shaped by `hooks`,
    /// checkpointing as configured. Methods with several training phases pass a distinct
    /// `phase` name for each.
    pub fn train<M>(
        &self,
        model: M,
        settings: &TrainSettings,
        hooks: &mut dyn StepHooks<B>,
        phase: &str,
    ) -> Result<(M, TrainLog)>
    where
        M: Classifier<B> + AutodiffModule<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        let checkpoint = self.checkpoint.as_ref().map(|c| c.phase(phase));
        train(
            model,
            &self.data,
            settings,
            hooks,
            self.device,
            self.progress,
            checkpoint.as_ref(),
        )
    }

    /// The freshly initialised small model for this seed (the same for every method).
    pub fn small_model(&self) -> Model<B> {
        self.model.build(
            self.data.train,
            &mut stream_rng(self.seed, Stream::Init),
            self.device,
        )
    }
}
