//! The plan of an experiment: every (dataset, method, k, seed) run with a stable id.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::spec::Experiment;
use crate::models::ModelSpec;
use crate::train::Recipe;

/// What a run is for: choosing a value (`tune`, on the validation slice) or the tables
/// (`final`, trained at the chosen value on the experiment's seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Tune,
    #[default]
    Final,
}

impl Phase {
    pub fn is_final(&self) -> bool {
        *self == Phase::Final
    }

    /// The name stored in the `role` column.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Tune => "tune",
            Phase::Final => "final",
        }
    }
}

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
    /// A tuning run or a final one (final runs hash as they did before tuning existed).
    #[serde(skip_serializing_if = "Phase::is_final")]
    pub phase: Phase,
    /// Content fingerprint of the dataset (see `DataSplits::fingerprint`).
    pub data: String,
    /// Numerics version of the code (`results::provenance::NUMERICS_VERSION`): runs of code
    /// that computes differently get other ids.
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

/// Expands an experiment into its runs, in a stable order. Methods that do not depend on k
/// run once per seed. `fingerprints[i]` identifies the content of dataset entry `i`;
/// `code_version` is the numerics version of the code that will train them. The experiment was
/// checked when it was loaded, so planning cannot fail.
pub fn plan(experiment: &Experiment, fingerprints: &[String], code_version: u32) -> Vec<RunSpec> {
    let mut runs = Vec::new();
    for (dataset_index, entry) in experiment.datasets.iter().enumerate() {
        for (method_index, method) in experiment.methods.iter().enumerate() {
            if method
                .datasets
                .as_ref()
                .is_some_and(|only| !only.contains(&entry.dataset))
            {
                continue;
            }
            for k in experiment.method_ks(method_index) {
                for &seed in &experiment.seeds {
                    runs.push(RunSpec {
                        experiment: experiment.name.clone(),
                        dataset: entry.dataset.clone(),
                        model: entry.model.clone(),
                        recipe: entry.recipe.clone(),
                        method: method.method.name().to_string(),
                        options: method.method.spec().options(),
                        k,
                        seed,
                        phase: Phase::Final,
                        data: fingerprints[dataset_index].clone(),
                        code_version,
                        dataset_index,
                        method_index,
                    });
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    runs.retain(|r| seen.insert(r.id()));
    runs
}
