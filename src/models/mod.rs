//! Model families. Each family has a small (deployable) model and its majority-kernel twin,
//! and both implement [`Classifier`] so one training loop serves every method.

pub mod mlp;

use burn::module::ParamId;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

pub use mlp::{MkMlp, Mlp};

/// A classifier the training loop can drive.
pub trait Classifier<B: Backend>: Module<B> {
    /// Logits `[batch, classes]` for `images` `[batch, C, H, W]`.
    ///
    /// `mix` holds one row of mixing coefficients per majority-kernel layer (`[layers, k]`);
    /// `None` is eval mode (the mean kernel). Plain models ignore it.
    fn forward(&self, images: Tensor<B, 4>, mix: Option<&Tensor<B, 2>>) -> Tensor<B, 2>;

    /// Number of majority-kernel layers: the rows of `mix` a training step needs.
    fn mk_layers(&self) -> usize {
        0
    }

    /// Copies per majority kernel (1 for plain models).
    fn mk_copies(&self) -> usize {
        1
    }

    /// Parameter ids of the majority kernels' copies.
    fn mk_kernel_ids(&self) -> Vec<ParamId> {
        Vec::new()
    }
}

fn yes() -> bool {
    true
}

/// Architecture of the small model, as written in experiment files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Fully connected ReLU network; `hidden` lists the hidden widths. `bias: false` drops
    /// the biases (then uniform MK without compensation is exactly `lr_over_k`: a single bias
    /// keeps the full learning rate, unlike the kernels).
    Mlp {
        hidden: Vec<usize>,
        #[serde(default = "yes")]
        bias: bool,
    },
}

impl ModelSpec {
    /// Short label for tables and result rows, e.g. `mlp-784-512-512-10`.
    pub fn label(&self, input: usize, classes: usize) -> String {
        match self {
            ModelSpec::Mlp { hidden, .. } => {
                let widths: Vec<String> = std::iter::once(input)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(classes))
                    .map(|w| w.to_string())
                    .collect();
                format!("mlp-{}", widths.join("-"))
            }
        }
    }

    /// Checks the architecture's values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ModelSpec::Mlp { hidden, .. } if hidden.contains(&0) => Err(format!(
                "model.hidden must list positive widths, got {hidden:?}"
            )),
            _ => Ok(()),
        }
    }

    /// The same architecture with every width multiplied by `factor` (the `wide` reference).
    pub fn widened(&self, factor: usize) -> ModelSpec {
        match self {
            ModelSpec::Mlp { hidden, bias } => ModelSpec::Mlp {
                hidden: hidden.iter().map(|w| w * factor).collect(),
                bias: *bias,
            },
        }
    }
}
