//! Builds burn optimisers from an [`OptimizerSpec`], and gradient scaling for MK copies.

use burn::module::AutodiffModule;
#[cfg(test)]
use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    Adam, AdamConfig, AdamW, AdamWConfig, GradientsParams, Optimizer, Sgd, SgdConfig,
};
#[cfg(test)]
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder, RecorderError};
use burn::tensor::backend::AutodiffBackend;

use super::recipe::OptimizerSpec;

/// One of the optimisers a recipe can name, for any model type.
#[derive(Clone)]
pub enum AnyOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
    Adam(OptimizerAdaptor<Adam, M, B>),
    AdamW(OptimizerAdaptor<AdamW, M, B>),
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> AnyOptimizer<M, B> {
    /// The optimiser `spec` describes (the learning rate is given at each step).
    pub fn new(spec: &OptimizerSpec) -> Self {
        let decay = |wd: f64| (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32));
        match *spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                let momentum = (momentum > 0.0).then_some(MomentumConfig {
                    momentum,
                    dampening: 0.0,
                    nesterov,
                });
                let config = SgdConfig::new()
                    .with_momentum(momentum)
                    .with_weight_decay(decay(weight_decay));
                AnyOptimizer::Sgd(config.init())
            }
            OptimizerSpec::Adam {
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } => {
                let config = AdamConfig::new()
                    .with_beta_1(beta1 as f32)
                    .with_beta_2(beta2 as f32)
                    .with_epsilon(epsilon as f32)
                    .with_weight_decay(decay(weight_decay));
                AnyOptimizer::Adam(config.init())
            }
            OptimizerSpec::AdamW {
                beta1,
                beta2,
                epsilon,
                weight_decay,
                ..
            } => {
                let config = AdamWConfig::new()
                    .with_beta_1(beta1 as f32)
                    .with_beta_2(beta2 as f32)
                    .with_epsilon(epsilon as f32)
                    .with_weight_decay(weight_decay as f32);
                AnyOptimizer::AdamW(config.init())
            }
        }
    }

    /// Saves the optimiser state (momenta, step counts) to `path` (extension added).
    pub fn save(&self, path: &std::path::Path) -> Result<(), RecorderError> {
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        match self {
            AnyOptimizer::Sgd(o) => recorder.record(o.to_record(), path.to_path_buf()),
            AnyOptimizer::Adam(o) => recorder.record(o.to_record(), path.to_path_buf()),
            AnyOptimizer::AdamW(o) => recorder.record(o.to_record(), path.to_path_buf()),
        }
    }

    /// Loads the state saved by [`AnyOptimizer::save`].
    pub fn load(self, path: &std::path::Path, device: &B::Device) -> Result<Self, RecorderError> {
        let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
        Ok(match self {
            AnyOptimizer::Sgd(o) => {
                AnyOptimizer::Sgd(o.load_record(recorder.load(path.to_path_buf(), device)?))
            }
            AnyOptimizer::Adam(o) => {
                AnyOptimizer::Adam(o.load_record(recorder.load(path.to_path_buf(), device)?))
            }
            AnyOptimizer::AdamW(o) => {
                AnyOptimizer::AdamW(o.load_record(recorder.load(path.to_path_buf(), device)?))
            }
        })
    }

    /// One update of `module` with learning rate `lr`.
    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        match self {
            AnyOptimizer::Sgd(o) => o.step(lr, module, grads),
            AnyOptimizer::Adam(o) => o.step(lr, module, grads),
            AnyOptimizer::AdamW(o) => o.step(lr, module, grads),
        }
    }
}

/// Multiplies the gradients of the parameters `ids` by `factor`.
///
/// Under (momentum) SGD, scaling a parameter's gradient by k while the optimiser adds
/// `wd * theta` is exactly a k-times larger learning rate with a k-times smaller weight decay:
/// `lr * (k g + wd theta) = (k lr) * (g + (wd / k) theta)`. That is MK's `auto` compensation,
/// which [`crate::mk::update::CopyOptimizer`] applies inside its fused update; this reference
/// version serves its tests.
#[cfg(test)]
pub fn scale_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    ids: &[ParamId],
    factor: f32,
) {
    struct Scaler<'a> {
        grads: &'a mut GradientsParams,
        ids: &'a [ParamId],
        factor: f32,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scaler<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if self.ids.contains(&param.id)
                && let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id)
            {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    module.visit(&mut Scaler { grads, ids, factor });
}
