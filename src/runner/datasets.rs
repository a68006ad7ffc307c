//! The data of an experiment: each distinct (dataset, load options) of its entries loaded
//! once, however many entries share it.

use std::path::PathBuf;

use crate::data::{self, DataSplits, LoadOptions};
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::models::ModelSpec;
use crate::results::ReferenceRecord;

/// The loaded splits of an experiment's dataset entries.
pub(super) struct Datasets<'a> {
    experiment: &'a Experiment,
    cache_dir: Option<PathBuf>,
    loaded: Vec<(String, LoadOptions, DataSplits)>,
    /// The content fingerprint of each entry's pre-trained checkpoint (`None`: the model
    /// starts from scratch).
    checkpoints: Vec<Option<String>>,
    /// Each entry's model with a pre-trained encoder's sizes read from its checkpoint.
    models: Vec<ModelSpec>,
}

impl<'a> Datasets<'a> {
    /// Loads every entry of `experiment` (text is tokenised to the model's length) and reads
    /// and checks each pre-trained checkpoint ([`crate::models::ModelSpec::prepare`], in the
    /// same data directories), so that a missing or bad checkpoint fails here, before anything
    /// trains; errors name the experiment `file` and the entry's key.
    pub fn load(
        experiment: &'a Experiment,
        file: &str,
        data_dir: Option<PathBuf>,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self> {
        let dirs = data::search_dirs(data_dir);
        let mut checkpoints = Vec::with_capacity(experiment.datasets.len());
        let mut models = Vec::with_capacity(experiment.datasets.len());
        for (i, entry) in experiment.datasets.iter().enumerate() {
            let checkpoint = entry
                .model
                .prepare(&dirs)
                .map_err(|e| in_checkpoint(file, i, e))?;
            let mut model = entry.model.clone();
            if let (ModelSpec::Transformer(spec), Some(checkpoint)) = (&mut model, &checkpoint) {
                let config = &checkpoint.config;
                (spec.layers, spec.hidden, spec.heads, spec.ffn) =
                    (config.layers, config.hidden, config.heads, config.ffn);
            }
            models.push(model);
            checkpoints.push(checkpoint.map(|c| c.fingerprint.clone()));
        }
        let mut loaded: Vec<(String, LoadOptions, DataSplits)> = Vec::new();
        for entry in &experiment.datasets {
            let load = entry.load_options(cache_dir.clone());
            if !loaded
                .iter()
                .any(|(name, o, _)| *name == entry.dataset && *o == load)
            {
                let splits = data::load(&entry.dataset, &dirs, &load)
                    .map_err(|e| in_entry(file, &entry.dataset, e))?;
                loaded.push((entry.dataset.clone(), load, splits));
            }
        }
        let datasets = Datasets {
            experiment,
            cache_dir,
            loaded,
            checkpoints,
            models,
        };
        // Sizes are checked against the data before anything trains.
        for (i, entry) in experiment.datasets.iter().enumerate() {
            let splits = datasets.splits(i);
            entry
                .recipe
                .check_sizes(&entry.dataset, splits.train.len(), splits.test.len())
                .map_err(|e| Error::config(file, format!("datasets.{i}.{e}")))?;
        }
        Ok(datasets)
    }

    /// The splits of the experiment's dataset entry `index`.
    pub fn splits(&self, index: usize) -> &DataSplits {
        let entry = &self.experiment.datasets[index];
        let load = entry.load_options(self.cache_dir.clone());
        &self
            .loaded
            .iter()
            .find(|(n, o, _)| *n == entry.dataset && *o == load)
            .expect("loaded above")
            .2
    }

    /// Dataset entry `index`'s model, a pre-trained encoder's sizes filled in from its
    /// checkpoint.
    pub fn model(&self, index: usize) -> &ModelSpec {
        &self.models[index]
    }

    /// The content fingerprint of every dataset entry, in order (part of the run ids): the
    /// data's, and for an entry whose model is pre-trained also its checkpoint's content
    /// (`<data>+pretrained:<checkpoint>`), so its runs are new when the checkpoint changes.
    /// Entries without a checkpoint keep the data's fingerprint alone (their ids unchanged).
    pub fn fingerprints(&self) -> Vec<String> {
        (0..self.experiment.datasets.len())
            .map(|i| {
                let data = &self.splits(i).fingerprint;
                match &self.checkpoints[i] {
                    None => data.clone(),
                    Some(checkpoint) => format!("{data}+pretrained:{checkpoint}"),
                }
            })
            .collect()
    }
    /// The trivial reference of every text dataset of the experiment (the GLUE tasks, whose
    /// metrics chance does not put at 1/classes): the training split's majority class scored
    /// on the whole test split ([`crate::train::majority_class`]). One per dataset name; none
    /// for an entry whose runs score a smaller seeded `test_subset` (another test set).
    pub fn references(&self) -> Vec<ReferenceRecord> {
        let mut references: Vec<ReferenceRecord> = Vec::new();
        for (index, entry) in self.experiment.datasets.iter().enumerate() {
            let splits = self.splits(index);
            let subsetted = entry
                .recipe
                .test_subset
                .is_some_and(|n| n < splits.test.len());
            if splits.train.text().is_none()
                || subsetted
                || references.iter().any(|r| r.dataset == splits.name)
            {
                continue;
            }
            let (class, metrics) = crate::train::majority_class(&splits.train, &splits.test);
            references.push(ReferenceRecord {
                dataset: splits.name.clone(),
                rule: format!("majority class of the training set ({class})"),
                metric: splits.metric.name().to_string(),
                test_score: metrics.score(splits.metric),
                test_acc: metrics.accuracy,
                data: splits.fingerprint.clone(),
            });
        }
        references
    }
}

/// An error reading dataset entry `index`'s pre-trained checkpoint names the experiment file
/// and the key; usage errors stay usage errors (exit 2), missing or bad files data errors.
fn in_checkpoint(file: &str, index: usize, error: Error) -> Error {
    let key = format!("datasets.{index}.model.pretrained");
    match error {
        Error::Usage(message) => Error::config(file, format!("{key}: {message}")),
        Error::MissingData(message) => Error::MissingData(format!("{file}: {key}: {message}")),
        Error::Data { path, message } => Error::data(
            path,
            format!("{message} (the pre-trained checkpoint of {file}: {key})"),
        ),
        Error::Io { path, source } => Error::data(
            path,
            format!("{source} (the pre-trained checkpoint of {file}: {key})"),
        ),
        other => other,
    }
}

/// A usage error from loading a dataset names the experiment file it came from.
fn in_entry(file: &str, dataset: &str, error: Error) -> Error {
    match error {
        Error::Usage(message) => Error::config(file, format!("dataset `{dataset}`: {message}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A data directory holding the GLUE fixtures and the tiny checkpoint as `name`, its last
    /// weight byte changed when `tweak` (a tensor value: still a valid checkpoint).
    fn data_dir(root: &Path, name: &str, tweak: bool) -> PathBuf {
        let fixtures = data::test_data();
        let dir = root.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        for linked in ["glue_data", "bert-base-uncased"] {
            let link = dir.join(linked);
            if !link.exists() {
                std::os::unix::fs::symlink(fixtures.join(linked), link).unwrap();
            }
        }
        let checkpoint = dir.join(name);
        std::fs::create_dir_all(&checkpoint).unwrap();
        let source = fixtures.join("bert-tiny-random");
        std::fs::copy(source.join("config.json"), checkpoint.join("config.json")).unwrap();
        let mut weights = std::fs::read(source.join("model.safetensors")).unwrap();
        if tweak {
            *weights.last_mut().unwrap() ^= 1;
        }
        std::fs::write(checkpoint.join("model.safetensors"), weights).unwrap();
        dir
    }

    fn experiment(model: &str) -> Experiment {
        serde_norway::from_str(&format!(
            "name: t
datasets:
  - dataset: sst2
    tokenizer: bert-base-uncased
    model: {model}
    recipe: {{epochs: 1, batch_size: 8, optimizer: {{name: adamw, lr: 0.001}}}}
methods: [baseline]
k: [2]
seeds: [0]
"
        ))
        .unwrap()
    }

    #[test]
    fn a_pretrained_entry_is_identified_by_its_checkpoint_bytes_and_others_by_data_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = data_dir(tmp.path(), "tiny-a", false);
        data_dir(tmp.path(), "tiny-b", true);
        data_dir(tmp.path(), "tiny-c", false);

        // From scratch: the data's fingerprint alone, as before checkpoints existed, so the
        // run ids of every other experiment are unchanged.
        let scratch = experiment(
            "{family: transformer, layers: 1, hidden: 8, heads: 2, ffn: 16, max_len: 16}",
        );
        let loaded = Datasets::load(&scratch, "t.yaml", Some(dir.clone()), None).unwrap();
        let data_only = loaded.splits(0).fingerprint.clone();
        assert_eq!(loaded.fingerprints(), vec![data_only.clone()]);

        let fingerprint = |name: &str| {
            let e = experiment(&format!(
                "{{family: transformer, pretrained: {name}, max_len: 16}}"
            ));
            let loaded = Datasets::load(&e, "t.yaml", Some(dir.clone()), None).unwrap();
            assert_eq!(loaded.splits(0).fingerprint, data_only, "the same tokens");
            loaded.fingerprints().remove(0)
        };
        let (a, b, c) = (
            fingerprint("tiny-a"),
            fingerprint("tiny-b"),
            fingerprint("tiny-c"),
        );
        assert!(a.starts_with(&format!("{data_only}+pretrained:")), "{a}");
        assert_ne!(a, b, "one weight byte changed");
        assert_eq!(a, c, "the same bytes under another name");
    }
}
