//! The plan of an experiment: every (dataset, method, k, seed) run with a stable id.

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::spec::Experiment;
use crate::methods::{self, Method, Methods};
use crate::models::ModelSpec;
use crate::train::Recipe;

/// Everything that determines a run's result. Its hash is the run's identity: a run whose
/// file exists with this id is never trained again.
#[derive(Debug, Clone, Serialize)]
pub struct RunSpec {
    pub experiment: String,
    pub dataset: String,
    pub model: ModelSpec,
    pub recipe: Recipe,
    pub method: String,
    pub options: serde_json::Value,
    /// Copies per kernel for MK; the factor for methods that use it; 1 for methods that don't.
    pub k: usize,
    pub seed: u64,
    /// Content fingerprint of the dataset (see `DataSplits::fingerprint`).
    pub data: String,
    /// [`NUMERICS_VERSION`] of the code.
    pub code_version: u32,
    #[serde(skip)]
    pub dataset_index: usize,
    #[serde(skip)]
    pub method_index: usize,
}

impl RunSpec {
    /// SHA-256 of the canonical JSON of the spec (hex).
    pub fn config_hash(&self) -> String {
        let json = serde_json::to_string(self).expect("run specs serialise");
        Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The ids the same run had under earlier numerics versions, newest first.
    pub fn earlier_ids(&self) -> Vec<(u32, String)> {
        (1..self.code_version)
            .rev()
            .map(|version| {
                let spec = RunSpec {
                    code_version: version,
                    ..self.clone()
                };
                (version, spec.id())
            })
            .collect()
    }

    /// Stable, readable run id, e.g. `mnist-mk-k4-s0-1a2b3c4d5e6f`.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-k{}-s{}-{}",
            self.dataset,
            self.method,
            self.k,
            self.seed,
            &self.config_hash()[..12]
        )
    }
}

/// Version of the numerics: bump it in any change that alters the result of an existing run
/// (initialisation, data order, arithmetic), so that stored runs are not mistaken for runs of
/// the new code. Part of every run id.
///
/// 2: the fused optimiser (MK copies mixed outside autodiff) and flex's AVX-512 matrix kernels
/// change the rounding of training steps.
pub const NUMERICS_VERSION: u32 = 2;

/// Expands an experiment into its runs, in a stable order. Methods that do not depend on k
/// run once per seed. `fingerprints[i]` identifies the content of dataset entry `i`.
pub fn plan<B: AutodiffBackend>(
    experiment: &Experiment,
    fingerprints: &[String],
) -> Result<(Vec<RunSpec>, Methods<B>), String> {
    let built: Vec<Box<dyn Method<B>>> = experiment
        .methods
        .iter()
        .enumerate()
        .map(|(i, entry)| methods::build::<B>(entry).map_err(|e| format!("methods.{i}: {e}")))
        .collect::<Result<_, _>>()?;
    let restrictions: Vec<Option<Vec<String>>> = experiment
        .methods
        .iter()
        .enumerate()
        .map(|(i, entry)| methods::entry_datasets(entry).map_err(|e| format!("methods.{i}: {e}")))
        .collect::<Result<_, String>>()?;
    let mut runs = Vec::new();
    for (dataset_index, entry) in experiment.datasets.iter().enumerate() {
        for (method_index, method) in built.iter().enumerate() {
            if restrictions[method_index]
                .as_ref()
                .is_some_and(|only| !only.contains(&entry.dataset))
            {
                continue;
            }
            let ks: Vec<usize> = if method.uses_k() {
                let only = methods::entry_ks(&experiment.methods[method_index])
                    .map_err(|e| format!("methods.{method_index}: {e}"))?;
                experiment
                    .k
                    .iter()
                    .copied()
                    .filter(|k| only.as_ref().is_none_or(|only| only.contains(k)))
                    .collect()
            } else {
                vec![1]
            };
            for k in ks {
                method.validate(k).map_err(|e| {
                    format!("methods.{method_index} ({}), k = {k}: {e}", method.name())
                })?;
                for &seed in &experiment.seeds {
                    runs.push(RunSpec {
                        experiment: experiment.name.clone(),
                        dataset: entry.dataset.clone(),
                        model: entry.model.clone(),
                        recipe: entry.recipe.clone(),
                        method: method.name().to_string(),
                        options: method.options(),
                        k,
                        seed,
                        data: fingerprints[dataset_index].clone(),
                        code_version: NUMERICS_VERSION,
                        dataset_index,
                        method_index,
                    });
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    runs.retain(|r| seen.insert(r.id()));
    Ok((runs, built))
}
