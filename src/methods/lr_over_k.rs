//! `lr_over_k`: the baseline at learning rate lr/k, what uniform mixing reduces to without
//! learning-rate compensation (docs/METHODS.md, "Baselines"). Weight decay is scaled by k
//! so that the product lr·wd, and hence the decay per step, is the baseline's.

use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::baseline::train_small;
use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrOverK {}

impl MethodSpec for LrOverK {
    fn info() -> MethodInfo {
        MethodInfo::new(
            "the baseline at learning rate lr/k (weight decay k·wd)",
            Role::Control,
        )
    }
}

impl Method for LrOverK {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let mut settings = ctx.plain_settings();
        let k = ctx.k as f64;
        settings.optimizer = settings.optimizer.scaled(1.0 / k, k);
        train_small(ctx, &settings)
    }
}
