//! Trained models shared between runs: ensemble members, teachers, the wide model that
//! submodular selection prunes. Each is keyed by everything that determines it and stored
//! under the results folder's `models/`, so it is never trained twice.

use std::path::PathBuf;

use burn::module::{AutodiffModule, Module};
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::AutodiffBackend;
use sha2::{Digest, Sha256};

use super::MethodContext;
use super::baseline::plain_settings;
use crate::error::{Error, Result};
use crate::models::{Model, ModelSpec};
use crate::train::{Stream, TrainLog, stream_rng};

type Recorder = BinFileRecorder<FullPrecisionSettings>;

impl<B: AutodiffBackend> MethodContext<'_, B> {
    /// The model `spec` trained with the plain recipe from `seed` (an ensemble member, a
    /// teacher, the wide model to prune): loaded from `models/` when a run trained it before,
    /// else trained (phase `phase`, checkpointed) and stored there. Also returns the steps
    /// this call spent training (0 when reused).
    pub fn trained_model(
        &self,
        spec: &ModelSpec,
        seed: u64,
        phase: &str,
    ) -> Result<(Model<B::InnerBackend>, usize)> {
        let (model, log, trained_now) = self.trained_model_with_log(spec, seed, phase)?;
        Ok((model, if trained_now { log.steps } else { 0 }))
    }

    /// [`MethodContext::trained_model`] with the training log (curves, steps, seconds) the
    /// model was trained with, stored beside it, and whether this call trained it. A model
    /// stored without its log is trained again (the log is part of a `wide` run's result).
    pub fn trained_model_with_log(
        &self,
        spec: &ModelSpec,
        seed: u64,
        phase: &str,
    ) -> Result<(Model<B::InnerBackend>, TrainLog, bool)> {
        let mut settings = plain_settings(self);
        settings.seed = seed;
        let key = serde_json::json!({
            "model": spec, "recipe": self.recipe, "seed": seed, "data": self.data_fingerprint,
            "code_version": crate::experiment::plan::NUMERICS_VERSION,
            "model_record": crate::models::RECORD_VERSION,
        });
        let hash: String = Sha256::digest(key.to_string().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path: Option<PathBuf> = self
            .models_dir
            .as_ref()
            .map(|d| d.join(format!("teacher-{}", &hash[..16])));
        let fresh = || {
            spec.build::<B>(
                self.data.train,
                &mut stream_rng(seed, Stream::Init),
                self.device,
            )
        };
        let log_path = |path: &PathBuf| path.with_extension("log.json");
        if let Some(path) = path.as_ref().filter(|p| p.with_extension("bin").is_file()) {
            let model = fresh()
                .valid()
                .load_file(path.clone(), &Recorder::new(), self.device)
                .map_err(|e| Error::data(path, format!("unreadable stored teacher: {e}")))?;
            if let Some(log) = std::fs::read_to_string(log_path(path))
                .ok()
                .and_then(|text| serde_json::from_str::<TrainLog>(&text).ok())
            {
                return Ok((model, log, false));
            }
        }
        let (model, log) = self.train(fresh(), &settings, phase)?;
        let model = model.valid();
        if let Some(path) = path {
            let dir = path.parent().expect("models live in a folder");
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            // Written to a temporary name and renamed, like every result file.
            // (the recorder appends `.bin` to both names)
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("teacher");
            let tmp = path.with_file_name(format!("{name}-partial"));
            model
                .clone()
                .save_file(tmp.clone(), &Recorder::new())
                .map_err(|e| Error::data(&tmp, e.to_string()))?;
            std::fs::rename(tmp.with_extension("bin"), path.with_extension("bin"))
                .map_err(|e| Error::io(&path, e))?;
            let text = serde_json::to_string(&log).expect("training logs serialise");
            crate::results::ResultsDir::write_text(&log_path(&path), &text)?;
        }
        Ok((model, log, true))
    }
}
