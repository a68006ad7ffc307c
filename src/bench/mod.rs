//! `reproduce bench`: training-step time of majority kernels against the plain small model on
//! the same data, batch and backend, for every model family and several k, measured in one
//! process and reported as ratios; the rows go to parquet for the overhead figure.

mod measure;
mod reference;

use std::path::PathBuf;

pub use measure::{bench_encoder, bench_resnet};

use crate::backend::BackendKind;
use crate::data;
use crate::error::{Error, Result};
use crate::results::provenance::{self, machine_description};

/// A model family as `bench` times it: model, dataset and optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// MLP on MNIST, SGD with momentum.
    Mlp,
    /// CIFAR ResNet on CIFAR-10, SGD with momentum and weight decay.
    Resnet,
    /// Transformer encoder on SST-2, AdamW.
    Transformer,
}

impl std::str::FromStr for Family {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "mlp" => Ok(Family::Mlp),
            "resnet" => Ok(Family::Resnet),
            "transformer" => Ok(Family::Transformer),
            other => Err(Error::Usage(format!(
                "bench --family `{other}`: expected mlp, resnet or transformer"
            ))),
        }
    }
}

impl Family {
    pub fn name(&self) -> &'static str {
        match self {
            Family::Mlp => "mlp",
            Family::Resnet => "resnet",
            Family::Transformer => "transformer",
        }
    }

    /// Timed steps per measurement when not given: about a second of work on the 2-core CPU.
    pub fn default_steps(&self) -> usize {
        match self {
            Family::Mlp => 200,
            Family::Resnet => 4,
            Family::Transformer => 4,
        }
    }
}

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub backend: BackendKind,
    pub data_dir: Option<PathBuf>,
    pub families: Vec<Family>,
    /// Hidden widths of the MLP.
    pub mlp_hidden: Vec<usize>,
    /// Blocks and widths of the ResNet.
    pub resnet_blocks: Vec<usize>,
    pub resnet_widths: Vec<usize>,
    /// Stem of the ResNet (the ImageNet stem runs on Tiny ImageNet's 64x64 images).
    pub resnet_stem: crate::models::Stem,
    /// Layers, hidden size, heads and FFN size of the encoder.
    pub encoder: Vec<usize>,
    /// Longest sequence of the encoder's batches (padded to each batch's longest).
    pub max_len: usize,
    /// A pre-trained checkpoint to time instead of `encoder` (a folder, a name under the data
    /// dirs or a Hub id, as `model.pretrained` in an experiment).
    pub pretrained: Option<String>,
    pub batch_size: usize,
    pub ks: Vec<usize>,
    /// Timed steps per measurement (`None`: the family's default).
    pub steps: Option<usize>,
    /// Alternating repeats; the median is reported.
    pub repeats: usize,
    /// Folder of the parquet file (`None`: not written).
    pub out_dir: Option<PathBuf>,
    /// Folder of the overhead figure (`None`: not drawn).
    pub plots_dir: Option<PathBuf>,
    /// CSV written by `benches/reference/pytorch_step.py` on the same machine: printed beside
    /// this run as framework ratios.
    pub reference: Option<PathBuf>,
}

/// Times baseline and MK training steps on real data and returns a printable report.
pub fn run(options: &BenchOptions) -> Result<String> {
    if options.steps == Some(0)
        || options.repeats == 0
        || options.batch_size == 0
        || options.max_len == 0
    {
        return Err(Error::Usage(
            "bench: --steps, --repeats, --batch and --max-len must be at least 1".into(),
        ));
    }
    if options.encoder.len() != 4
        || options.encoder.contains(&0)
        || !options.encoder[1].is_multiple_of(options.encoder[2])
    {
        return Err(Error::Usage(format!(
            "bench --encoder {:?}: expected layers,hidden,heads,ffn, all positive, hidden a \
             multiple of heads",
            options.encoder
        )));
    }
    if options.ks.is_empty() || options.ks.contains(&0) {
        return Err(Error::Usage("bench: --k needs one or more k >= 1".into()));
    }
    crate::backend::prepare(options.backend, &data::cache::default_dir())?;
    let stamp = Stamp {
        backend: options.backend.to_string(),
        machine: machine_description(),
        threads: rayon::current_num_threads(),
        commit: provenance::git_commit(),
    };
    let mut rows = Vec::new();
    for &family in &options.families {
        rows.extend(measure::family(options, family, &stamp)?);
    }
    let mut out = reference::markdown(&rows, options.batch_size, options.repeats, &stamp);
    if let Some(path) = &options.reference {
        out.push_str(&reference::against(path, &rows)?);
    }
    if let Some(dir) = &options.out_dir {
        let path = dir.join(format!(
            "{}-{}.parquet",
            options.backend,
            slug(&stamp.machine)
        ));
        crate::results::bench::merge(&path, &rows)?;
        out.push_str(&format!("\nwritten: {}\n", path.display()));
        if let Some(plots) = &options.plots_dir {
            for file in crate::report::plots::overhead_figure(dir, plots)? {
                out.push_str(&format!("figure: {}\n", file.display()));
            }
        }
    }
    Ok(out)
}

/// Where and by which code the rows of one invocation are measured.
struct Stamp {
    backend: String,
    machine: String,
    threads: usize,
    commit: String,
}

/// A file-name-safe form of a machine description.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_descriptions_become_file_names() {
        assert_eq!(slug("vm (AMD EPYC, 2 threads)"), "vm-amd-epyc-2-threads");
    }
}
