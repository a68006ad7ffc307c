//! Checkpoints of a training run: model, optimiser state, schedule position and log, saved
//! after whole epochs. Random streams are derived per epoch from the seed, so the data order
//! and mixing draws after a resume are exactly those of an uninterrupted run.
//!
//! Each checkpoint is written into a temporary folder and renamed into place
//! (`epoch-NNNN/`), so a process killed while writing leaves the previous checkpoint intact.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::log::EvalPoint;
use crate::error::{Error, Result};

/// Where one training phase keeps its checkpoints, and how often.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    pub dir: PathBuf,
    /// Save after every this many epochs (0: never).
    pub every_epochs: usize,
    /// The run's wall clock, saved with every checkpoint of any of its phases.
    pub clock: Option<RunClock>,
}

/// A run's wall clock across the processes that trained it. A killed run resumes from its
/// checkpoints; the time earlier processes had spent up to their last checkpoint (of any
/// training phase: members, teachers, the student) counts in its `wall_clock_s` too.
#[derive(Debug, Clone)]
pub struct RunClock {
    file: PathBuf,
    earlier_seconds: f64,
    started: Instant,
}

#[derive(Serialize, Deserialize)]
struct SavedClock {
    seconds: f64,
}

impl RunClock {
    /// Starts the clock of the run whose checkpoints live in `run_dir`, from the seconds
    /// earlier processes saved there (0 when none did).
    pub fn start(run_dir: &Path) -> Result<Self> {
        let file = run_dir.join(CLOCK);
        let earlier_seconds = match fs::read_to_string(&file) {
            Ok(text) => {
                serde_json::from_str::<SavedClock>(&text)
                    .map_err(|e| Error::data(&file, format!("corrupt run clock: {e}")))?
                    .seconds
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0.0,
            Err(e) => return Err(Error::io(&file, e)),
        };
        Ok(Self {
            file,
            earlier_seconds,
            started: Instant::now(),
        })
    }

    /// Wall-clock seconds of the run so far, earlier processes included.
    pub fn seconds(&self) -> f64 {
        self.earlier_seconds + self.started.elapsed().as_secs_f64()
    }

    fn save(&self) -> Result<()> {
        let json = serde_json::to_string(&SavedClock {
            seconds: self.seconds(),
        })
        .expect("a number serialises");
        crate::atomic::write(&self.file, json.as_bytes())
    }
}

/// The training-loop state stored beside the model and optimiser records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoopState {
    pub epoch: usize,
    pub steps: usize,
    pub train_seconds: f64,
    pub points: Vec<EvalPoint>,
}

pub(crate) const MODEL: &str = "model";
/// The optimiser state of every parameter (`crate::optim::CopyOptimizer`'s file).
pub(crate) const OPTIMIZER: &str = "optimizer-state.bin";
const STATE: &str = "state.json";
/// The run's wall clock, in the run's checkpoint folder beside its phases' folders.
const CLOCK: &str = "wall-clock.json";

impl CheckpointDir {
    /// The checkpoints of the training phase `name` of this run (the same clock).
    pub fn phase(&self, name: &str) -> Self {
        Self {
            dir: self.dir.join(name),
            ..self.clone()
        }
    }

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
        match &self.clock {
            Some(clock) => clock.save(),
            None => Ok(()),
        }
    }

    /// Removes every checkpoint (after the run's result is stored).
    pub fn clear(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: usize) -> LoopState {
        LoopState {
            epoch,
            steps: 10 * epoch,
            train_seconds: 1.0,
            points: Vec::new(),
        }
    }

    #[test]
    fn a_runs_clock_carries_the_earlier_processes_time_through_every_phase() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        let fresh = RunClock::start(&run).unwrap();
        assert!(fresh.seconds() < 60.0, "nothing saved: starts at 0");

        // A killed process had saved 100 s with a checkpoint of its first phase.
        fs::create_dir_all(&run).unwrap();
        fs::write(run.join(CLOCK), r#"{"seconds": 100.0}"#).unwrap();
        let clock = RunClock::start(&run).unwrap();
        assert!((100.0..160.0).contains(&clock.seconds()));
        let checkpoints = CheckpointDir {
            dir: run.clone(),
            every_epochs: 1,
            clock: Some(clock),
        };
        // A checkpoint of another phase saves the run's clock, not a phase's.
        checkpoints
            .phase("student")
            .save(&state(1), |_| Ok(()))
            .unwrap();
        let saved = RunClock::start(&run).unwrap().seconds();
        assert!((100.0..160.0).contains(&saved), "{saved}");

        fs::write(run.join(CLOCK), "not json").unwrap();
        let err = RunClock::start(&run).unwrap_err().to_string();
        assert!(
            err.contains(CLOCK) && err.contains("corrupt run clock"),
            "{err}"
        );
    }
}
