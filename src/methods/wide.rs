//! `wide`: the k-times-wider model trained normally. An upper reference, not deployable at the
//! small size: its deployed model is the wide one, and result rows show its k-fold size.

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::{Method, MethodContext, MethodOutput};
use crate::error::Result;
use crate::models::ModelSpec;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wide {}

impl<B: AutodiffBackend> Method<B> for Wide {
    fn name(&self) -> &'static str {
        "wide"
    }

    fn uses_k(&self) -> bool {
        true
    }

    fn deployed_spec(&self, small: &ModelSpec, k: usize) -> ModelSpec {
        small.widened(k)
    }

    /// The wide model is the one distillation teachers and submodular selection use: trained
    /// once per seed and recipe, stored with its log, and reused by whichever needs it first.
    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let spec = ctx.model.widened(ctx.k);
        let (deployed, log, _) = ctx.trained_model_with_log(&spec, ctx.seed, "wide")?;
        Ok(MethodOutput {
            trained_params: deployed.num_params(),
            deployed,
            log,
        })
    }
}
