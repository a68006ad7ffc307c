//! Checkpoints of a training run: model, optimiser state, schedule position and log, saved
//! after whole epochs. Random streams are derived per epoch from the seed, so the data order
//! and mixing draws after a resume are exactly those of an uninterrupted run.
//!
//! Each checkpoint is written into a temporary folder and renamed into place
//! (`epoch-NNNN/`), so a process killed while writing leaves the previous checkpoint intact.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::log::EvalPoint;
use crate::error::{Error, Result};

/// Where one training phase keeps its checkpoints, and how often.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    pub dir: PathBuf,
    /// Save after every this many epochs (0: never).
    pub every_epochs: usize,
}

/// The training-loop state stored beside the model and optimiser records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoopState {
    pub epoch: usize,
    pub steps: usize,
    pub train_seconds: f64,
    pub points: Vec<EvalPoint>,
    /// Wall-clock seconds the loop had run up to this checkpoint, over every process that
    /// trained it (0 in checkpoints written before the field existed).
    #[serde(default)]
    pub wall_seconds: f64,
}

pub(crate) const MODEL: &str = "model";
/// The optimiser state of every parameter (`crate::optim::CopyOptimizer`'s file).
pub(crate) const OPTIMIZER: &str = "optimizer-state.bin";
const STATE: &str = "state.json";

impl CheckpointDir {
    /// The latest complete checkpoint folder, if any.
    pub fn latest(&self) -> Option<PathBuf> {
        let mut epochs: Vec<PathBuf> = fs::read_dir(&self.dir)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("epoch-"))
            })
            .filter(|p| p.join(STATE).is_file())
            .collect();
        epochs.sort();
        epochs.pop()
    }

    /// Reads the loop state of a checkpoint folder.
    pub fn read_state(folder: &Path) -> Result<LoopState> {
        let path = folder.join(STATE);
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::data(&path, format!("corrupt checkpoint state: {e}")))
    }

    /// Writes a checkpoint: `write_records` saves the model and optimiser into the folder it
    /// is given; then the state, then the folder is renamed into place and older ones removed.
    pub fn save(
        &self,
        state: &LoopState,
        write_records: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let target = self.dir.join(format!("epoch-{:04}", state.epoch));
        crate::atomic::write_folder(&target, |folder| {
            write_records(folder)?;
            let state_path = folder.join(STATE);
            let json = serde_json::to_string(state).expect("loop state serialises");
            fs::write(&state_path, json).map_err(|e| Error::io(&state_path, e))
        })?;
        for entry in fs::read_dir(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?
            .flatten()
        {
            let path = entry.path();
            if path != target
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("epoch-"))
            {
                let _ = fs::remove_dir_all(path);
            }
        }
        Ok(())
    }

    /// Removes every checkpoint (after the run's result is stored).
    pub fn clear(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
