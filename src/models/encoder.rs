//! BERT-style Transformer encoder classifier: token + position (+ token type) embeddings, pre-
//! or post-norm blocks of multi-head self-attention and a GELU feed-forward, [CLS] pooling.
//!
//! The Q/K/V/O projections and both feed-forward projections are [`Dense`] layers, so the MK
//! twin replaces exactly those with majority kernels; embeddings, LayerNorms, the pooler and
//! the classification head stay single. A model built from scratch has no token-type table;
//! one loaded from a pre-trained BERT checkpoint ([`super::pretrained`]) has BERT's, and its
//! LayerNorm epsilon comes from the checkpoint's config.

use burn::module::{Param, ParamId};
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::tanh;

use crate::kernels;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::dense::{Dense, normal_values};
use super::{Classifier, Inputs};
use crate::mk::{MixedKernels, MkInit};

/// Epsilon of every LayerNorm of an encoder built from scratch (BERT's).
pub const NORM_EPSILON: f64 = 1e-12;

/// `layer_norm(x + residual?)` with `ln`'s parameters, fused on the CPU backend
/// ([`kernels::layer_norm`]).
fn norm<B: Backend, const D: usize>(
    ln: &LayerNorm<B>,
    x: Tensor<B, D>,
    residual: Option<Tensor<B, D>>,
    epsilon: f64,
) -> Tensor<B, D> {
    kernels::layer_norm(
        x,
        residual,
        ln.gamma.val(),
        ln.beta.as_ref().map(|b| b.val()),
        epsilon,
    )
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Size of the encoder, as written in experiment files.
///
/// With `pretrained` the architecture is the checkpoint's (its `config.json`): `layers`,
/// `hidden`, `heads` and `ffn` may be left out (0 in memory, never serialised), and where given
/// they must match it. New fields are left out of the serialised form when unset, so the
/// specs (and run ids) of from-scratch encoders are what they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub layers: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hidden: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub heads: usize,
    /// Feed-forward width (4 x hidden in BERT).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ffn: usize,
    /// Longest sequence in tokens; longer inputs are truncated. From scratch it is the position
    /// table's size; a pre-trained model keeps its checkpoint's table, which must be at least
    /// this long.
    pub max_len: usize,
    /// Pre-norm blocks (`x + f(LN(x))`) instead of BERT's post-norm (`LN(x + f(x))`).
    #[serde(default)]
    pub pre_norm: bool,
    /// Dropout probability. Dropout draws from the backend's RNG, so runs with dropout > 0
    /// are not bit-reproducible; the default 0 keeps them so.
    #[serde(default)]
    pub dropout: f64,
    /// A pre-trained BERT checkpoint in the Hugging Face Hub layout to start from: a folder
    /// holding `config.json` and `model.safetensors` (a path, or a folder of that name under a
    /// data directory), or a Hub model id (the hub cache first, then the network unless
    /// `HF_HUB_OFFLINE=1`). See [`super::pretrained`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<String>,
}

impl EncoderSpec {
    /// Checks the values; the message names the key. The sizes of a pre-trained encoder are
    /// checked against its checkpoint when it is loaded ([`super::pretrained::check_spec`]).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(name) = &self.pretrained {
            return self.validate_pretrained(name);
        }
        if self.layers == 0
            || self.hidden == 0
            || self.heads == 0
            || self.ffn == 0
            || self.max_len < 2
        {
            return Err(
                "model: layers, hidden, heads and ffn must be at least 1 and max_len at least 2 \
                 (or model.pretrained must name a checkpoint that gives them)"
                    .into(),
            );
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "model.hidden ({}) must be divisible by model.heads ({})",
                self.hidden, self.heads
            ));
        }
        self.validate_dropout()
    }

    fn validate_dropout(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "model.dropout must be in [0, 1), got {}",
                self.dropout
            ));
        }
        Ok(())
    }

    fn validate_pretrained(&self, name: &str) -> Result<(), String> {
        if name.trim().is_empty() {
            return Err("model.pretrained must name a checkpoint (a folder or a Hub id)".into());
        }
        if self.max_len < 2 {
            return Err(format!(
                "model.max_len must be at least 2, got {}",
                self.max_len
            ));
        }
        if self.pre_norm {
            return Err(format!(
                "model.pre_norm: the pre-trained checkpoint `{name}` is a post-norm BERT"
            ));
        }
        if self.hidden != 0 && self.heads != 0 && !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "model.hidden ({}) must be divisible by model.heads ({})",
                self.hidden, self.heads
            ));
        }
        self.validate_dropout()
    }
}

/// Number of MK-capable projections per block (Q, K, V, O, FF1, FF2).
const PROJECTIONS: usize = 6;
/// BERT's initialisation scale.
const INIT_STD: f64 = 0.02;

/// One encoder block.
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub query: Dense<B>,
    pub key: Dense<B>,
    pub value: Dense<B>,
    pub output: Dense<B>,
    pub ff_in: Dense<B>,
    pub ff_out: Dense<B>,
    pub attention_norm: LayerNorm<B>,
    pub ff_norm: LayerNorm<B>,
}

/// The encoder classifier (small model or MK twin, depending on its [`Dense`] layers).
#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub token: Embedding<B>,
    pub position: Embedding<B>,
    /// BERT's token-type (segment) embeddings: pre-trained models only.
    pub token_type: Option<Embedding<B>>,
    pub embedding_norm: LayerNorm<B>,
    pub blocks: Vec<Block<B>>,
    pub pooler: Dense<B>,
    pub head: Dense<B>,
    pub dropout: Dropout,
    pub heads: usize,
    pub pre_norm: bool,
    /// Epsilon of every LayerNorm ([`NORM_EPSILON`] from scratch; the config's when loaded).
    pub norm_epsilon: f64,
}

fn embedding<B: Backend>(
    rows: usize,
    dim: usize,
    rng: &mut StdRng,
    device: &B::Device,
) -> Embedding<B> {
    Embedding {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(normal_values(rows * dim, INIT_STD, rng), [rows, dim]),
            device,
        )),
    }
}

impl<B: Backend> Encoder<B> {
    /// A freshly initialised small encoder for `vocab` tokens and `classes` labels.
    pub fn new(
        spec: &EncoderSpec,
        vocab: usize,
        classes: usize,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Self {
        let d = spec.hidden;
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(NORM_EPSILON)
                .init(device)
        };
        let token = embedding(vocab, d, rng, device);
        let position = embedding(spec.max_len, d, rng, device);
        let blocks = (0..spec.layers)
            .map(|_| Block {
                query: Dense::normal(d, d, INIT_STD, rng, device),
                key: Dense::normal(d, d, INIT_STD, rng, device),
                value: Dense::normal(d, d, INIT_STD, rng, device),
                output: Dense::normal(d, d, INIT_STD, rng, device),
                ff_in: Dense::normal(d, spec.ffn, INIT_STD, rng, device),
                ff_out: Dense::normal(spec.ffn, d, INIT_STD, rng, device),
                attention_norm: norm(),
                ff_norm: norm(),
            })
            .collect();
        Self {
            token,
            position,
            token_type: None,
            embedding_norm: norm(),
            blocks,
            pooler: Dense::normal(d, d, INIT_STD, rng, device),
            head: Dense::normal(d, classes, INIT_STD, rng, device),
            dropout: DropoutConfig::new(spec.dropout).init(),
            heads: spec.heads,
            pre_norm: spec.pre_norm,
            norm_epsilon: NORM_EPSILON,
        }
    }

    fn map_projections(&self, f: &mut impl FnMut(&Dense<B>) -> Dense<B>) -> Self {
        let mut out = self.clone();
        for block in &mut out.blocks {
            for dense in [
                &mut block.query,
                &mut block.key,
                &mut block.value,
                &mut block.output,
                &mut block.ff_in,
                &mut block.ff_out,
            ] {
                *dense = f(dense);
            }
        }
        out
    }

    /// The MK twin: every attention and feed-forward projection as k copies.
    pub fn to_mk(&self, k: usize, init: MkInit, rng: &mut StdRng) -> Self {
        self.map_projections(&mut |d| d.to_mk(k, init, rng))
    }

    /// The deployed small model: every MK projection collapsed to its mean kernel.
    pub fn collapse(&self) -> Self {
        self.map_projections(&mut |d| d.collapse())
    }

    fn attention(
        &self,
        block: &Block<B>,
        x: Tensor<B, 3>,
        key_bias: Tensor<B, 2>,
        mix: Option<&MixedKernels<B>>,
    ) -> Tensor<B, 3> {
        let q = block.query.forward(x.clone(), mix);
        let k = block.key.forward(x.clone(), mix);
        let v = block.value.forward(x, mix);
        let context = if self.dropout.prob == 0.0 {
            kernels::attention(q, k, v, key_bias, self.heads)
        } else {
            // Dropout on the attention weights: burn's operations.
            kernels::attention_composed(q, k, v, key_bias, self.heads, |w| self.dropout.forward(w))
        };
        block.output.forward(context, mix)
    }

    fn feed_forward(
        &self,
        block: &Block<B>,
        x: Tensor<B, 3>,
        mix: Option<&MixedKernels<B>>,
    ) -> Tensor<B, 3> {
        let hidden = kernels::gelu(block.ff_in.forward(x, mix));
        block.ff_out.forward(hidden, mix)
    }

    /// The embedding layer's output `[batch, len, hidden]`: LayerNorm of the token and
    /// position embeddings, plus the token-type embeddings where the model has them (type 0
    /// for every token when `token_types` is `None`).
    fn embed(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Option<Tensor<B, 2, Int>>,
    ) -> Tensor<B, 3> {
        let [b, t] = ids.dims();
        let d = self.token.weight.dims()[1];
        // Broadcasts are written as 2-D row/column operands or outer products: on the flex CPU
        // backend a broadcast over a middle dimension of a 3-D/4-D tensor takes 20-40x the time
        // of the same addition with a `[1, n]` row (measured: positions 6.2 ms vs 0.17 ms,
        // attention bias 12.3 ms vs 0.7 ms, batch 128 x 64 tokens).
        let positions = self.position.weight.val().slice(0..t).reshape([1, t * d]);
        let device = ids.device();
        let tokens = self.token.forward(ids).reshape([b, t * d]);
        let mut sum = tokens + positions;
        if let Some(table) = &self.token_type {
            let types = token_types.unwrap_or_else(|| Tensor::zeros([b, t], &device));
            sum = sum + table.forward(types).reshape([b, t * d]);
        }
        self.dropout.forward(norm(
            &self.embedding_norm,
            sum.reshape([b, t, d]),
            None,
            self.norm_epsilon,
        ))
    }

    /// The last hidden states `[batch, len, hidden]` for token ids `[batch, len]`, their token
    /// types (`None`: all 0) and an additive attention bias `[batch, len]` (0 for tokens, a
    /// large negative number for padding).
    pub fn hidden_states(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Option<Tensor<B, 2, Int>>,
        attention_bias: Tensor<B, 2>,
        mix: Option<&MixedKernels<B>>,
    ) -> Tensor<B, 3> {
        let eps = self.norm_epsilon;
        let mut x = self.embed(ids, token_types);
        let bias = attention_bias;
        for block in &self.blocks {
            if self.pre_norm {
                x = x.clone()
                    + self.dropout.forward(self.attention(
                        block,
                        norm(&block.attention_norm, x.clone(), None, eps),
                        bias.clone(),
                        mix,
                    ));
                x = x.clone()
                    + self.dropout.forward(self.feed_forward(
                        block,
                        norm(&block.ff_norm, x.clone(), None, eps),
                        mix,
                    ));
            } else {
                let attended =
                    self.dropout
                        .forward(self.attention(block, x.clone(), bias.clone(), mix));
                x = norm(&block.attention_norm, x, Some(attended), eps);
                let fed = self
                    .dropout
                    .forward(self.feed_forward(block, x.clone(), mix));
                x = norm(&block.ff_norm, x, Some(fed), eps);
            }
        }
        x
    }

    /// The pooled output `[batch, hidden]`: `tanh(pooler(h_[CLS]))` of the last hidden states.
    pub fn pooled(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [b, _, d] = hidden.dims();
        let cls: Tensor<B, 2> = hidden.slice([0..b, 0..1]).reshape([b, d]);
        tanh(self.pooler.forward(cls, None))
    }

    /// Logits for token ids `[batch, len]` with their token types (`None`: all 0) and an
    /// additive attention bias `[batch, len]`.
    pub fn classify(
        &self,
        ids: Tensor<B, 2, Int>,
        token_types: Option<Tensor<B, 2, Int>>,
        attention_bias: Tensor<B, 2>,
        mix: Option<&MixedKernels<B>>,
    ) -> Tensor<B, 2> {
        let pooled = self.pooled(self.hidden_states(ids, token_types, attention_bias, mix));
        self.head.forward(self.dropout.forward(pooled), None)
    }

    /// Logits for token ids `[batch, len]` (every token type 0) with an additive attention
    /// bias `[batch, len]` (0 for tokens, a large negative number for padding).
    pub fn logits(
        &self,
        ids: Tensor<B, 2, Int>,
        attention_bias: Tensor<B, 2>,
        mix: Option<&MixedKernels<B>>,
    ) -> Tensor<B, 2> {
        self.classify(ids, None, attention_bias, mix)
    }
}

impl<B: Backend> Classifier<B> for Encoder<B> {
    fn forward(&self, inputs: Inputs<B>, mix: Option<&MixedKernels<B>>) -> Tensor<B, 2> {
        match inputs {
            Inputs::Tokens {
                ids,
                token_types,
                attention_bias,
            } => self.classify(ids, token_types, attention_bias, mix),
            Inputs::Images(_) => panic!("the transformer encoder takes token inputs, not images"),
        }
    }

    fn mk_layers(&self) -> usize {
        match self.blocks.first() {
            Some(block) if matches!(block.query, Dense::Mk(_)) => self.blocks.len() * PROJECTIONS,
            _ => 0,
        }
    }

    fn mk_copies(&self) -> usize {
        self.blocks.first().map_or(1, |b| b.query.k())
    }

    fn mk_kernel_ids(&self) -> Vec<ParamId> {
        self.blocks
            .iter()
            .flat_map(|b| [&b.query, &b.key, &b.value, &b.output, &b.ff_in, &b.ff_out])
            .filter_map(Dense::mk_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{TestAutodiffBackend, TestBackend};
    use burn::module::Module;
    use rand::SeedableRng;

    fn spec() -> EncoderSpec {
        EncoderSpec {
            layers: 2,
            hidden: 16,
            heads: 4,
            ffn: 32,
            max_len: 12,
            pre_norm: false,
            dropout: 0.0,
            pretrained: None,
        }
    }

    fn batch<B: Backend>() -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
        let device = Default::default();
        let ids = Tensor::from_data(
            TensorData::new(vec![101i64, 7, 9, 102, 0, 0, 101, 5, 6, 8, 3, 102], [2, 6]),
            &device,
        );
        let bias = Tensor::from_data(
            TensorData::new(
                vec![0f32, 0., 0., 0., -1e4, -1e4, 0., 0., 0., 0., 0., 0.],
                [2, 6],
            ),
            &device,
        );
        (ids, bias)
    }

    #[test]
    fn collapse_is_exact_and_keeps_the_small_size() {
        for pre_norm in [false, true] {
            let mut rng = StdRng::seed_from_u64(0);
            let small = Encoder::<TestBackend>::new(
                &EncoderSpec { pre_norm, ..spec() },
                200,
                3,
                &mut rng,
                &Default::default(),
            );
            let mk = small.to_mk(4, MkInit::Independent, &mut rng);
            assert_eq!(mk.mk_layers(), 12);
            assert_eq!(mk.mk_kernel_ids().len(), 12);
            let deployed = mk.collapse();
            assert_eq!(deployed.num_params(), small.num_params());
            assert_eq!(deployed.mk_layers(), 0);
            let (ids, bias) = batch::<TestBackend>();
            let eval: Vec<f32> = mk
                .logits(ids.clone(), bias.clone(), None)
                .into_data()
                .to_vec()
                .unwrap();
            let out: Vec<f32> = deployed
                .logits(ids, bias, None)
                .into_data()
                .to_vec()
                .unwrap();
            assert_eq!(eval, out, "pre_norm {pre_norm}");
        }
    }

    #[test]
    fn padding_does_not_change_the_logits() {
        let mut rng = StdRng::seed_from_u64(1);
        let model = Encoder::<TestBackend>::new(&spec(), 200, 2, &mut rng, &Default::default());
        let device = Default::default();
        let short = model.logits(
            Tensor::from_data(TensorData::new(vec![101i64, 7, 9, 102], [1, 4]), &device),
            Tensor::zeros([1, 4], &device),
            None,
        );
        let padded = model.logits(
            Tensor::from_data(
                TensorData::new(vec![101i64, 7, 9, 102, 0, 0, 0], [1, 7]),
                &device,
            ),
            Tensor::from_data(
                TensorData::new(vec![0f32, 0., 0., 0., -1e4, -1e4, -1e4], [1, 7]),
                &device,
            ),
            None,
        );
        let (a, b): (Vec<f32>, Vec<f32>) = (
            short.into_data().to_vec().unwrap(),
            padded.into_data().to_vec().unwrap(),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn every_projection_kernel_gets_a_gradient() {
        let mut rng = StdRng::seed_from_u64(2);
        let small =
            Encoder::<TestAutodiffBackend>::new(&spec(), 200, 2, &mut rng, &Default::default());
        let mk = small.to_mk(3, MkInit::Independent, &mut rng);
        let (ids, bias) = batch::<TestAutodiffBackend>();
        let step = crate::mk::KernelMixer::new(mk.mk_kernel_ids());
        let kernels = step.mix(&mk, &[1.0f32 / 3.0; 12 * 3]);
        let grads = mk.logits(ids, bias, Some(&kernels)).sum().backward();
        let gradients = step.kernel_gradients(&kernels, &grads);
        assert_eq!(gradients.len(), 12, "six projections in each of two blocks");
        for g in gradients {
            let values: Vec<f32> = g.into_data().to_vec().unwrap();
            assert!(values.iter().any(|&v| v != 0.0), "every projection is used");
        }
    }
}
