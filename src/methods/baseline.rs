//! `baseline`: the small model trained with the experiment's recipe.

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;
use crate::train::{PlainStep, TrainSettings};

/// The small model, same recipe, same number of steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {}

/// Trains the seed's small model with `settings` and plain steps; shared by the plain
/// baselines.
pub fn train_small<B: AutodiffBackend>(
    ctx: &MethodContext<'_, B>,
    settings: &TrainSettings,
) -> Result<MethodOutput<B>> {
    let model = ctx.small_model();
    let trained_params = model.num_params();
    let (model, log) = ctx.train(model, settings, &mut PlainStep, "small")?;
    Ok(MethodOutput {
        deployed: model.valid(),
        log,
        trained_params,
    })
}

impl MethodSpec for Baseline {
    fn info() -> MethodInfo {
        MethodInfo {
            uses_k: false,
            ..MethodInfo::new("the small model, same recipe and steps", Role::Baseline)
        }
    }
}

impl Method for Baseline {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        train_small(ctx, &ctx.plain_settings())
    }
}
