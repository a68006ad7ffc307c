//! The store of trained models that several runs share (ensemble members, teachers, the wide
//! model submodular selection prunes): `<results>/<experiment>/<profile>/models/`, one
//! `teacher-<hash>.bin` (burn record) and `.log.json` (its training log) per key. The key is
//! what the method says determines the model, plus the code's numerics version.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::Backend;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use sha2::{Digest, Sha256};

use super::provenance::NUMERICS_VERSION;
use crate::error::{Error, Result};
use crate::methods::TrainedModels;
use crate::models::Model;
use crate::train::TrainLog;

type Recorder = BinFileRecorder<FullPrecisionSettings>;

/// Trained models kept in a folder.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where the model of `key` lives (without extension: the recorder adds `.bin`).
    fn path(&self, key: &serde_json::Value) -> PathBuf {
        let mut key = key.clone();
        key["code_version"] = NUMERICS_VERSION.into();
        let hash: String = Sha256::digest(key.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("teacher-{}", &hash[..16]))
    }

    fn log_path(path: &Path) -> PathBuf {
        path.with_extension("log.json")
    }
}

impl<B: Backend> TrainedModels<B> for ModelStore {
    fn load(
        &self,
        key: &serde_json::Value,
        fresh: Model<B>,
    ) -> Result<Option<(Model<B>, TrainLog)>> {
        let path = self.path(key);
        if !path.with_extension("bin").is_file() {
            return Ok(None);
        }
        let device = fresh.devices().into_iter().next().unwrap_or_default();
        let model = fresh
            .load_file(path.clone(), &Recorder::new(), &device)
            .map_err(|e| Error::data(&path, format!("unreadable stored teacher: {e}")))?;
        // A model stored without its log is trained again (the log is part of a result).
        Ok(std::fs::read_to_string(Self::log_path(&path))
            .ok()
            .and_then(|text| serde_json::from_str::<TrainLog>(&text).ok())
            .map(|log| (model, log)))
    }

    fn save(&self, key: &serde_json::Value, model: &Model<B>, log: &TrainLog) -> Result<()> {
        let path = self.path(key);
        // Written atomically, like every result file (the recorder names its file itself).
        crate::atomic::write_to_path(&path.with_extension("bin"), |tmp| {
            model
                .clone()
                .save_file(tmp.to_path_buf(), &Recorder::new())
                .map_err(|e| Error::data(tmp, e.to_string()))
        })?;
        let text = serde_json::to_string(log).expect("training logs serialise");
        crate::atomic::write(&Self::log_path(&path), text.as_bytes())
    }
}
