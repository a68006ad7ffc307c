//! `mk`: majority kernels. Every dense/conv kernel of the small model is trained as k copies,
//! mixed with fresh random simplex coefficients at each step, and collapsed to the mean of its
//! copies for deployment (docs/METHODS.md, "Majority kernels").

use burn::module::{AutodiffModule, Module};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;
use crate::mk::{Mixing, MkInit};
use crate::models::{Model, ModelSpec};
use crate::train::{MixingDraw, StepHooks, Stream, recalibrate_batchnorm, stream_rng};

/// Learning-rate compensation for the copies (docs/METHODS.md, "Majority kernels":
/// learning-rate compensation).
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

/// What a majority-kernel method's draw of mixing coefficients looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrawUses {
    /// Its position and the mixing stream only: the loop may draw a step's coefficients
    /// ahead and mix its kernels inside the previous update ([`StepHooks::draws_ahead`]).
    PositionOnly,
    /// The model as well (adversarial mixing asks for the loss gradient).
    Model,
}

/// The step hooks of majority kernels: each step's coefficients come from `draw`; the copies'
/// gradients are scaled by `copy_grad_scale` (learning-rate compensation).
pub struct MkHooks<F> {
    pub draw: F,
    pub copy_grad_scale: f32,
    /// `draw` uses only its position and the mixing stream ([`StepHooks::draws_ahead`]).
    pub draws_ahead: bool,
}

impl<B, F> StepHooks<B> for MkHooks<F>
where
    B: AutodiffBackend,
    F: FnMut(MixingDraw<'_>) -> Vec<f32>,
{
    fn mixing(&mut self, draw: MixingDraw<'_>) -> Vec<f32> {
        (self.draw)(draw)
    }

    fn copy_grad_scale(&self) -> f32 {
        self.copy_grad_scale
    }

    fn draws_ahead(&self) -> bool {
        self.draws_ahead
    }
}

impl MajorityKernels {
    /// Trains the MK twin of the seed's small model, each step's coefficients drawn by `draw`
    /// (MK's own draw, an adversarial one, a scheduled one...), and deploys it collapsed to
    /// the mean of its copies, BatchNorm re-estimated if asked.
    ///
    /// `variant` names the method and its options (`{"method": ..., "options": ...}`). Entries
    /// of a model with BatchNorm that differ only in `bn_recalibration` train the same
    /// trajectory, so they share it: the collapsed model and its log are kept in the run's
    /// store of trained models, keyed by everything that determines the training, and the
    /// second entry only re-estimates (or not) the BatchNorm statistics of the stored model.
    pub fn train_mk<B: AutodiffBackend>(
        &self,
        ctx: &MethodContext<'_, B>,
        variant: serde_json::Value,
        uses: DrawUses,
        draw: impl FnMut(MixingDraw<'_>) -> Vec<f32>,
    ) -> Result<MethodOutput<B>> {
        let small = ctx.small_model();
        let model = small.to_mk(
            ctx.k,
            self.init,
            &mut stream_rng(ctx.seed, Stream::MkCopies),
        );
        let trained_params = model.num_params();
        let train = || {
            let compensate =
                self.lr_compensation == LrCompensation::Auto && ctx.recipe.optimizer.is_sgd();
            let mut hooks = MkHooks {
                draw,
                copy_grad_scale: if compensate { ctx.k as f32 } else { 1.0 },
                draws_ahead: uses == DrawUses::PositionOnly,
            };
            let (model, log) = ctx.train(model, &ctx.plain_settings(), &mut hooks, "mk")?;
            Ok((model.collapse().valid(), log))
        };
        // Only a model with BatchNorm has entries (`bn_recalibration`) to share it with.
        let (collapsed, log) = if ctx.model.has_batchnorm() {
            let (collapsed, log, _) =
                ctx.stored_or_trained(&shared_training_key(ctx, variant), small.valid(), train)?;
            (collapsed, log)
        } else {
            train()?
        };
        let mut deployed = Model::<B>::from_inner(collapsed);
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

    /// The options every MK variant records (its own are added to them).
    ///
    /// `bn_recalibration` is left out of [`MajorityKernels::train_mk`]'s shared training key.
    pub fn base_options(&self) -> serde_json::Value {
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
}

/// What determines an MK training trajectory: what determines any trained model
/// ([`MethodContext::reuse_key`]), k, and the method with its options but `bn_recalibration`
/// (applied after training).
fn shared_training_key<B: AutodiffBackend>(
    ctx: &MethodContext<'_, B>,
    mut variant: serde_json::Value,
) -> serde_json::Value {
    if let Some(options) = variant
        .get_mut("options")
        .and_then(serde_json::Value::as_object_mut)
    {
        options.remove("bn_recalibration");
    }
    let mut key = ctx.reuse_key(ctx.model, ctx.seed);
    key["mk_training"] = variant;
    key["k"] = ctx.k.into();
    key
}

impl MethodSpec for MajorityKernels {
    fn validate_model(&self, model: &ModelSpec) -> std::result::Result<(), String> {
        super::spec::refuse_independent_pretrained(self.init, model)
    }

    fn info() -> MethodInfo {
        MethodInfo {
            claims_small_overhead: true,
            figures: &["adversarial", "generalisation"],
            ..MethodInfo::new(
                "majority kernels: k mixed copies per kernel, collapsed to the mean",
                Role::Proposed,
            )
        }
    }

    fn options(&self) -> serde_json::Value {
        self.base_options()
    }

    fn validate(&self, k: usize) -> std::result::Result<(), String> {
        self.mixing.validate(k)
    }

    fn mixing_label(&self, k: usize) -> Option<String> {
        Some(self.mixing.label(k))
    }

    fn init_label(&self) -> Option<String> {
        Some(self.init.label())
    }
}

impl Method for MajorityKernels {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let mixing = self.mixing;
        let variant = serde_json::json!({"method": "mk", "options": self.options()});
        self.train_mk(ctx, variant, DrawUses::PositionOnly, |draw| {
            mixing.draw_all(draw.layers, draw.k, draw.rng)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend as B;
    use crate::data::{self, test_data};
    use crate::methods::MethodContext;
    use crate::train::{Recipe, TrainData};
    use burn::module::ModuleVisitor;
    use burn::prelude::*;

    /// Every float parameter's values, in visiting order.
    fn values(model: &Model<B>) -> Vec<Vec<f32>> {
        struct Collect(Vec<Vec<f32>>);
        impl ModuleVisitor<B> for Collect {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
                self.0.push(param.val().into_data().to_vec().unwrap());
            }
        }
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        collect.0
    }

    #[test]
    fn drawing_ahead_trains_the_very_same_copies() {
        let splits = data::load("mnist", &[test_data()], &Default::default()).unwrap();
        // 60 examples in batches of 16: a short last batch, and two epochs (the draw ahead
        // stops at each epoch's end, where the next epoch's stream begins).
        let (train, test) = (splits.train.subset(60, 0), splits.test.subset(16, 1));
        let model = ModelSpec::Mlp {
            hidden: vec![24],
            bias: true,
        };
        let progress = indicatif::ProgressBar::hidden();
        for optimizer in [
            "{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.001}",
            "{name: adamw, lr: 0.001, weight_decay: 0.01}",
        ] {
            let recipe: Recipe = serde_norway::from_str(&format!(
                "{{epochs: 2, batch_size: 16, optimizer: {optimizer}}}"
            ))
            .unwrap();
            let device = Default::default();
            let data = TrainData {
                train: &train,
                train_eval: &test,
                validation: None,
                test: &test,
            };
            let ctx = MethodContext::<B>::for_test(data, &model, &recipe, 3, &device, &progress);
            let train_with = |draws_ahead: bool| {
                let mut rng = stream_rng(0, Stream::MkCopies);
                let mk = ctx.small_model().to_mk(3, MkInit::Independent, &mut rng);
                let mut hooks = MkHooks {
                    draw: |d: MixingDraw<'_>| Mixing::default().draw_all(d.layers, d.k, d.rng),
                    copy_grad_scale: 3.0,
                    draws_ahead,
                };
                let (trained, log) = ctx
                    .train(mk, &ctx.plain_settings(), &mut hooks, "mk")
                    .unwrap();
                (values(&trained), log.steps)
            };
            let (ahead, steps) = train_with(true);
            let (plain, plain_steps) = train_with(false);
            assert_eq!((steps, plain_steps), (8, 8), "{optimizer}");
            assert!(
                ahead == plain,
                "{optimizer}: drawing ahead changed the copies"
            );
        }
    }
}
