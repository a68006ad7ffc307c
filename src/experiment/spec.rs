//! Experiment files: one declarative YAML file per table or figure under `experiments/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_norway::Value;

use super::overrides::{parse_assignment, set_path};
use super::tune::TuneSpec;
use crate::data::{self, DATASETS, LoadOptions, TextOptions};
use crate::error::{Error, Result};
use crate::methods::{MethodEntry, split_nested_path};
use crate::models::ModelSpec;
use crate::train::Recipe;

/// An experiment: datasets (each with its model and recipe) x methods x k x seeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub datasets: Vec<DatasetEntry>,
    /// Method names, or mappings `{name: ..., option: value}`, typed when the file is read.
    pub methods: Vec<MethodEntry>,
    /// Overparameterization factors.
    pub k: Vec<usize>,
    pub seeds: Vec<u64>,
    /// The tuning grid every method entry (and each k) gets, chosen on the validation slice
    /// (none: every method trains at the recipe's values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tune: Option<TuneSpec>,
    /// Thresholds of `reproduce claims` for this experiment.
    #[serde(default)]
    pub claims: ClaimsConfig,
    /// Named sets of overrides (`smoke`, `quick`, `paper`, ...): `dotted.path: value`.
    #[serde(default)]
    pub profiles: BTreeMap<String, BTreeMap<String, Value>>,
}

/// When a claim about generalisation can be tested, and how claims are corrected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsConfig {
    /// The baseline's final train accuracy at or above which its fit counts as saturated.
    pub saturated_train_acc: f64,
    /// Below that accuracy, a rise of at least this many points over the last
    /// `last_fraction` of training means the baseline is still learning: claims about
    /// generalisation are "not testable at this budget".
    pub rising_points: f64,
    pub last_fraction: f64,
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        Self {
            saturated_train_acc: 0.99,
            rising_points: 0.5,
            last_fraction: 0.2,
        }
    }
}

/// One dataset of an experiment with the model and recipe used on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub dataset: String,
    pub model: ModelSpec,
    pub recipe: Recipe,
    /// For text datasets: a `tokenizer.json`/`vocab.txt` path, a folder under a data dir, or a
    /// Hub model name (default: the pre-trained checkpoint's own, else `bert-base-uncased`).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// For ImageNet: the side images are resized to (default 224; Tiny ImageNet 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// Keep only the first `classes` classes (sorted class ids), e.g. for a quick profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// This dataset's final seeds, instead of the experiment's `seeds` (e.g. 5 seeds for the
    /// MNIST part of a table whose CIFAR-10 runs can afford 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
    /// This dataset's learning-rate multipliers, instead of `tune.lr_multipliers` (e.g. a
    /// shorter grid where a run takes minutes); the tuning seeds and weight decays stay the
    /// experiment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_multipliers: Option<Vec<f64>>,
}

impl DatasetEntry {
    /// How the dataset is loaded for this entry.
    pub fn load_options(&self, cache_dir: Option<PathBuf>) -> LoadOptions {
        LoadOptions {
            text: self.text_options(),
            image_size: self.image_size,
            classes: self.classes,
            cache_dir,
        }
    }

    /// How the dataset's text is tokenised (`None` for image datasets). Without `tokenizer:`,
    /// a pre-trained model's text is tokenised by its checkpoint's own tokenizer (the
    /// `tokenizer.json` or `vocab.txt` beside its weights, found under the same name), any
    /// other by `bert-base-uncased`.
    pub fn text_options(&self) -> Option<TextOptions> {
        match &self.model {
            ModelSpec::Transformer(spec) => Some(TextOptions {
                tokenizer: self
                    .tokenizer
                    .clone()
                    .or_else(|| spec.pretrained.clone())
                    .unwrap_or_else(|| "bert-base-uncased".into()),
                max_len: spec.max_len,
            }),
            _ => None,
        }
    }
}

/// An experiment file resolved for one profile and the command line's overrides.
#[derive(Debug, Clone)]
pub struct ResolvedExperiment {
    pub experiment: Experiment,
    pub profile: String,
    /// Where it was read from.
    pub source: PathBuf,
    /// The resolved YAML (profile and overrides applied), stored beside the results.
    pub resolved_yaml: String,
}

/// Names of the experiment files (`<name>.yaml`) in `dir`, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".yaml"))
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Finds `name_or_path`: an existing file, or `experiments/<name>.yaml`.
pub fn locate(name_or_path: &str, experiments_dir: &Path) -> Result<PathBuf> {
    let direct = PathBuf::from(name_or_path);
    if direct.is_file() {
        return Ok(direct);
    }
    let named = experiments_dir.join(format!("{name_or_path}.yaml"));
    if named.is_file() {
        return Ok(named);
    }
    let known = list(experiments_dir);
    Err(Error::Usage(format!(
        "no experiment `{name_or_path}`: not a file, and {} does not exist (experiments: {})",
        named.display(),
        if known.is_empty() {
            "none found".into()
        } else {
            known.join(", ")
        }
    )))
}

/// Reads an experiment file, applies `profile` then `overrides` (`path=value`), checks it.
pub fn load(path: &Path, profile: &str, overrides: &[String]) -> Result<ResolvedExperiment> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut raw: Value =
        serde_norway::from_str(&text).map_err(|e| Error::config(&file, e.to_string()))?;

    let profiles = raw.get("profiles").cloned().unwrap_or(Value::Null);
    let profile_overrides = match profiles.get(profile) {
        Some(Value::Mapping(map)) => map.clone(),
        Some(Value::Null) => Default::default(),
        Some(_) => {
            return Err(Error::config(
                &file,
                format!("profiles.{profile} must be a mapping of `path: value`"),
            ));
        }
        None => {
            let names: Vec<String> = match &profiles {
                Value::Mapping(map) => map
                    .keys()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            return Err(Error::config(
                &file,
                format!(
                    "no profile `{profile}` (profiles: {})",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        }
    };
    for (key, value) in profile_overrides {
        let key = key.as_str().ok_or_else(|| {
            Error::config(&file, format!("profiles.{profile}: keys must be strings"))
        })?;
        set_path(&mut raw, key, value)
            .map_err(|e| Error::config(&file, format!("profiles.{profile}: {e}")))?;
    }
    for assignment in overrides {
        let (key, value) = parse_assignment(assignment).map_err(|e| Error::config(&file, e))?;
        set_path(&mut raw, &key, value)
            .map_err(|e| Error::config(&file, format!("--set {assignment}: {e}")))?;
    }

    let experiment: Experiment = serde_path_to_error::deserialize(raw.clone()).map_err(|e| {
        let at = e.path().to_string();
        let message = e.into_inner().to_string();
        // A method entry reports the path inside itself (`mixing`) with its message.
        let (inner, message) = split_nested_path(&message);
        let at = inner.map_or(at.clone(), |inner| format!("{at}.{inner}"));
        Error::config(&file, format!("`{at}`: {message}"))
    })?;
    experiment.validate().map_err(|e| Error::config(&file, e))?;
    let resolved_yaml =
        serde_norway::to_string(&raw).map_err(|e| Error::config(&file, e.to_string()))?;
    Ok(ResolvedExperiment {
        experiment,
        profile: profile.to_string(),
        source: path.to_path_buf(),
        resolved_yaml,
    })
}

impl Experiment {
    /// The final seeds of dataset entry `index`: its own `seeds`, else the experiment's.
    pub fn seeds_for(&self, index: usize) -> &[u64] {
        self.datasets[index].seeds.as_deref().unwrap_or(&self.seeds)
    }

    /// The tuning grid of dataset entry `index` (`None` when the experiment tunes nothing):
    /// the experiment's `tune`, with the entry's own `lr_multipliers` where it has them.
    pub fn tune_for(&self, index: usize) -> Option<TuneSpec> {
        self.tune.as_ref().map(|tune| {
            let mut tune = tune.clone();
            if let Some(lrs) = &self.datasets[index].lr_multipliers {
                tune.lr_multipliers = lrs.clone();
            }
            tune
        })
    }

    /// The values of k method entry `index` runs at: the experiment's (those its `k:` allows)
    /// for methods that depend on k, else just 1.
    pub fn method_ks(&self, index: usize) -> Vec<usize> {
        let entry = &self.methods[index];
        if !entry.method.info().uses_k {
            return vec![1];
        }
        self.k
            .iter()
            .copied()
            .filter(|k| entry.k.as_ref().is_none_or(|only| only.contains(k)))
            .collect()
    }

    /// Checks values the types cannot; the message names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.datasets.is_empty() {
            return Err("`datasets` is empty: list at least one".into());
        }
        if self.methods.is_empty() {
            return Err("`methods` is empty: list at least one".into());
        }
        if self.seeds.is_empty() {
            return Err("`seeds` is empty: list at least one".into());
        }
        if self.k.is_empty() {
            return Err("`k` is empty: list at least one".into());
        }
        if let Some(k) = self.k.iter().find(|&&k| k == 0) {
            return Err(format!("`k` values must be at least 1, got {k}"));
        }
        for (i, entry) in self.methods.iter().enumerate() {
            let name = entry.method.name();
            if let Some(unknown) = entry
                .datasets
                .iter()
                .flatten()
                .find(|name| !self.datasets.iter().any(|d| &d.dataset == *name))
            {
                return Err(format!(
                    "`methods[{i}].datasets`: `{unknown}` is not a dataset of this experiment"
                ));
            }
            if let Some(k) = entry.k.iter().flatten().find(|k| !self.k.contains(k)) {
                return Err(format!(
                    "`methods[{i}].k`: {k} is not in the experiment's `k` list {:?}",
                    self.k
                ));
            }
            for k in self.method_ks(i) {
                entry
                    .method
                    .spec()
                    .validate(k)
                    .map_err(|e| format!("`methods[{i}]` ({name}), k = {k}: {e}"))?;
            }
        }
        if let Some(tune) = &self.tune {
            let mut final_seeds = self.seeds.clone();
            final_seeds.extend(self.datasets.iter().flat_map(|d| d.seeds.iter().flatten()));
            tune.validate(&final_seeds)?;
            for index in 0..self.datasets.len() {
                if self.datasets[index].lr_multipliers.is_some() {
                    let key = format!("datasets.{index}.lr_multipliers");
                    self.tune_for(index)
                        .expect("the experiment tunes")
                        .validate_as(&final_seeds, &key, &format!("`tune` ({key})"))?;
                }
            }
            if let Some(i) = self
                .datasets
                .iter()
                .position(|d| d.recipe.validation.is_none())
            {
                return Err(format!(
                    "`tune` chooses on the validation slice, but datasets.{i}.recipe.validation \
                     is not set: hold out some training examples (e.g. `validation: 5000`)"
                ));
            }
        }
        for (i, entry) in self.datasets.iter().enumerate() {
            if entry.lr_multipliers.is_some() && self.tune.is_none() {
                return Err(format!(
                    "datasets.{i}.lr_multipliers is set but the experiment has no `tune` block: \
                     add one (its seeds train the grid) or leave the key out"
                ));
            }
            if entry.seeds.as_ref().is_some_and(|s| s.is_empty()) {
                return Err(format!(
                    "datasets.{i}.seeds is empty: list at least one, or leave it out to use the \
                     experiment's `seeds`"
                ));
            }
            if !DATASETS.contains(&entry.dataset.as_str()) {
                return Err(format!(
                    "datasets.{i}.dataset: unknown dataset `{}`: expected one of {}",
                    entry.dataset,
                    DATASETS.join(", ")
                ));
            }
            entry
                .model
                .validate()
                .map_err(|e| format!("datasets.{i}.{e}"))?;
            entry
                .recipe
                .validate()
                .map_err(|e| format!("datasets.{i}.{e}"))?;
            let text = data::is_text(&entry.dataset);
            if text != entry.model.reads_text() {
                return Err(format!(
                    "datasets.{i}.model: dataset `{}` needs `family: {}`",
                    entry.dataset,
                    if text {
                        "transformer"
                    } else {
                        "mlp` or `family: resnet"
                    }
                ));
            }
        }
        // Methods against the models of the entries they run on (e.g. what a pre-trained
        // model cannot give: a wider twin, fresh copies of its kernels).
        for (i, entry) in self.methods.iter().enumerate() {
            for (j, dataset) in self.datasets.iter().enumerate() {
                if !entry.runs_on(&dataset.dataset) {
                    continue;
                }
                entry
                    .method
                    .spec()
                    .validate_model(&dataset.model)
                    .map_err(|e| {
                        format!(
                            "`methods[{i}]` ({}) on datasets.{j} ({}): {e}",
                            entry.method.name(),
                            dataset.dataset
                        )
                    })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name: demo
datasets:
  - dataset: mnist
    model: {family: mlp, hidden: [32]}
    recipe: {epochs: 2, batch_size: 64, optimizer: {name: sgd, lr: 0.1}}
methods: [baseline, {name: mk, mixing: uniform}]
k: [4]
seeds: [0, 1]
profiles:
  smoke: {datasets.0.recipe.epochs: 1, seeds: [0]}
"#;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn profiles_and_sets_override_in_order() {
        let file = write(BASE);
        let r = load(
            file.path(),
            "smoke",
            &["datasets.0.recipe.batch_size=16".into()],
        )
        .unwrap();
        let e = &r.experiment;
        assert_eq!(e.seeds, vec![0]);
        assert_eq!(e.datasets[0].recipe.epochs, 1);
        assert_eq!(e.datasets[0].recipe.batch_size, 16);
    }

    #[test]
    fn bad_input_names_file_and_key() {
        let file = write(BASE);
        let path = file.path().display().to_string();
        let cases: [(&str, &[&str], &str); 9] = [
            (
                "smoke",
                &["methods.1.mixing=lottery"],
                "`methods[1].mixing`: ",
            ),
            (
                "smoke",
                &["methods.1.mixing='majority(9)'"],
                "`methods[1]` (mk), k = 4",
            ),
            (
                "smoke",
                &["methods.0=sgd_plus"],
                "unknown method `sgd_plus`",
            ),
            ("nope", &[], "no profile `nope`"),
            ("smoke", &["k=[0]"], "`k` values must be at least 1"),
            ("smoke", &["methods=[]"], "`methods` is empty"),
            ("smoke", &["datasets.0.recipe.epochz=3"], "epochz"),
            ("smoke", &["datasets.0.dataset=svhn"], "svhn"),
            (
                "smoke",
                &["datasets.0.recipe.epochs=three"],
                "`datasets[0].recipe.epochs`",
            ),
        ];
        for (profile, sets, expected) in cases {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let err = load(file.path(), profile, &sets).unwrap_err().to_string();
            assert!(
                err.contains(&path) && err.contains(expected),
                "{sets:?}: {err}"
            );
        }
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let file = write(&BASE.replace("seeds: [0, 1]", "seedz: [1]\nseeds: [0, 1]"));
        let err = load(file.path(), "smoke", &[]).unwrap_err().to_string();
        assert!(err.contains("seedz"), "{err}");
    }
}
