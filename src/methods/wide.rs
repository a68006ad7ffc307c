//! `wide`: the k-times-wider model trained normally. An upper reference, not deployable at the
//! small size: its deployed model is the wide one, and result rows show its k-fold size.

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::baseline::plain_settings;
use super::{Method, MethodContext, MethodOutput};
use crate::error::Result;
use crate::models::ModelSpec;
use crate::train::{Stream, stream_rng};

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

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let spec = ctx.model.widened(ctx.k);
        let model = spec.build(
            ctx.data.train,
            &mut stream_rng(ctx.seed, Stream::Init),
            ctx.device,
        );
        let trained_params = model.num_params();
        let (model, log) = ctx.train(model, &plain_settings(ctx), "wide")?;
        Ok(MethodOutput {
            deployed: model.valid(),
            log,
            trained_params,
        })
    }
}
