//! `lr_over_k`: the baseline at learning rate lr/k, what uniform mixing reduces to without
//! learning-rate compensation (docs/METHODS.md, "Baselines"). Weight decay is scaled by k so that
//! the product
//! lr·wd, and hence the decay per step, is the baseline's.

use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::baseline::{plain_settings, train_small};
use super::{Method, MethodContext, MethodOutput};
use crate::error::Result;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrOverK {}

impl<B: AutodiffBackend> Method<B> for LrOverK {
    fn name(&self) -> &'static str {
        "lr_over_k"
    }

    fn uses_k(&self) -> bool {
        true
    }

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let mut settings = plain_settings(ctx);
        let k = ctx.k as f64;
        settings.optimizer = settings.optimizer.scaled(1.0 / k, k);
        train_small(ctx, &settings)
    }
}
