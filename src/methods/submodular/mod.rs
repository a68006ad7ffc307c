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

fn default_finetune_lr_factor() -> f64 {
    1.0
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
    /// Fine-tuning learning rate as a fraction of the run's: a short schedule restarted at the
    /// full rate knocks a converged ResNet out of its minimum with no steps left to recover
    /// (docs/METHODS.md, "Submodular selection", step 5).
    #[serde(default = "default_finetune_lr_factor")]
    pub finetune_lr_factor: f64,
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
        let mut options = serde_json::json!({
            "calibration": self.calibration,
            "finetune_epochs": self.finetune_epochs,
            "ridge": self.ridge,
        });
        // Left out at its default so that runs stored before the option keep their ids.
        if self.finetune_lr_factor != default_finetune_lr_factor() {
            options["finetune_lr_factor"] = self.finetune_lr_factor.into();
        }
        options
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        if self.calibration == 0 {
            return Err("calibration must be at least 1".into());
        }
        if !(self.finetune_lr_factor.is_finite() && self.finetune_lr_factor > 0.0) {
            return Err(format!(
                "finetune_lr_factor must be a positive number, got {}",
                self.finetune_lr_factor
            ));
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
        settings.optimizer = settings.optimizer.scaled(self.finetune_lr_factor, 1.0);
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
    use crate::models::Dense;
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
    /// weights, not only BatchNorm statistics) and changes its loss, and that
    /// `finetune_lr_factor` scales how far the weights move.
    fn fine_tuning_moves_the_pruned_model(dataset: &str, model: &str) {
        let splits = data::load(dataset, &[test_data()], &Default::default()).unwrap();
        let (train, test) = (splits.train.subset(64, 0), splits.test.subset(32, 1));
        let recipe: Recipe = serde_norway::from_str(
            "{epochs: 1, batch_size: 16, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}",
        )
        .unwrap();
        let model: ModelSpec = serde_norway::from_str(model).unwrap();
        let progress = indicatif::ProgressBar::hidden();
        let device = Default::default();
        let data = TrainData {
            train: &train,
            train_eval: &train,
            validation: None,
            test: &test,
        };
        let ctx = MethodContext::<B>::for_test(data, &model, &recipe, 2, &device, &progress);
        let method = |finetune_epochs, finetune_lr_factor| Submodular {
            calibration: 32,
            finetune_epochs,
            finetune_lr_factor,
            ridge: 1e-3,
        };
        let pruned = method(0, 1.0).run::<B>(&ctx).unwrap();
        let tuned = method(1, 1.0).run::<B>(&ctx).unwrap();
        let gently = method(1, 0.01).run::<B>(&ctx).unwrap();
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
        // The classifier's weight and bias (BatchNorm running statistics move with the data
        // whatever the rate): the gentle fine-tuning's steps are a hundredth of the full one's.
        let classifier = |model: &Model<Inner>| -> Vec<f32> {
            let head = match model {
                Model::Mlp(mlp) => mlp.layers.last().expect("an output layer"),
                Model::ResNet(resnet) => &resnet.head,
                _ => unreachable!("submodular prunes MLPs and ResNets"),
            };
            let Dense::Plain(linear) = head else {
                unreachable!("the pruned model is plain")
            };
            let mut values = host(linear.weight.val());
            values.extend(host(linear.bias.as_ref().expect("a bias").val()));
            values
        };
        let start = classifier(&pruned.deployed);
        let moved = |model: &Model<Inner>| -> f64 {
            start
                .iter()
                .zip(classifier(model))
                .map(|(x, y)| f64::from((x - y).abs()))
                .sum()
        };
        let (full, gentle) = (moved(&tuned.deployed), moved(&gently.deployed));
        assert!(
            gentle < 0.05 * full,
            "{dataset}: finetune_lr_factor 0.01 moved the weights {gentle}, factor 1 {full}"
        );
    }

    #[test]
    fn finetune_lr_factor_is_left_out_of_the_options_at_its_default_and_must_be_positive() {
        let parse = |yaml: &str| serde_norway::from_str::<Submodular>(yaml).unwrap();
        let default = parse("{calibration: 512}");
        assert_eq!(default.finetune_lr_factor, 1.0);
        assert!(default.options().get("finetune_lr_factor").is_none());
        let gentle = parse("{finetune_lr_factor: 0.1}");
        assert_eq!(gentle.options()["finetune_lr_factor"], 0.1);
        for bad in ["0", "-1", ".nan"] {
            let err = parse(&format!("{{finetune_lr_factor: {bad}}}"))
                .validate(2)
                .unwrap_err();
            assert!(err.contains("finetune_lr_factor"), "{err}");
        }
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
