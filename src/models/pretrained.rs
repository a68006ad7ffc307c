//! Pre-trained BERT encoders from checkpoints in the Hugging Face Hub layout: a folder (or a
//! Hub model repository) holding `config.json` (a `BertModel` or `BertForSequenceClassification`
//! config), `model.safetensors` and, for the data, `tokenizer.json` or `vocab.txt`.
//!
//! Loading is checked both ways: every parameter of the [`Encoder`] is either read from the
//! file or reported as newly initialised (the classification head; the pooler too, in a
//! checkpoint without one), and every tensor of the file is either read or reported as unused
//! (e.g. the `embeddings.position_ids` buffer, a `classifier.*` head, pre-training heads).
//! Shapes are checked against the config, and errors name the tensor and the file. Names are
//! read with or without the `bert.` prefix of the task models. The architecture is the
//! config's: post-norm blocks, exact (erf) GELU, the config's LayerNorm epsilon, token-type
//! embeddings (sentence pairs), and the pooler (dense + tanh on [CLS]).
//!
//! A checkpoint is read once per process ([`load_cached`]): the tensors are kept on the host
//! in the encoder's layout, and each model built from it (one per seed and method) copies them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use burn::module::Param;
use burn::nn::{DropoutConfig, Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use rand::rngs::StdRng;
use safetensors::{Dtype, SafeTensors};

use super::dense::Dense;
use super::encoder::{Block, Encoder, EncoderSpec};
use crate::data::hub::{self, HubAccess};
use crate::error::{Error, Result};

/// Initialisation scale of the parameters a checkpoint does not hold (BERT's
/// `initializer_range`, as the encoder from scratch).
const INIT_STD: f64 = 0.02;

/// The architecture a BERT `config.json` describes.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// `num_hidden_layers`.
    pub layers: usize,
    /// `hidden_size`.
    pub hidden: usize,
    /// `num_attention_heads`.
    pub heads: usize,
    /// `intermediate_size` (the feed-forward width).
    pub ffn: usize,
    /// `max_position_embeddings` (the position table's rows).
    pub max_positions: usize,
    /// `type_vocab_size` (the token-type table's rows).
    pub type_vocab: usize,
    /// `vocab_size` (the token table's rows).
    pub vocab: usize,
    /// `layer_norm_eps` (1e-12 when absent, as in `transformers`).
    pub layer_norm_eps: f64,
}

impl BertConfig {
    /// Reads and checks a `config.json`: a BERT (`model_type: bert`) with absolute positions and
    /// the exact GELU; errors name the file and the key.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a JSON config: {e}")))?;
        let bad = |message: String| Error::data(path, message);
        let text_key = |key: &str, default: &str| -> Result<String> {
            match json.get(key) {
                None | Some(serde_json::Value::Null) => Ok(default.to_string()),
                Some(v) => v
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| bad(format!("`{key}` must be a string, got {v}"))),
            }
        };
        let model_type = text_key("model_type", "bert")?;
        if model_type != "bert" {
            return Err(bad(format!(
                "`model_type` is `{model_type}`: only BERT checkpoints (`bert`) are read"
            )));
        }
        let activation = text_key("hidden_act", "gelu")?;
        if activation != "gelu" {
            return Err(bad(format!(
                "`hidden_act` is `{activation}`: the encoder's feed-forward uses the exact (erf) \
                 GELU, `gelu`"
            )));
        }
        let positions = text_key("position_embedding_type", "absolute")?;
        if positions != "absolute" {
            return Err(bad(format!(
                "`position_embedding_type` is `{positions}`: only `absolute` is supported"
            )));
        }
        let size = |key: &str| -> Result<usize> {
            json.get(key)
                .and_then(serde_json::Value::as_u64)
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| bad(format!("expected a positive integer `{key}`")))
        };
        let layer_norm_eps = match json.get("layer_norm_eps") {
            None => 1e-12,
            Some(v) => v
                .as_f64()
                .filter(|e| *e > 0.0 && e.is_finite())
                .ok_or_else(|| bad(format!("`layer_norm_eps` must be positive, got {v}")))?,
        };
        let config = BertConfig {
            layers: size("num_hidden_layers")?,
            hidden: size("hidden_size")?,
            heads: size("num_attention_heads")?,
            ffn: size("intermediate_size")?,
            max_positions: size("max_position_embeddings")?,
            type_vocab: size("type_vocab_size")?,
            vocab: size("vocab_size")?,
            layer_norm_eps,
        };
        if !config.hidden.is_multiple_of(config.heads) {
            return Err(bad(format!(
                "`hidden_size` ({}) is not divisible by `num_attention_heads` ({})",
                config.hidden, config.heads
            )));
        }
        Ok(config)
    }
}

/// The files of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
    /// `tokenizer.json`, else `vocab.txt`, when the checkpoint has one.
    pub tokenizer: Option<PathBuf>,
}

impl CheckpointFiles {
    /// The files of a local checkpoint folder, if it holds `config.json`. A folder with a config
    /// but no `model.safetensors` is an error (PyTorch `.bin` files are not read).
    fn in_folder(dir: &Path) -> Result<Option<Self>> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Ok(None);
        }
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(Error::data(
                dir,
                "checkpoint folder without model.safetensors (only safetensors weights are \
                 read; sharded or PyTorch .bin checkpoints must be converted)",
            ));
        }
        let tokenizer = ["tokenizer.json", "vocab.txt"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file());
        Ok(Some(Self {
            config,
            weights,
            tokenizer,
        }))
    }
}

/// Finds the checkpoint `name`: a folder at the path `name`, a folder `<dir>/<name>` in a data
/// directory (for a Hub id `org/model` also `<dir>/model`), else the Hub model repository
/// `name` (the hub cache first; then the network unless `HF_HUB_OFFLINE=1`).
pub fn resolve(name: &str, dirs: &[PathBuf], hub: &HubAccess) -> Result<CheckpointFiles> {
    let mut candidates = vec![PathBuf::from(name)];
    let base = Path::new(name).file_name().map(PathBuf::from);
    for dir in dirs {
        candidates.push(dir.join(name));
        if let Some(base) = base.as_ref().filter(|b| b.as_os_str() != name) {
            candidates.push(dir.join(base));
        }
    }
    for dir in &candidates {
        if let Some(files) = CheckpointFiles::in_folder(dir)? {
            return Ok(files);
        }
    }
    let searched: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    let hint = format!(
        "pre-trained checkpoint `{name}`: no folder with config.json and model.safetensors at {}",
        searched.join(", ")
    );
    let config = hub::model_file(hub, name, "config.json", &hint)?;
    let weights = hub::model_file(hub, name, "model.safetensors", &hint)?;
    let tokenizer = ["tokenizer.json", "vocab.txt"]
        .iter()
        .find_map(|file| hub::model_file(hub, name, file, &hint).ok());
    Ok(CheckpointFiles {
        config,
        weights,
        tokenizer,
    })
}

/// What loading a checkpoint did with each tensor and parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// `(tensor in the file, encoder parameter)` for every tensor read, in the encoder's order.
    pub loaded: Vec<(String, String)>,
    /// Tensors of the file the encoder does not use, sorted.
    pub unused: Vec<String>,
    /// Encoder parameters the file does not hold, freshly initialised (`N(0, 0.02^2)` weights,
    /// zero biases): always the classification head.
    pub initialised: Vec<String>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        write!(
            f,
            "{} tensors loaded; unused tensors of the file: {}; newly initialised: {}",
            self.loaded.len(),
            list(&self.unused),
            list(&self.initialised)
        )
    }
}

/// A host tensor in the encoder's layout (`Linear` kernels `[in, out]`).
#[derive(Debug, Clone)]
struct HostTensor {
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// A loaded checkpoint: its config and every encoder parameter it holds, on the host.
#[derive(Debug)]
pub struct Checkpoint {
    /// The name it was asked for (a folder or a Hub id).
    pub name: String,
    pub files: CheckpointFiles,
    pub config: BertConfig,
    pub report: LoadReport,
    /// Wall-clock time of [`Checkpoint::load`] (config, header, conversion of every tensor).
    pub load_time: Duration,
    /// The checkpoint's content, hex: sha256 over the sha256 of `model.safetensors` and of
    /// `config.json`. Computed once when it is read; run ids of experiments with a pre-trained
    /// model depend on it (folded into the dataset entry's fingerprint by the runner).
    pub fingerprint: String,
    params: HashMap<String, HostTensor>,
}

/// One encoder parameter and where a checkpoint holds it.
struct Slot {
    /// The encoder's parameter, e.g. `blocks.0.query.weight`.
    param: String,
    /// The tensor's name in the file (without the `bert.` prefix); alternatives in order.
    keys: Vec<String>,
    /// Its shape in the file.
    shape: Vec<usize>,
    /// Stored `[out, in]` (PyTorch `Linear`), read as the encoder's `[in, out]`.
    transpose: bool,
    /// Freshly initialised when the file lacks it (the pooler) instead of an error.
    optional: bool,
}

/// Every encoder parameter a BERT checkpoint fills, with its names in `transformers`' layout.
fn layout(c: &BertConfig) -> Vec<Slot> {
    let mut layout = Layout {
        slots: Vec::new(),
        d: c.hidden,
    };
    let (d, e) = (c.hidden, "embeddings");
    for (param, table, rows) in [
        ("token", "word_embeddings", c.vocab),
        ("position", "position_embeddings", c.max_positions),
        ("token_type", "token_type_embeddings", c.type_vocab),
    ] {
        layout.add(
            format!("{param}.weight"),
            vec![format!("{e}.{table}.weight")],
            vec![rows, d],
            false,
        );
    }
    layout.norm("embedding_norm", &format!("{e}.LayerNorm"));
    for i in 0..c.layers {
        let (p, l) = (format!("blocks.{i}"), format!("encoder.layer.{i}"));
        for name in ["query", "key", "value"] {
            layout.linear(
                &format!("{p}.{name}"),
                &format!("{l}.attention.self.{name}"),
                [d, d],
                false,
            );
        }
        layout.linear(
            &format!("{p}.output"),
            &format!("{l}.attention.output.dense"),
            [d, d],
            false,
        );
        layout.norm(
            &format!("{p}.attention_norm"),
            &format!("{l}.attention.output.LayerNorm"),
        );
        layout.linear(
            &format!("{p}.ff_in"),
            &format!("{l}.intermediate.dense"),
            [d, c.ffn],
            false,
        );
        layout.linear(
            &format!("{p}.ff_out"),
            &format!("{l}.output.dense"),
            [c.ffn, d],
            false,
        );
        layout.norm(&format!("{p}.ff_norm"), &format!("{l}.output.LayerNorm"));
    }
    layout.linear("pooler", "pooler.dense", [d, d], true);
    layout.slots
}

struct Layout {
    slots: Vec<Slot>,
    d: usize,
}

impl Layout {
    fn add(&mut self, param: String, keys: Vec<String>, shape: Vec<usize>, optional: bool) {
        self.slots.push(Slot {
            param,
            keys,
            shape,
            transpose: false,
            optional,
        });
    }

    /// A LayerNorm: `weight`/`bias`, or `gamma`/`beta` (BERT checkpoints converted from
    /// TensorFlow).
    fn norm(&mut self, param: &str, prefix: &str) {
        for (ours, names) in [("gamma", ["weight", "gamma"]), ("beta", ["bias", "beta"])] {
            self.add(
                format!("{param}.{ours}"),
                names.iter().map(|n| format!("{prefix}.{n}")).collect(),
                vec![self.d],
                false,
            );
        }
    }

    /// A dense layer `[d_in, d_out]`, stored as PyTorch's `[d_out, d_in]` weight and a bias.
    fn linear(&mut self, param: &str, prefix: &str, [d_in, d_out]: [usize; 2], optional: bool) {
        self.add(
            format!("{param}.weight"),
            vec![format!("{prefix}.weight")],
            vec![d_out, d_in],
            optional,
        );
        self.slots.last_mut().expect("just added").transpose = true;
        self.add(
            format!("{param}.bias"),
            vec![format!("{prefix}.bias")],
            vec![d_out],
            optional,
        );
    }
}

/// A tensor's values as f32 (from F32, F64, F16 or BF16), in the file's layout.
fn float_values(view: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f32>> {
    let bytes = view.data();
    Some(match view.dtype() {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// sha256 over `sha256(weights) || sha256(config.json)`, hex.
fn content_fingerprint(config: &Path, weights: &[u8]) -> Result<String> {
    use sha2::{Digest, Sha256};
    let config_bytes = std::fs::read(config).map_err(|e| Error::io(config, e))?;
    let mut outer = Sha256::new();
    outer.update(Sha256::digest(weights));
    outer.update(Sha256::digest(&config_bytes));
    Ok(outer
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// `[rows, cols]` row-major values as `[cols, rows]`.
fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

impl Checkpoint {
    /// Reads a checkpoint's config and weights (every tensor the encoder uses, checked and
    /// converted to f32 in the encoder's layout). `name` is what the spec called it.
    pub fn load(name: &str, files: CheckpointFiles) -> Result<Self> {
        let start = Instant::now();
        let config = BertConfig::read(&files.config)?;
        let path = &files.weights;
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // Safety: the map is read-only and dropped before this returns; a checkpoint is not
        // modified while it is read (the shared data folder is read-only).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let fingerprint = content_fingerprint(&files.config, &map)?;
        let tensors = SafeTensors::deserialize(&map)
            .map_err(|e| Error::data(path, format!("not a safetensors file: {e}")))?;
        // Task models (`BertForSequenceClassification`, ...) prefix the encoder's names with
        // `bert.`; the bare `BertModel` does not.
        let mut by_key = HashMap::new();
        for (stored, view) in tensors.iter() {
            let key = stored.strip_prefix("bert.").unwrap_or(stored);
            if let Some((other, _)) = by_key.insert(key.to_string(), (stored.to_string(), view)) {
                return Err(Error::data(
                    path,
                    format!("both `{other}` and `{stored}` name the tensor `{key}`"),
                ));
            }
        }
        let mut report = LoadReport::default();
        let mut used = HashSet::new();
        let mut params = HashMap::new();
        for slot in layout(&config) {
            let Some((stored, view)) = slot.keys.iter().find_map(|k| by_key.get(k)) else {
                if slot.optional {
                    report.initialised.push(slot.param);
                    continue;
                }
                return Err(Error::data(
                    path,
                    format!(
                        "no tensor `{}` (or `bert.{0}`) for the encoder's `{}` {:?}: not a BERT \
                         checkpoint of this config ({})",
                        slot.keys[0],
                        slot.param,
                        slot.shape,
                        files.config.display()
                    ),
                ));
            };
            if view.shape() != slot.shape.as_slice() {
                return Err(Error::data(
                    path,
                    format!(
                        "tensor `{stored}` has shape {:?}, but {} gives {:?} (the encoder's `{}`)",
                        view.shape(),
                        files.config.display(),
                        slot.shape,
                        slot.param
                    ),
                ));
            }
            let mut values = float_values(view).ok_or_else(|| {
                Error::data(
                    path,
                    format!(
                        "tensor `{stored}` has dtype {:?}; expected a float (F32, F64, F16, BF16)",
                        view.dtype()
                    ),
                )
            })?;
            let mut shape = slot.shape.clone();
            if slot.transpose {
                values = transposed(&values, shape[0], shape[1]);
                shape.reverse();
            }
            used.insert(stored.clone());
            report.loaded.push((stored.clone(), slot.param.clone()));
            params.insert(slot.param, HostTensor { shape, values });
        }
        let pooler =
            ["pooler.weight", "pooler.bias"].map(|p| report.initialised.iter().any(|i| i == p));
        if pooler[0] != pooler[1] {
            return Err(Error::data(
                path,
                "the pooler (`pooler.dense.weight`, `pooler.dense.bias`) is only half there",
            ));
        }
        report.unused = by_key
            .values()
            .map(|(stored, _)| stored.clone())
            .filter(|stored| !used.contains(stored))
            .collect();
        report.unused.sort();
        report
            .initialised
            .extend(["head.weight".to_string(), "head.bias".to_string()]);
        Ok(Self {
            name: name.to_string(),
            files,
            config,
            report,
            load_time: start.elapsed(),
            fingerprint,
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&HostTensor> {
        self.params.get(name)
    }

    fn tensor<B: Backend, const D: usize>(&self, name: &str, device: &B::Device) -> Tensor<B, D> {
        let t = self
            .param(name)
            .unwrap_or_else(|| panic!("{name} is a required slot, checked at load"));
        Tensor::from_data(TensorData::new(t.values.clone(), t.shape.clone()), device)
    }
}

/// Checks an encoder spec against a checkpoint: sizes the spec gives must be the config's, the
/// sequence length must fit the position table, and the blocks are post-norm.
pub fn check_spec(spec: &EncoderSpec, checkpoint: &Checkpoint) -> Result<()> {
    let c = &checkpoint.config;
    let contradicts = |key: &str, given: usize, config_key: &str, value: usize| {
        Error::Usage(format!(
            "model.{key} = {given} contradicts the pre-trained checkpoint `{}` ({}: {config_key} \
             = {value}); leave model.{key} out to take it from the checkpoint",
            checkpoint.name,
            checkpoint.files.config.display()
        ))
    };
    for (key, given, config_key, value) in [
        ("layers", spec.layers, "num_hidden_layers", c.layers),
        ("hidden", spec.hidden, "hidden_size", c.hidden),
        ("heads", spec.heads, "num_attention_heads", c.heads),
        ("ffn", spec.ffn, "intermediate_size", c.ffn),
    ] {
        if given != 0 && given != value {
            return Err(contradicts(key, given, config_key, value));
        }
    }
    if spec.max_len > c.max_positions {
        return Err(Error::Usage(format!(
            "model.max_len = {} exceeds the {} positions of the pre-trained checkpoint `{}` \
             ({}: max_position_embeddings)",
            spec.max_len,
            c.max_positions,
            checkpoint.name,
            checkpoint.files.config.display()
        )));
    }
    if spec.pre_norm {
        return Err(Error::Usage(format!(
            "model.pre_norm: the pre-trained checkpoint `{}` is a post-norm BERT",
            checkpoint.name
        )));
    }
    Ok(())
}

impl<B: Backend> Encoder<B> {
    /// The encoder of a pre-trained checkpoint with a fresh classification head for `classes`
    /// labels (drawn from `rng`), for token ids below `vocab` (the tokenizer's size, at most
    /// the checkpoint's). Dropout is the spec's (the config's dropout rates are not used).
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        spec: &EncoderSpec,
        vocab: usize,
        classes: usize,
        rng: &mut StdRng,
        device: &B::Device,
    ) -> Result<Self> {
        check_spec(spec, checkpoint)?;
        let c = &checkpoint.config;
        if vocab > c.vocab {
            return Err(Error::Usage(format!(
                "the tokenizer has {vocab} tokens but the pre-trained checkpoint `{}` embeds \
                 {}: tokenize with the checkpoint's own tokenizer (`tokenizer: {0}`)",
                checkpoint.name, c.vocab
            )));
        }
        let d = c.hidden;
        let embedding = |name: &str| Embedding {
            weight: Param::from_tensor(checkpoint.tensor::<B, 2>(name, device)),
        };
        let norm = |name: &str| {
            let mut ln: LayerNorm<B> = LayerNormConfig::new(d)
                .with_epsilon(c.layer_norm_eps)
                .init(device);
            ln.gamma = Param::from_tensor(checkpoint.tensor(&format!("{name}.gamma"), device));
            ln.beta = Some(Param::from_tensor(
                checkpoint.tensor(&format!("{name}.beta"), device),
            ));
            ln
        };
        let linear = |name: &str| {
            Dense::Plain(Linear {
                weight: Param::from_tensor(checkpoint.tensor(&format!("{name}.weight"), device)),
                bias: Some(Param::from_tensor(
                    checkpoint.tensor(&format!("{name}.bias"), device),
                )),
            })
        };
        let blocks = (0..c.layers)
            .map(|i| Block {
                query: linear(&format!("blocks.{i}.query")),
                key: linear(&format!("blocks.{i}.key")),
                value: linear(&format!("blocks.{i}.value")),
                output: linear(&format!("blocks.{i}.output")),
                ff_in: linear(&format!("blocks.{i}.ff_in")),
                ff_out: linear(&format!("blocks.{i}.ff_out")),
                attention_norm: norm(&format!("blocks.{i}.attention_norm")),
                ff_norm: norm(&format!("blocks.{i}.ff_norm")),
            })
            .collect();
        let pooler = match (
            checkpoint.param("pooler.weight"),
            checkpoint.param("pooler.bias"),
        ) {
            (Some(_), Some(_)) => linear("pooler"),
            _ => Dense::normal(d, d, INIT_STD, rng, device),
        };
        Ok(Self {
            token: embedding("token.weight"),
            position: embedding("position.weight"),
            token_type: Some(embedding("token_type.weight")),
            embedding_norm: norm("embedding_norm"),
            blocks,
            pooler,
            head: Dense::normal(d, classes, INIT_STD, rng, device),
            dropout: DropoutConfig::new(spec.dropout).init(),
            heads: c.heads,
            pre_norm: false,
            norm_epsilon: c.layer_norm_eps,
        })
    }
}

type Cache = Mutex<BTreeMap<String, Arc<Checkpoint>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The checkpoint `name`, read once per process: found as [`resolve`] says (in `dirs`, then the
/// Hub) the first time it is asked for, and reported on stderr then (what was loaded, unused,
/// newly initialised, and the time it took).
pub fn load_cached(name: &str, dirs: &[PathBuf]) -> Result<Arc<Checkpoint>> {
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(checkpoint) = cache.get(name) {
        return Ok(checkpoint.clone());
    }
    let files = resolve(name, dirs, &HubAccess::from_env())?;
    let checkpoint = Arc::new(Checkpoint::load(name, files)?);
    eprintln!(
        "pre-trained checkpoint `{name}` ({}) read in {:.2} s: {}",
        checkpoint.files.weights.display(),
        checkpoint.load_time.as_secs_f64(),
        checkpoint.report
    );
    cache.insert(name.to_string(), checkpoint.clone());
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend;
    use crate::data::{full_data, test_data};
    use crate::mk::MkInit;
    use crate::models::Classifier;
    use rand::SeedableRng;

    type B = TestBackend;

    /// A file of `tests/fixtures` (written by `scripts/bert_reference.py`).
    fn fixture(name: &str) -> PathBuf {
        test_data().parent().unwrap().join(name)
    }

    fn tiny_dir() -> PathBuf {
        test_data().join("bert-tiny-random")
    }

    fn tiny() -> Checkpoint {
        let files = CheckpointFiles::in_folder(&tiny_dir()).unwrap().unwrap();
        Checkpoint::load("bert-tiny-random", files).unwrap()
    }

    fn pretrained_spec(name: &str, max_len: usize) -> EncoderSpec {
        serde_norway::from_str(&format!("{{pretrained: {name}, max_len: {max_len}}}")).unwrap()
    }

    fn json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn ints(value: &serde_json::Value) -> (Vec<i64>, [usize; 2]) {
        let rows = value.as_array().unwrap();
        let values: Vec<i64> = rows
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
            .collect();
        let shape = [rows.len(), values.len() / rows.len()];
        (values, shape)
    }

    fn floats(value: &serde_json::Value) -> Vec<f32> {
        match value {
            serde_json::Value::Array(items) => items.iter().flat_map(floats).collect(),
            v => vec![v.as_f64().unwrap() as f32],
        }
    }

    /// The logits of `m` on the reference sentences ([`reference_inputs`]).
    fn classify(
        m: &Encoder<B>,
        ids: &Tensor<B, 2, Int>,
        types: &Tensor<B, 2, Int>,
        bias: &Tensor<B, 2>,
    ) -> Vec<f32> {
        m.classify(ids.clone(), Some(types.clone()), bias.clone(), None)
            .into_data()
            .to_vec()
            .unwrap()
    }

    /// The inputs of a reference file: ids, token types, attention bias (`-1e4` on padding).
    fn reference_inputs(
        reference: &serde_json::Value,
    ) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2>) {
        let device = Default::default();
        let (ids, shape) = ints(&reference["input_ids"]);
        let (types, _) = ints(&reference["token_type_ids"]);
        let (mask, _) = ints(&reference["attention_mask"]);
        let bias: Vec<f32> = mask
            .iter()
            .map(|&m| {
                if m == 1 {
                    0.0
                } else {
                    crate::data::text::PAD_BIAS
                }
            })
            .collect();
        (
            Tensor::from_data(TensorData::new(ids, shape), &device),
            Tensor::from_data(TensorData::new(types, shape), &device),
            Tensor::from_data(TensorData::new(bias, shape), &device),
        )
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Hidden states (every `stride`-th feature) and pooled output of `encoder` on the inputs of
    /// `reference`, and their largest differences from its values.
    fn compare(encoder: &Encoder<B>, reference: &serde_json::Value, stride: usize) -> (f32, f32) {
        let (ids, types, bias) = reference_inputs(reference);
        let hidden = encoder.hidden_states(ids, Some(types), bias, None);
        let pooled: Vec<f32> = encoder.pooled(hidden.clone()).into_data().to_vec().unwrap();
        let [_, _, d] = hidden.dims();
        let hidden: Vec<f32> = hidden.into_data().to_vec().unwrap();
        let slice: Vec<f32> = hidden
            .chunks_exact(d)
            .flat_map(|row| row.iter().step_by(stride).copied())
            .collect();
        let key = if stride == 1 {
            "last_hidden_state"
        } else {
            "last_hidden_state_slice"
        };
        (
            max_abs_diff(&slice, &floats(&reference[key])),
            max_abs_diff(&pooled, &floats(&reference["pooled_output"])),
        )
    }

    #[test]
    fn the_tiny_checkpoint_matches_its_reference() {
        let checkpoint = tiny();
        let encoder = Encoder::<B>::from_checkpoint(
            &checkpoint,
            &pretrained_spec("bert-tiny-random", 16),
            40,
            3,
            &mut StdRng::seed_from_u64(0),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(encoder.norm_epsilon, 1e-5, "the config's epsilon");
        let reference = json(&fixture("bert_tiny_reference.json"));
        let (hidden, pooled) = compare(&encoder, &reference, 1);
        assert!(
            hidden < 1e-5 && pooled < 1e-5,
            "max |diff| hidden {hidden:e}, pooled {pooled:e}"
        );
    }

    #[test]
    fn every_tensor_is_loaded_or_reported() {
        let checkpoint = tiny();
        let report = &checkpoint.report;
        assert_eq!(
            report.unused,
            [
                "bert.embeddings.position_ids",
                "classifier.bias",
                "classifier.weight"
            ]
        );
        assert_eq!(report.initialised, ["head.weight", "head.bias"]);
        // 5 embedding tensors, 16 per layer, the pooler's 2: all under the `bert.` prefix.
        assert_eq!(report.loaded.len(), 5 + 2 * 16 + 2);
        assert!(report.loaded.iter().all(|(t, _)| t.starts_with("bert.")));
        let encoder = Encoder::<B>::from_checkpoint(
            &checkpoint,
            &pretrained_spec("bert-tiny-random", 16),
            40,
            2,
            &mut StdRng::seed_from_u64(0),
            &Default::default(),
        )
        .unwrap();
        // Every parameter of the model is one loaded tensor or the new head.
        let head = 16 * 2 + 2;
        let loaded: usize = checkpoint.params.values().map(|t| t.values.len()).sum();
        assert_eq!(encoder.num_params(), loaded + head);
        assert!(report.to_string().contains("39 tensors loaded"), "{report}");
    }

    #[test]
    fn bad_checkpoints_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let copy = |config: &serde_json::Value| {
            std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
            std::fs::copy(
                tiny_dir().join("model.safetensors"),
                dir.path().join("model.safetensors"),
            )
            .unwrap();
            let files = CheckpointFiles::in_folder(dir.path()).unwrap().unwrap();
            Checkpoint::load("copy", files)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let config = json(&tiny_dir().join("config.json"));
        let mut wider = config.clone();
        wider["intermediate_size"] = 64.into();
        let err = copy(&wider);
        assert!(
            err.contains("bert.encoder.layer.0.intermediate.dense.weight")
                && err.contains("[32, 16]")
                && err.contains("[64, 16]"),
            "{err}"
        );
        let mut deeper = config.clone();
        deeper["num_hidden_layers"] = 3.into();
        let err = copy(&deeper);
        assert!(
            err.contains("encoder.layer.2.attention.self.query.weight"),
            "{err}"
        );
        let mut roberta = config.clone();
        roberta["model_type"] = "roberta".into();
        assert!(copy(&roberta).contains("model_type"));
        let mut tanh_gelu = config.clone();
        tanh_gelu["hidden_act"] = "gelu_new".into();
        assert!(copy(&tanh_gelu).contains("hidden_act"));

        // The spec's sizes must be the checkpoint's; the sequence must fit its positions.
        let checkpoint = tiny();
        let build = |yaml: &str| {
            let spec: EncoderSpec = serde_norway::from_str(yaml).unwrap();
            Encoder::<B>::from_checkpoint(
                &checkpoint,
                &spec,
                40,
                2,
                &mut StdRng::seed_from_u64(0),
                &Default::default(),
            )
            .map(|_| ())
        };
        build("{pretrained: t, max_len: 24, layers: 2, hidden: 16, heads: 4, ffn: 32}").unwrap();
        let err = build("{pretrained: t, max_len: 16, hidden: 32}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.hidden = 32") && err.contains("hidden_size = 16"),
            "{err}"
        );
        let err = build("{pretrained: t, max_len: 25}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.max_len = 25") && err.contains("24 positions"),
            "{err}"
        );
        let err = Encoder::<B>::from_checkpoint(
            &checkpoint,
            &pretrained_spec("t", 16),
            41,
            2,
            &mut StdRng::seed_from_u64(0),
            &Default::default(),
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(err.contains("41 tokens"), "{err}");
    }

    #[test]
    fn a_checkpoint_without_pooler_gets_a_new_one_and_half_tensors_are_read() {
        let bytes = std::fs::read(tiny_dir().join("model.safetensors")).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let norm = "bert.embeddings.LayerNorm.weight";
        let halves: Vec<u8> = float_values(&tensors.tensor(norm).unwrap())
            .unwrap()
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let mut kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .filter(|(name, _)| !name.contains("pooler") && *name != norm)
            .map(|(name, view)| (name.to_string(), view))
            .collect();
        kept.push((
            norm.to_string(),
            safetensors::tensor::TensorView::new(Dtype::F16, vec![16], &halves).unwrap(),
        ));
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            tiny_dir().join("config.json"),
            dir.path().join("config.json"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("model.safetensors"),
            safetensors::serialize(kept, None).unwrap(),
        )
        .unwrap();
        let files = CheckpointFiles::in_folder(dir.path()).unwrap().unwrap();
        let checkpoint = Checkpoint::load("no-pooler", files).unwrap();
        assert_eq!(
            checkpoint.report.initialised,
            ["pooler.weight", "pooler.bias", "head.weight", "head.bias"]
        );
        let want: Vec<f32> = halves
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(
            checkpoint.param("embedding_norm.gamma").unwrap().values,
            want
        );
        let encoder = Encoder::<B>::from_checkpoint(
            &checkpoint,
            &pretrained_spec("no-pooler", 16),
            40,
            2,
            &mut StdRng::seed_from_u64(0),
            &Default::default(),
        )
        .unwrap();
        let Dense::Plain(pooler) = &encoder.pooler else {
            panic!("a plain pooler");
        };
        let bias: Vec<f32> = pooler
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(bias, vec![0.0; 16], "a new pooler: zero bias");
    }

    #[test]
    fn checkpoints_are_found_in_data_dirs_and_the_hub_cache() {
        let data = test_data();
        let offline = |cache: &Path| HubAccess {
            cache: hf_hub::Cache::new(cache.to_path_buf()),
            offline: true,
        };
        let empty = tempfile::tempdir().unwrap();
        let files = resolve(
            "bert-tiny-random",
            std::slice::from_ref(&data),
            &offline(empty.path()),
        )
        .unwrap();
        assert_eq!(files.config, data.join("bert-tiny-random/config.json"));
        assert_eq!(files.tokenizer, None);
        // A Hub id finds the folder of its last component in a data directory.
        let files = resolve("someone/bert-tiny-random", &[data], &offline(empty.path())).unwrap();
        assert_eq!(files.weights.file_name().unwrap(), "model.safetensors");

        let err = resolve("someone/no-such-bert", &[], &offline(empty.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("someone/no-such-bert") && err.contains("HF_HUB_OFFLINE"),
            "{err}"
        );
        // The hub cache's layout: models--<org>--<name>/{refs/main, snapshots/<commit>/}.
        let repo = empty.path().join("models--someone--no-such-bert");
        let snapshot = repo.join("snapshots/c0ffee");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "c0ffee").unwrap();
        for file in ["config.json", "model.safetensors"] {
            std::fs::copy(tiny_dir().join(file), snapshot.join(file)).unwrap();
        }
        let files = resolve("someone/no-such-bert", &[], &offline(empty.path())).unwrap();
        assert_eq!(files.weights, snapshot.join("model.safetensors"));
        Checkpoint::load("someone/no-such-bert", files).unwrap();
    }

    /// The tiny checkpoint's encoder with a 2-class head (40-token vocabulary, length 16).
    fn tiny_encoder(checkpoint: &Checkpoint, rng: &mut StdRng) -> Encoder<B> {
        Encoder::<B>::from_checkpoint(
            checkpoint,
            &pretrained_spec("t", 16),
            40,
            2,
            rng,
            &Default::default(),
        )
        .unwrap()
    }

    #[test]
    fn perturbed_copies_differ_yet_collapse_to_the_pretrained_model() {
        let checkpoint = tiny();
        let mut rng = StdRng::seed_from_u64(0);
        let small = tiny_encoder(&checkpoint, &mut rng);
        let mk = small.to_mk(3, MkInit::Perturbed(0.05), &mut rng);
        let Dense::Mk(copies) = &mk.blocks[0].query else {
            panic!("an MK query projection");
        };
        let loaded = checkpoint.param("blocks.0.query.weight").unwrap();
        let theta: Vec<f32> = copies.theta.val().into_data().to_vec().unwrap();
        let copies: Vec<&[f32]> = theta.chunks_exact(loaded.values.len()).collect();
        assert!(
            copies.iter().all(|c| *c != loaded.values),
            "every copy is perturbed"
        );
        assert_ne!(copies[0], copies[1]);
        let reference = json(&fixture("bert_tiny_reference.json"));
        let (ids, types, bias) = reference_inputs(&reference);
        let logits = |m: &Encoder<B>| classify(m, &ids, &types, &bias);
        let drift = max_abs_diff(&logits(&mk.collapse()), &logits(&small));
        assert!(
            drift < 1e-5,
            "the copies' mean is the checkpoint: {drift:e}"
        );
    }

    #[test]
    fn majority_kernels_start_from_the_pretrained_kernels() {
        let checkpoint = tiny();
        let mut rng = StdRng::seed_from_u64(0);
        let small = tiny_encoder(&checkpoint, &mut rng);
        let k = 3;
        let mk = small.to_mk(k, MkInit::Identical, &mut rng);
        assert_eq!(mk.mk_layers(), 2 * 6);
        let values = |t: Tensor<B, 2>| -> Vec<f32> { t.into_data().to_vec().unwrap() };
        for (i, (block, mk_block)) in small.blocks.iter().zip(&mk.blocks).enumerate() {
            let pairs = [
                ("query", &block.query, &mk_block.query),
                ("key", &block.key, &mk_block.key),
                ("value", &block.value, &mk_block.value),
                ("output", &block.output, &mk_block.output),
                ("ff_in", &block.ff_in, &mk_block.ff_in),
                ("ff_out", &block.ff_out, &mk_block.ff_out),
            ];
            for (name, plain, copies) in pairs {
                let (Dense::Plain(plain), Dense::Mk(copies)) = (plain, copies) else {
                    panic!("blocks.{i}.{name}: a plain layer and its MK twin");
                };
                let loaded = checkpoint
                    .param(&format!("blocks.{i}.{name}.weight"))
                    .unwrap();
                assert_eq!(values(plain.weight.val()), loaded.values);
                let theta: Vec<f32> = copies.theta.val().into_data().to_vec().unwrap();
                for copy in theta.chunks_exact(loaded.values.len()) {
                    assert_eq!(copy, loaded.values, "blocks.{i}.{name}: every copy");
                }
                let bias = |b: &Option<Param<Tensor<B, 1>>>| -> Vec<f32> {
                    b.as_ref().unwrap().val().into_data().to_vec().unwrap()
                };
                assert_eq!(bias(&copies.bias), bias(&plain.bias), "blocks.{i}.{name}");
            }
        }
        // Everything outside the projections is carried over unchanged.
        let table = |e: &Option<Embedding<B>>| values(e.as_ref().unwrap().weight.val());
        assert_eq!(table(&mk.token_type), table(&small.token_type));
        assert_eq!(mk.norm_epsilon, small.norm_epsilon);

        // Collapse: eval-mode MK and the deployed model agree bit for bit, and the deployed
        // model is the pre-trained one (the mean of identical copies, to rounding).
        let reference = json(&fixture("bert_tiny_reference.json"));
        let (ids, types, bias) = reference_inputs(&reference);
        let deployed = mk.collapse();
        assert_eq!(deployed.num_params(), small.num_params());
        let logits = |m: &Encoder<B>| classify(m, &ids, &types, &bias);
        assert_eq!(logits(&mk), logits(&deployed), "collapse is exact");
        let drift = max_abs_diff(&logits(&deployed), &logits(&small));
        assert!(drift < 1e-5, "deployed vs pre-trained logits: {drift:e}");
    }

    #[test]
    fn minilm_matches_the_independent_reference() {
        let test = "models::pretrained::tests::minilm_matches_the_independent_reference";
        let Some(dir) = full_data(
            test,
            "all-MiniLM-L6-v2 checkpoint",
            "all-MiniLM-L6-v2/model.safetensors",
        ) else {
            return;
        };
        let files = resolve(
            "all-MiniLM-L6-v2",
            &[dir],
            &HubAccess {
                offline: true,
                ..HubAccess::from_env()
            },
        )
        .unwrap();
        let checkpoint = Checkpoint::load("all-MiniLM-L6-v2", files.clone()).unwrap();
        let c = &checkpoint.config;
        assert_eq!(
            (
                c.layers,
                c.hidden,
                c.heads,
                c.ffn,
                c.max_positions,
                c.type_vocab,
                c.vocab
            ),
            (6, 384, 12, 1536, 512, 2, 30522)
        );
        assert_eq!(checkpoint.report.unused, ["embeddings.position_ids"]);
        assert_eq!(checkpoint.report.initialised, ["head.weight", "head.bias"]);
        assert_eq!(checkpoint.report.loaded.len(), 5 + 6 * 16 + 2);
        let reference = json(&fixture("bert_reference.json"));

        // The checkpoint's tokenizer gives the reference's ids and token types.
        // (Its tokenizer.json pads to 128 tokens: the data's tokenisation turns that off too.)
        let mut tokenizer =
            crate::data::tokenize::from_file(files.tokenizer.as_ref().unwrap()).unwrap();
        tokenizer.with_padding(None);
        let (ids, [rows, t]) = ints(&reference["input_ids"]);
        let (types, _) = ints(&reference["token_type_ids"]);
        for (r, sentence) in reference["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let parts: Vec<&str> = sentence
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            let encoding = match parts[..] {
                [a] => tokenizer.encode(a, true),
                [a, b] => tokenizer.encode((a, b), true),
                _ => unreachable!(),
            }
            .unwrap();
            let n = encoding.get_ids().len();
            let want_ids: Vec<u32> = ids[r * t..r * t + n].iter().map(|&i| i as u32).collect();
            assert_eq!(encoding.get_ids(), want_ids, "row {r}");
            let want_types: Vec<u32> = types[r * t..r * t + n].iter().map(|&i| i as u32).collect();
            assert_eq!(encoding.get_type_ids(), want_types, "row {r}");
        }
        assert_eq!(rows, 4);

        let encoder = Encoder::<B>::from_checkpoint(
            &checkpoint,
            &pretrained_spec("all-MiniLM-L6-v2", 128),
            tokenizer.get_vocab_size(true),
            2,
            &mut StdRng::seed_from_u64(0),
            &Default::default(),
        )
        .unwrap();
        let stride = reference["hidden_stride"].as_u64().unwrap() as usize;
        let (hidden, pooled) = compare(&encoder, &reference, stride);
        eprintln!(
            "all-MiniLM-L6-v2: read in {:.3} s; max |diff| vs the reference: hidden states \
             {hidden:.2e}, pooled {pooled:.2e}; {}",
            checkpoint.load_time.as_secs_f64(),
            checkpoint.report
        );
        assert!(
            hidden < 1e-4 && pooled < 1e-4,
            "max |diff| hidden {hidden:e}, pooled {pooled:e}"
        );

        // Its MK twin (identical copies of every projection) in eval mode, and deployed.
        let mk = encoder.to_mk(2, MkInit::Identical, &mut StdRng::seed_from_u64(1));
        assert_eq!(mk.mk_layers(), 6 * 6);
        assert_eq!(compare(&mk, &reference, stride), (hidden, pooled));
        let (ids, types, bias) = reference_inputs(&reference);
        let logits = |m: &Encoder<B>| classify(m, &ids, &types, &bias);
        let deployed = mk.collapse();
        assert_eq!(logits(&mk), logits(&deployed), "collapse is exact");
        assert_eq!(deployed.num_params(), encoder.num_params());
    }
}
