//! `submodular` (docs/METHODS.md, "Submodular selection"): train the `wide` model, then in each hidden layer keep n of its
//! k·n units, chosen by lazy-greedy maximisation of a facility-location score over the units'
//! activations on a calibration batch; refit the next layer on the kept units by (ridge) least
//! squares so it reproduces the wide model's pre-activations; fine-tune the small model.
//!
//! ResNets (the project's reading for residual networks): channels are selected per channel
//! group. A block's inner channels (its first convolution's outputs) are one group; a stage's
//! residual stream (stem or projection, and every second convolution of the stage, which add
//! into the same channels) is another, so shapes stay consistent across the skip connections.
//! Each group keeps n of its k·n channels by the same facility-location selection over channel
//! activations (spatially pooled to at most 4x4) on the calibration batch. Convolutions and
//! BatchNorms are sliced to the kept channels; the BatchNorm statistics are re-estimated on
//! training batches (the convolutional analogue of refitting the next layer: the kept channels'
//! consumers see re-normalised inputs), and the classifier is refitted by least squares to the
//! wide model's logits; then fine-tuning.
//!
//! Files: [`selection`] (facility location, lazy greedy), [`ridge`] (the least-squares refit),
//! and the model surgery per family: [`mlp`], [`resnet`].

use burn::module::{AutodiffModule, Module, ModuleMapper, Param};
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::{Error, Result};
use crate::models::{Inputs, Model, ModelSpec};
use crate::train::{PlainStep, evaluate_point, subset_seed};

mod mlp;
mod resnet;
mod ridge;
mod selection;

pub use selection::{facility_location, lazy_greedy};

fn default_calibration() -> usize {
    512
}

fn default_finetune_epochs() -> usize {
    1
}

fn default_ridge() -> f64 {
    1e-3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submodular {
    /// Training examples whose activations score the units.
    #[serde(default = "default_calibration")]
    pub calibration: usize,
    /// Epochs of fine-tuning after selection (0: none).
    #[serde(default = "default_finetune_epochs")]
    pub finetune_epochs: usize,
    /// Ridge term of the least-squares refit, relative to the mean diagonal.
    #[serde(default = "default_ridge")]
    pub ridge: f64,
}

impl Submodular {
    /// The wide model pruned to the small architecture (model surgery per family).
    fn prune<B: AutodiffBackend>(
        &self,
        ctx: &MethodContext<'_, B>,
        wide: Model<B::InnerBackend>,
        images: Tensor<B::InnerBackend, 4>,
    ) -> Result<Model<B::InnerBackend>> {
        match (ctx.model, wide) {
            (ModelSpec::Mlp { hidden, .. }, Model::Mlp(wide)) => Ok(Model::Mlp(self.prune_mlp(
                &wide,
                hidden,
                images.flatten(1, 3),
                ctx.device,
            ))),
            (ModelSpec::Resnet(spec), Model::ResNet(wide)) => {
                let (blocks, widths) = spec.stages();
                Ok(self.prune_resnet(ctx, &wide, &blocks, &widths, images))
            }
            (spec, _) => Err(Error::Usage(format!(
                "method submodular: no model surgery for the {} family (it prunes mlp and \
                 resnet models)",
                spec.family()
            ))),
        }
    }
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 tensor")
}

fn linear<B: Backend>(
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
    device: &B::Device,
) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [d_in, d_out]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [d_out]),
            device,
        ))),
    }
}

/// `model` moved to the autodiff backend with every parameter requiring gradients, ready to
/// be trained.
///
/// `Model::from_inner` alone is not enough: it gives each parameter the `require_grad` flag
/// its inner `Param` carries, and on the inner backend that flag is false for every parameter
/// the surgery creates (`Param::from_tensor` takes it from the tensor, and an inner tensor never
/// requires gradients) and for every parameter cloned once initialised (`Param::clone`
/// rebuilds it the same way, so even the wide model's kept parameters lose it). Such a
/// parameter gets no gradient and the optimiser skips it: fine-tuning would train nothing.
/// Each parameter is therefore rebuilt flagged trainable (as burn's initialisers build them),
/// keeping its id and value; BatchNorm running statistics keep only their value, as before.
fn trainable<B: AutodiffBackend>(model: Model<B::InnerBackend>) -> Model<B> {
    struct Trainable;
    impl<B: Backend> ModuleMapper<B> for Trainable {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, value, _) = param.consume();
            let (device, shape) = (value.device(), value.shape());
            Param::uninitialized(id, move |_, _| value.clone(), device, true, shape)
        }
    }
    Model::from_inner(model.map(&mut Trainable))
}

impl MethodSpec for Submodular {
    /// The wide model, then the fine-tuning of the selected small model (the selection itself
    /// is a forward pass over the calibration slice: left out).
    fn training_passes(&self, small: &ModelSpec, k: usize, epochs: usize) -> Vec<(ModelSpec, f64)> {
        vec![
            (small.widened(k), epochs as f64),
            (small.clone(), self.finetune_epochs as f64),
        ]
    }

    fn validate_model(&self, model: &ModelSpec) -> std::result::Result<(), String> {
        super::spec::refuse_wide_pretrained(model, "the model submodular selection prunes")
    }

    fn info() -> MethodInfo {
        MethodInfo::new(
            "the wide model pruned to n units per layer by facility-location selection, refitted, fine-tuned",
            Role::Competitor,
        )
    }

    fn options(&self) -> serde_json::Value {
        serde_json::json!({ "calibration": self.calibration, "finetune_epochs": self.finetune_epochs, "ridge": self.ridge })
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        if self.calibration == 0 {
            return Err("calibration must be at least 1".into());
        }
        Ok(())
    }
}

impl Method for Submodular {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        if ctx.model.reads_text() {
            return Err(Error::Usage(
                "method submodular: supports MLPs and ResNets, not Transformers".into(),
            ));
        }
        let (wide, teacher_steps) =
            ctx.trained_model(&ctx.model.widened(ctx.k), ctx.seed, "wide")?;
        let calibration = ctx
            .data
            .train
            .subset(self.calibration, subset_seed(ctx.seed, 0x5b));
        let indices: Vec<usize> = (0..calibration.len()).collect();
        let (Inputs::Images(images), _) =
            calibration.batch::<B::InnerBackend>(&indices, ctx.device)
        else {
            unreachable!("MLP and ResNet data are images")
        };
        let pruned = self.prune(ctx, wide, images)?;
        let before = evaluate_point(&pruned, &ctx.data, ctx.device);
        let mut settings = ctx.plain_settings();
        settings.epochs = self.finetune_epochs;
        let small = trainable::<B>(pruned.clone());
        let trained_params = small.num_params();
        let (deployed, mut log) = if self.finetune_epochs > 0 {
            let (model, log) = ctx.train(small, &settings, &mut PlainStep, "finetune")?;
            (model.valid(), log)
        } else {
            (pruned, Default::default())
        };
        // The curve starts with the pruned model before fine-tuning (epoch 0).
        log.points.insert(0, before);
        log.teacher_steps = teacher_steps;
        Ok(MethodOutput {
            deployed,
            log,
            trained_params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend as B;
    use crate::data::{self, test_data};
    use crate::train::{Recipe, TrainData};
    use burn::module::ModuleVisitor;

    type Inner = <B as AutodiffBackend>::InnerBackend;

    /// Every float tensor of a model (parameters and BatchNorm running statistics), in
    /// visiting order.
    fn floats(model: &Model<Inner>) -> Vec<Vec<f32>> {
        struct Floats(Vec<Vec<f32>>);
        impl ModuleVisitor<Inner> for Floats {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Inner, D>>) {
                self.0.push(host(param.val()));
            }
        }
        let mut visitor = Floats(Vec::new());
        model.visit(&mut visitor);
        visitor.0
    }

    /// Runs `submodular` on a small slice of the dataset's fixture, with and without
    /// fine-tuning, and checks that fine-tuning moves every tensor of the pruned model (the
    /// weights, not only BatchNorm statistics) and changes its loss.
    fn fine_tuning_moves_the_pruned_model(dataset: &str, model: &str) {
        let splits = data::load(dataset, &[test_data()], &Default::default()).unwrap();
        let (train, test) = (splits.train.subset(64, 0), splits.test.subset(32, 1));
        let recipe: Recipe = serde_norway::from_str(
            "{epochs: 1, batch_size: 16, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}",
        )
        .unwrap();
        let model: ModelSpec = serde_norway::from_str(model).unwrap();
        let progress = indicatif::ProgressBar::hidden();
        let ctx = MethodContext::<B> {
            data: TrainData {
                train: &train,
                train_eval: &train,
                validation: None,
                test: &test,
            },
            model: &model,
            recipe: &recipe,
            k: 2,
            seed: 0,
            device: &Default::default(),
            progress: &progress,
            checkpoint: None,
            models: None,
            data_fingerprint: "test",
        };
        let method = |finetune_epochs| Submodular {
            calibration: 32,
            finetune_epochs,
            ridge: 1e-3,
        };
        let pruned = method(0).run::<B>(&ctx).unwrap();
        let tuned = method(1).run::<B>(&ctx).unwrap();
        let (first, last) = (&tuned.log.points[0], tuned.log.points.last().unwrap());
        eprintln!(
            "{dataset}: train loss {} -> {}, test accuracy {} -> {} after {} fine-tuning steps",
            first.train.loss,
            last.train.loss,
            first.test.accuracy,
            last.test.accuracy,
            tuned.log.steps
        );
        assert_eq!((first.epoch, last.epoch, tuned.log.steps), (0, 1, 4));
        assert_eq!(
            first.train.loss, pruned.log.points[0].train.loss,
            "the curve starts with the pruned model"
        );
        let (before, after) = (floats(&pruned.deployed), floats(&tuned.deployed));
        assert_eq!(before.len(), after.len());
        let unchanged: Vec<usize> = (0..before.len())
            .filter(|&i| before[i] == after[i])
            .collect();
        assert!(
            unchanged.is_empty(),
            "{dataset}: fine-tuning left tensors {unchanged:?} of {} unchanged",
            before.len()
        );
        assert_ne!(
            first.train.loss, last.train.loss,
            "{dataset}: fine-tuning changes the loss"
        );
    }

    #[test]
    fn fine_tuning_moves_the_pruned_mlp() {
        fine_tuning_moves_the_pruned_model("mnist", "{family: mlp, hidden: [16]}");
    }

    #[test]
    fn fine_tuning_moves_the_pruned_resnet() {
        fine_tuning_moves_the_pruned_model(
            "cifar10",
            "{family: resnet, blocks: [1, 1], widths: [4, 8], stem: cifar}",
        );
    }
}
