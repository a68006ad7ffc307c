//! `wide`: the k-times-wider model trained normally. An upper reference, not deployable at the
//! small size: its deployed model is the wide one, and result rows show its k-fold size.

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;
use crate::models::ModelSpec;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wide {}

impl MethodSpec for Wide {
    fn validate_model(&self, model: &ModelSpec) -> std::result::Result<(), String> {
        super::spec::refuse_wide_pretrained(model, "wide trains and deploys what")
    }

    fn info() -> MethodInfo {
        MethodInfo::new(
            "the k-times-wider model trained normally (deployed size k-fold)",
            Role::Reference,
        )
    }

    fn deployed_spec(&self, small: &ModelSpec, k: usize) -> ModelSpec {
        small.widened(k)
    }

    fn training_passes(&self, small: &ModelSpec, k: usize, epochs: usize) -> Vec<(ModelSpec, f64)> {
        vec![(small.widened(k), epochs as f64)]
    }
}

impl Method for Wide {
    /// The wide model is the one distillation teachers and submodular selection use: trained
    /// once per seed and recipe, stored with its log, and reused by whichever needs it first.
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let spec = ctx.model.widened(ctx.k);
        let (deployed, log, _) = ctx.trained_model_with_log(&spec, ctx.seed, "wide")?;
        Ok(MethodOutput {
            trained_params: deployed.num_params(),
            deployed,
            log,
        })
    }
}
