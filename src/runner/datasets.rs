//! The data of an experiment: each distinct (dataset, load options) of its entries loaded
//! once, however many entries share it.

use std::path::PathBuf;

use crate::data::{self, DataSplits, LoadOptions};
use crate::error::{Error, Result};
use crate::experiment::Experiment;

/// The loaded splits of an experiment's dataset entries.
pub(super) struct Datasets<'a> {
    experiment: &'a Experiment,
    cache_dir: Option<PathBuf>,
    loaded: Vec<(String, LoadOptions, DataSplits)>,
}

impl<'a> Datasets<'a> {
    /// Loads every entry of `experiment` (text is tokenised to the model's length); errors
    /// name the experiment `file`.
    pub fn load(
        experiment: &'a Experiment,
        file: &str,
        data_dir: Option<PathBuf>,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self> {
        let dirs = data::search_dirs(data_dir);
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

    /// The content fingerprint of every dataset entry, in order (part of the run ids).
    pub fn fingerprints(&self) -> Vec<String> {
        (0..self.experiment.datasets.len())
            .map(|i| self.splits(i).fingerprint.clone())
            .collect()
    }
}

/// A usage error from loading a dataset names the experiment file it came from.
fn in_entry(file: &str, dataset: &str, error: Error) -> Error {
    match error {
        Error::Usage(message) => Error::config(file, format!("dataset `{dataset}`: {message}")),
        other => other,
    }
}
