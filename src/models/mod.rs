//! Model families. Each family is one model type whose kernel layers are plain (the small,
//! deployable model) or majority kernels (its MK twin, `to_mk`; back with `collapse`);
//! [`Model`] holds any of them, and every model implements [`Classifier`] so one training loop
//! serves every method.

pub mod dense;
pub mod encoder;
pub mod flops;
pub mod mlp;
pub mod pretrained;
pub mod resnet;

use std::path::PathBuf;
use std::sync::Arc;

use burn::module::ParamId;
use burn::prelude::*;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

pub use crate::data::Inputs;
pub use dense::Dense;
pub use encoder::{Encoder, EncoderSpec};
pub use flops::InputShape;
pub use mlp::Mlp;
pub use resnet::{ResNet, ResNetSpec, Stem};

use crate::data::Examples;
use crate::mk::{MixedKernels, MkInit};

/// Layout version of the stored models' records (burn records of [`Model`]). The trained-model
/// store keys on it, so a model stored in an older layout is trained again (bit-identically)
/// instead of failing to load. 2: one `Mlp` type with plain or MK dense layers (was `Mlp` and
/// `MkMlp`). 3: the encoder's optional token-type embeddings and LayerNorm epsilon
/// (pre-trained checkpoints).
pub const RECORD_VERSION: u32 = 3;

/// A classifier the training loop can drive.
pub trait Classifier<B: Backend>: Module<B> {
    /// Logits `[batch, classes]`.
    ///
    /// `mix` holds the step's kernel of every majority-kernel layer; `None` is eval mode (the
    /// mean kernel). Plain models ignore it.
    fn forward(&self, inputs: Inputs<B>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 2>;

    /// Number of majority-kernel layers: the rows of mixing coefficients a step draws.
    fn mk_layers(&self) -> usize {
        0
    }

    /// Copies per majority kernel (1 for plain models).
    fn mk_copies(&self) -> usize {
        1
    }

    /// Parameter ids of the majority kernels' copies, in the order of the mixing rows.
    fn mk_kernel_ids(&self) -> Vec<ParamId> {
        Vec::new()
    }
}

/// Any model of any family, small or MK twin.
// A handful of models exist per run and each is moved once per step: the size difference
// between variants costs nothing measurable, and boxing would complicate the Module derive.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model<B: Backend> {
    Mlp(Mlp<B>),
    Encoder(Encoder<B>),
    ResNet(ResNet<B>),
}

impl<B: Backend> Model<B> {
    /// The MK twin of a small model, k copies per kernel.
    pub fn to_mk(&self, k: usize, init: MkInit, rng: &mut StdRng) -> Model<B> {
        match self {
            Model::Mlp(mlp) => Model::Mlp(mlp.to_mk(k, init, rng)),
            Model::Encoder(encoder) => Model::Encoder(encoder.to_mk(k, init, rng)),
            Model::ResNet(resnet) => Model::ResNet(resnet.to_mk(k, init, rng)),
        }
    }

    /// The deployed small model: every majority kernel collapsed to the mean of its copies.
    pub fn collapse(&self) -> Model<B> {
        match self {
            Model::Mlp(mlp) => Model::Mlp(mlp.collapse()),
            Model::Encoder(encoder) => Model::Encoder(encoder.collapse()),
            Model::ResNet(resnet) => Model::ResNet(resnet.collapse()),
        }
    }

    /// The model's BatchNorm layers (none outside ResNets).
    pub fn batchnorms_mut(&mut self) -> Vec<&mut burn::nn::BatchNorm<B>> {
        match self {
            Model::ResNet(resnet) => resnet.batchnorms_mut(),
            _ => Vec::new(),
        }
    }
}

impl<B: Backend> Classifier<B> for Model<B> {
    fn forward(&self, inputs: Inputs<B>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 2> {
        match self {
            Model::Mlp(m) => m.forward(inputs, mix),
            Model::Encoder(m) => m.forward(inputs, mix),
            Model::ResNet(m) => m.forward(inputs, mix),
        }
    }

    fn mk_layers(&self) -> usize {
        match self {
            Model::Mlp(m) => m.mk_layers(),
            Model::Encoder(m) => m.mk_layers(),
            Model::ResNet(m) => m.mk_layers(),
        }
    }

    fn mk_copies(&self) -> usize {
        match self {
            Model::Mlp(m) => m.mk_copies(),
            Model::Encoder(m) => m.mk_copies(),
            Model::ResNet(m) => m.mk_copies(),
        }
    }

    fn mk_kernel_ids(&self) -> Vec<ParamId> {
        match self {
            Model::Mlp(m) => m.mk_kernel_ids(),
            Model::Encoder(m) => m.mk_kernel_ids(),
            Model::ResNet(m) => m.mk_kernel_ids(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Architecture of the small model, as written in experiment files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Fully connected ReLU network on flattened images; `hidden` lists the hidden widths.
    /// `bias: false` drops the biases (then uniform MK without compensation is exactly
    /// `lr_over_k`: a single bias keeps the full learning rate, unlike the kernels).
    Mlp {
        hidden: Vec<usize>,
        #[serde(default = "yes")]
        bias: bool,
    },
    /// BERT-style Transformer encoder classifier on token ids.
    Transformer(EncoderSpec),
    /// Residual convolutional network (ResNet-20/56/18 or custom stages) on images.
    Resnet(ResNetSpec),
}

impl ModelSpec {
    /// Short label for tables and result rows, e.g. `mlp-784-512-512-10` or `transformer-4x256`.
    pub fn label(&self, data: &Examples) -> String {
        match self {
            ModelSpec::Mlp { hidden, .. } => {
                let input = data.images().map_or(0, |d| d.image_shape.iter().product());
                let widths: Vec<String> = std::iter::once(input)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(data.num_classes()))
                    .map(|w| w.to_string())
                    .collect();
                format!("mlp-{}", widths.join("-"))
            }
            ModelSpec::Transformer(EncoderSpec {
                pretrained: Some(name),
                max_len,
                ..
            }) => format!(
                "pretrained-{}-len{max_len}",
                name.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or(name)
            ),
            ModelSpec::Transformer(spec) => format!(
                "transformer-{}x{}-h{}-ffn{}-len{}{}",
                spec.layers,
                spec.hidden,
                spec.heads,
                spec.ffn,
                spec.max_len,
                if spec.pre_norm { "-prenorm" } else { "" }
            ),
            ModelSpec::Resnet(spec) => spec.label(),
        }
    }

    /// Checks the architecture's values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ModelSpec::Mlp { hidden, .. } if hidden.contains(&0) => Err(format!(
                "model.hidden must list positive widths, got {hidden:?}"
            )),
            ModelSpec::Transformer(spec) => spec.validate(),
            ModelSpec::Resnet(spec) => spec.validate(),
            _ => Ok(()),
        }
    }

    /// The same family with every hidden width multiplied by `factor` (the `wide` reference):
    /// MLP hidden layers; the Transformer's hidden size and feed-forward width (heads and
    /// depth unchanged).
    ///
    /// # Panics
    /// On a pre-trained encoder, which has no wider twin: methods that need one are refused
    /// for [`ModelSpec::pretrained`] specs.
    pub fn widened(&self, factor: usize) -> ModelSpec {
        if let Some(name) = self.pretrained() {
            panic!("the pre-trained encoder `{name}` has no {factor}-times wider twin");
        }
        match self {
            ModelSpec::Mlp { hidden, bias } => ModelSpec::Mlp {
                hidden: hidden.iter().map(|w| w * factor).collect(),
                bias: *bias,
            },
            ModelSpec::Transformer(spec) => ModelSpec::Transformer(EncoderSpec {
                hidden: spec.hidden * factor,
                ffn: spec.ffn * factor,
                ..spec.clone()
            }),
            ModelSpec::Resnet(spec) => ModelSpec::Resnet(spec.widened(factor)),
        }
    }

    /// Whether the model has BatchNorm layers (whose statistics can be re-estimated).
    pub fn has_batchnorm(&self) -> bool {
        matches!(self, ModelSpec::Resnet(_))
    }

    /// The family's name, as written in experiment files (`family:`).
    pub fn family(&self) -> &'static str {
        match self {
            ModelSpec::Mlp { .. } => "mlp",
            ModelSpec::Transformer(_) => "transformer",
            ModelSpec::Resnet(_) => "resnet",
        }
    }

    /// Whether this family reads text (token ids) rather than images.
    pub fn reads_text(&self) -> bool {
        matches!(self, ModelSpec::Transformer(_))
    }

    /// The pre-trained checkpoint the model starts from, if any (`model.pretrained`).
    pub fn pretrained(&self) -> Option<&str> {
        match self {
            ModelSpec::Transformer(spec) => spec.pretrained.as_deref(),
            _ => None,
        }
    }

    /// Reads the pre-trained checkpoint, if the spec names one, from `dirs` (the run's data
    /// directories, [`crate::data::search_dirs`]) or the Hub, and checks the spec against its
    /// config. Call it before [`ModelSpec::build`] to get these errors as errors (and the
    /// `--data-dir` lookup): `build` reads the checkpoint read here, or else looks it up in the
    /// default data directories and panics on failure. Returns the checkpoint (its
    /// [`pretrained::Checkpoint::fingerprint`] identifies its content), `None` without one.
    /// The runner calls it for every dataset entry when an experiment is loaded.
    pub fn prepare(&self, dirs: &[PathBuf]) -> crate::Result<Option<Arc<pretrained::Checkpoint>>> {
        if let ModelSpec::Transformer(spec) = self
            && let Some(name) = &spec.pretrained
        {
            let checkpoint = pretrained::load_cached(name, dirs)?;
            pretrained::check_spec(spec, &checkpoint)?;
            return Ok(Some(checkpoint));
        }
        Ok(None)
    }

    /// A freshly initialised small model for `data`, drawn from `rng`; a pre-trained encoder
    /// is its checkpoint's with a fresh classification head drawn from `rng` (see
    /// [`ModelSpec::prepare`]).
    pub fn build<B: Backend>(
        &self,
        data: &Examples,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Model<B> {
        let classes = data.num_classes();
        match (self, data) {
            (ModelSpec::Mlp { hidden, bias }, Examples::Images(images)) => {
                let input = images.image_shape.iter().product();
                Model::Mlp(Mlp::new(input, hidden, classes, *bias, rng, device))
            }
            (ModelSpec::Transformer(spec), Examples::Text(text)) => match &spec.pretrained {
                None => Model::Encoder(Encoder::new(spec, text.vocab, classes, rng, device)),
                Some(name) => {
                    let encoder = pretrained::load_cached(name, &crate::data::search_dirs(None))
                        .and_then(|checkpoint| {
                            Encoder::from_checkpoint(
                                &checkpoint,
                                spec,
                                text.vocab,
                                classes,
                                rng,
                                device,
                            )
                        })
                        .unwrap_or_else(|e| panic!("model.pretrained: {e}"));
                    Model::Encoder(encoder)
                }
            },
            (ModelSpec::Resnet(spec), Examples::Images(images)) => Model::ResNet(ResNet::new(
                spec,
                images.image_shape[0],
                classes,
                rng,
                device,
            )),
            _ => panic!(
                "model family and data kind are checked to match when the experiment is loaded"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_names_are_the_experiment_file_tags() {
        let specs = [
            ModelSpec::Mlp {
                hidden: vec![8],
                bias: true,
            },
            serde_norway::from_str(
                "{family: transformer, layers: 1, hidden: 8, heads: 2, ffn: 16, max_len: 8}",
            )
            .unwrap(),
            serde_norway::from_str("{family: resnet, blocks: [1], widths: [8]}").unwrap(),
        ];
        for spec in specs {
            assert_eq!(
                serde_json::to_value(&spec).unwrap()["family"],
                spec.family()
            );
        }
    }

    #[test]
    fn encoder_specs_serialise_as_before_and_name_checkpoints() {
        // Run ids hash this form: a from-scratch encoder's must not change.
        let scratch: ModelSpec = serde_norway::from_str(
            "{family: transformer, layers: 2, hidden: 128, heads: 4, ffn: 512, max_len: 64}",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&scratch).unwrap(),
            r#"{"family":"transformer","layers":2,"hidden":128,"heads":4,"ffn":512,"max_len":64,"pre_norm":false,"dropout":0.0}"#
        );
        assert_eq!(scratch.pretrained(), None);

        let pretrained: ModelSpec = serde_norway::from_str(
            "{family: transformer, pretrained: all-MiniLM-L6-v2, max_len: 128}",
        )
        .unwrap();
        assert_eq!(pretrained.pretrained(), Some("all-MiniLM-L6-v2"));
        pretrained.validate().unwrap();
        let json = serde_json::to_string(&pretrained).unwrap();
        assert_eq!(
            json,
            r#"{"family":"transformer","max_len":128,"pre_norm":false,"dropout":0.0,"pretrained":"all-MiniLM-L6-v2"}"#
        );
        assert_eq!(
            serde_json::from_str::<ModelSpec>(&json).unwrap(),
            pretrained
        );

        let text = crate::data::TextDataset {
            ids: Vec::new(),
            lengths: Vec::new(),
            second: Vec::new(),
            max_len: 128,
            labels: Vec::new(),
            num_classes: 2,
            vocab: 30522,
        };
        assert_eq!(
            pretrained.label(&Examples::Text(text)),
            "pretrained-all-MiniLM-L6-v2-len128"
        );

        // Sizes are required from scratch; a pre-trained BERT is post-norm.
        let missing: ModelSpec =
            serde_norway::from_str("{family: transformer, layers: 2, max_len: 64}").unwrap();
        assert!(missing.validate().unwrap_err().contains("model.pretrained"));
        let pre_norm: ModelSpec = serde_norway::from_str(
            "{family: transformer, pretrained: x, max_len: 64, pre_norm: true}",
        )
        .unwrap();
        assert!(pre_norm.validate().unwrap_err().contains("model.pre_norm"));
    }

    #[test]
    fn a_pretrained_spec_builds_its_checkpoint() {
        type B = crate::backend::TestBackend;
        let dir = crate::data::test_data().join("bert-tiny-random");
        let spec: ModelSpec = serde_norway::from_str(&format!(
            "{{family: transformer, pretrained: '{}', max_len: 16}}",
            dir.display()
        ))
        .unwrap();
        spec.prepare(&[]).unwrap();
        let text = crate::data::TextDataset {
            ids: vec![2, 5, 9, 3],
            lengths: vec![4],
            second: vec![4],
            max_len: 4,
            labels: vec![1],
            num_classes: 2,
            vocab: 40,
        };
        let data = Examples::Text(text);
        let build = |seed| {
            spec.build::<B>(
                &data,
                &mut rand::SeedableRng::seed_from_u64(seed),
                &Default::default(),
            )
        };
        let Model::Encoder(encoder) = build(0) else {
            panic!("an encoder");
        };
        assert_eq!(encoder.blocks.len(), 2);
        assert!(encoder.token_type.is_some());
        // The seed draws the head only: the same encoder body for every seed.
        let (a, b) = (build(0), build(1));
        let logits = |m: &Model<B>| -> Vec<f32> {
            let (inputs, _) = data.batch::<B>(&[0], &Default::default());
            m.forward(inputs, None).into_data().to_vec().unwrap()
        };
        assert_ne!(logits(&a), logits(&b));
        assert_eq!(logits(&a), logits(&build(0)));

        let wrong: ModelSpec = serde_norway::from_str(&format!(
            "{{family: transformer, pretrained: '{}', max_len: 16, layers: 4}}",
            dir.display()
        ))
        .unwrap();
        let err = wrong.prepare(&[]).unwrap_err().to_string();
        assert!(err.contains("model.layers = 4"), "{err}");
    }
}
