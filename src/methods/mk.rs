//! `mk`: majority kernels. Every dense/conv kernel of the small model is trained as k copies,
//! mixed with fresh random simplex coefficients at each step, and collapsed to the mean of its
//! copies for deployment.

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::baseline::plain_settings;
use super::{Method, MethodContext, MethodOutput};
use crate::error::{Error, Result};
use crate::mk::{Mixing, MkInit};
use crate::train::{Adversary, Stream, recalibrate_batchnorm, stream_rng};

/// Learning-rate compensation for the copies (docs/METHODS.md, "Majority kernels": learning-rate
/// compensation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrCompensation {
    /// Under (momentum) SGD the copies get k times the learning rate and 1/k the weight decay,
    /// so the deployed mean kernel moves as the baseline's would; under Adam nothing changes.
    #[default]
    Auto,
    /// No compensation: under SGD, MK is then the lr/k baseline plus mixing noise.
    None,
}

/// Majority kernels with their options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MajorityKernels {
    #[serde(default)]
    pub mixing: Mixing,
    #[serde(default)]
    pub init: MkInit,
    #[serde(default)]
    pub lr_compensation: LrCompensation,
    /// Re-estimate BatchNorm statistics of the collapsed model on this many training batches
    /// (0: keep the statistics gathered with mixed kernels). Models without BatchNorm ignore it.
    #[serde(default)]
    pub bn_recalibration: usize,
}

impl MajorityKernels {
    /// Trains the MK twin of the seed's small model (with `adversary`, adversarial MK) and
    /// deploys it collapsed.
    pub fn train_mk<B: AutodiffBackend>(
        &self,
        ctx: &MethodContext<'_, B>,
        adversary: Option<Adversary>,
    ) -> Result<MethodOutput<B>> {
        let small = ctx.small_model();
        let model = small.to_mk(
            ctx.k,
            self.init,
            &mut stream_rng(ctx.seed, Stream::MkCopies),
        );
        let trained_params = model.num_params();
        let mut settings = plain_settings(ctx);
        settings.mixing = Some(self.mixing);
        settings.adversary = adversary;
        if self.lr_compensation == LrCompensation::Auto && ctx.recipe.optimizer.is_sgd() {
            settings.mk_grad_scale = ctx.k as f32;
        }
        let (model, log) = ctx.train(model, &settings, "mk")?;
        let mut deployed = model.collapse();
        recalibrate_batchnorm(
            &mut deployed,
            ctx.data.train,
            self.bn_recalibration,
            ctx.recipe.batch_size,
            ctx.seed,
            ctx.device,
        );
        Ok(MethodOutput {
            deployed: deployed.valid(),
            log,
            trained_params,
        })
    }
}

impl<B: AutodiffBackend> Method<B> for MajorityKernels {
    fn name(&self) -> &'static str {
        "mk"
    }

    fn uses_k(&self) -> bool {
        true
    }

    fn options(&self) -> serde_json::Value {
        let mut options = serde_json::json!({
            "mixing": self.mixing.to_string(),
            "init": self.init.label(),
            "lr_compensation": self.lr_compensation,
        });
        // Only when set: run ids of runs without it stay what they were.
        if self.bn_recalibration > 0 {
            options["bn_recalibration"] = self.bn_recalibration.into();
        }
        options
    }

    fn validate(&self, k: usize) -> std::result::Result<(), String> {
        self.mixing.validate(k)
    }

    fn mixing_label(&self, k: usize) -> Option<String> {
        Some(self.mixing.label(k))
    }

    fn init_label(&self) -> Option<String> {
        Some(self.init.label().into())
    }

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        Method::<B>::validate(self, ctx.k).map_err(|e| Error::Usage(format!("method mk: {e}")))?;
        self.train_mk(ctx, None)
    }
}
