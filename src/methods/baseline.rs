//! `baseline`: the small model trained with the experiment's recipe.

use serde::Deserialize;

use super::{Method, MethodContext, MethodOutput};
use crate::error::Result;
use crate::train::TrainSettings;
use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;

/// The small model, same recipe, same number of steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {}

/// The recipe as-is, for a plain (non-MK) model.
pub fn plain_settings<B: AutodiffBackend>(ctx: &MethodContext<'_, B>) -> TrainSettings {
    TrainSettings {
        optimizer: ctx.recipe.optimizer.clone(),
        schedule: ctx.recipe.schedule.clone(),
        epochs: ctx.recipe.epochs,
        batch_size: ctx.recipe.batch_size,
        mixing: None,
        mk_grad_scale: 1.0,
        adversary: None,
        distillation: None,
        augment: ctx.recipe.augment,
        label_smoothing: ctx.recipe.label_smoothing,
        seed: ctx.seed,
    }
}

/// Trains the seed's small model with `settings`; shared by the plain baselines.
pub fn train_small<B: AutodiffBackend>(
    ctx: &MethodContext<'_, B>,
    settings: &TrainSettings,
) -> Result<MethodOutput<B>> {
    let model = ctx.small_model();
    let trained_params = model.num_params();
    let (model, log) = ctx.train(model, settings, "small")?;
    Ok(MethodOutput {
        deployed: model.valid(),
        log,
        trained_params,
    })
}

impl<B: AutodiffBackend> Method<B> for Baseline {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn uses_k(&self) -> bool {
        false
    }

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        train_small(ctx, &plain_settings(ctx))
    }
}
